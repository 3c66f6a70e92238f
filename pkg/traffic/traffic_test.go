package traffic

import (
	"testing"

	"github.com/google/go-cmp/cmp"

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
