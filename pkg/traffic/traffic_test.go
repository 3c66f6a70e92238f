package traffic

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestActiveRoutes(t *testing.T) {
	c := &v1alpha1.CanaryStrategy{
		TrafficRouting: &v1alpha1.TrafficRouting{ManagedRoutes: []v1alpha1.ManagedRoute{{Name: "m"}, {Name: "h"}}},
		Steps: []v1alpha1.CanaryStep{
			{SetHeaderRoute: &v1alpha1.SetHeaderRoute{Name: "h", Match: []v1alpha1.HeaderMatch{{HeaderName: "X", HeaderValue: v1alpha1.StringMatch{Exact: "1"}}}}},
			{SetMirrorRoute: &v1alpha1.SetMirrorRoute{Name: "m", Match: []v1alpha1.RouteMatch{{Path: &v1alpha1.StringMatch{Prefix: "/"}}}}},
			{SetHeaderRoute: &v1alpha1.SetHeaderRoute{Name: "h"}},
		},
	}
	names := func(idx int) []string {
		var out []string
		for _, r := range ActiveRoutes(c, idx) {
			out = append(out, r.Name)
		}
		return out
	}
	for idx, want := range [][]string{nil, {"h"}, {"m", "h"}, {"m"}} {
		if diff := cmp.Diff(want, names(idx)); diff != "" {
			t.Errorf("routes before step %d (-want +got):\n%s", idx, diff)
		}
	}
}

func TestWeightsAndWeightedExperiment(t *testing.T) {
	w := Weights{Canary: 10, Extra: []Destination{{Service: "a", Weight: 5}, {Service: "b"}}}
	if got := w.Stable(100); got != 85 {
		t.Errorf("stable %d, want 85", got)
	}
	if got := (Weights{Canary: 90, Extra: []Destination{{Weight: 20}}}).Stable(100); got != 0 {
		t.Errorf("stable %d, want it floored at 0", got)
	}
	ro := &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
		{SetWeight: ptr.To[int32](10)},
		{Experiment: &v1alpha1.RolloutExperimentStep{Templates: []v1alpha1.RolloutExperimentTemplate{{Name: "base"}, {Name: "can", Weight: ptr.To[int32](5)}}}},
	}}}}}
	if got := WeightedExperiment(ro); got != `step 1 template "can"` {
		t.Errorf("WeightedExperiment = %q", got)
	}
	ro.Spec.Strategy.Canary.Steps[1].Experiment.Templates[1].Weight = nil
	if got := WeightedExperiment(ro); got != "" {
		t.Errorf("WeightedExperiment = %q without weights", got)
	}
}
