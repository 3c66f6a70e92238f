package rollout

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestLongNameIsInvalidAndUntouched: a Rollout whose name is longer than
// admission now allows (stored before the rule) is InvalidSpec with the
// rule's message and its plan creates nothing; 52 characters are fine.
func TestLongNameIsInvalidAndUntouched(t *testing.T) {
	for _, n := range []int{52, 53} {
		ro := canaryRollout(3, "1", "0", setWeight(50), pause(""))
		ro.Name = strings.Repeat("w", n)
		p, err := plan(newSim(t, ro).input())
		if err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled)
		invalid := c != nil && c.Status == "True" && c.Reason == v1alpha1.ReasonInvalidSpec
		if n <= v1alpha1.MaxRolloutNameLength {
			if invalid || p.Create == nil {
				t.Errorf("%d characters: Stalled %+v, create %v; want the first ReplicaSet created", n, c, p.Create)
			}
			continue
		}
		if !invalid || !strings.Contains(c.Message, v1alpha1.MessageRolloutNameLen+" (it has 53)") {
			t.Errorf("%d characters: Stalled condition %+v; want InvalidSpec with %q", n, c, v1alpha1.MessageRolloutNameLen)
		}
		if p.Create != nil || len(p.Services) > 0 || len(p.Scale) > 0 || p.TrafficWeight != nil {
			t.Errorf("%d characters: the plan writes %+v", n, p)
		}
	}
}

// TestTemplateBreakingABoundIsInvalidSpec: an AnalysisTemplate stored
// before admission checked the bounds (an interval of 100ms) makes the
// analysis step InvalidSpec, naming the metric and the bound, and no run
// is created.
func TestTemplateBreakingABoundIsInvalidSpec(t *testing.T) {
	ro := canaryRollout(2, "1", "0", setWeight(50), v1alpha1.CanaryStep{Analysis: analysisOf("errors")})
	s := newSim(t, ro).withTemplate("errors")
	s.templates["errors"].Metrics[0].Interval = "100ms"
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	want := `metrics[errors].interval: Invalid value: "100ms": ` + v1alpha1.MessageInterval
	s.until("InvalidSpec", 10, func(st v1alpha1.RolloutStatus) bool {
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionStalled)
		return c != nil && c.Reason == v1alpha1.ReasonInvalidSpec && strings.Contains(c.Message, want)
	})
	if len(s.runs) != 0 {
		t.Errorf("runs created from a template that breaks a bound: %v", s.runs)
	}
}
