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

// TestClusterScopeInNamespacedMode: a namespaced controller cannot read
// ClusterAnalysisTemplates, so a Rollout that names one, wherever, is
// InvalidSpec there and plans nothing; in cluster mode the same Rollout is
// valid.
func TestClusterScopeInNamespacedMode(t *testing.T) {
	cluster := []v1alpha1.AnalysisTemplateRef{{TemplateName: "local"}, {TemplateName: "shared", ClusterScope: true}}
	for _, tc := range []struct {
		name    string
		rollout func() *v1alpha1.Rollout
		field   string
	}{{
		name: "step analysis",
		rollout: func() *v1alpha1.Rollout {
			return canaryRollout(2, "1", "0", setWeight(20), v1alpha1.CanaryStep{Analysis: &v1alpha1.RolloutAnalysis{Templates: cluster}})
		},
		field: "spec.strategy.canary.steps[1].analysis.templates[1]",
	}, {
		name: "background analysis",
		rollout: func() *v1alpha1.Rollout {
			ro := canaryRollout(2, "1", "0", setWeight(20))
			ro.Spec.Strategy.Canary.Analysis = &v1alpha1.BackgroundAnalysis{RolloutAnalysis: v1alpha1.RolloutAnalysis{Templates: cluster}}
			return ro
		},
		field: "spec.strategy.canary.analysis.templates[1]",
	}, {
		name: "experiment analysis",
		rollout: func() *v1alpha1.Rollout {
			step := experimentStepOf()
			step.Experiment.Analyses[0].ClusterScope = true
			step.Experiment.Analyses[0].TemplateName = "shared"
			return canaryRollout(2, "1", "0", setWeight(20), step)
		},
		field: "spec.strategy.canary.steps[1].experiment.analyses[0]",
	}, {
		name: "post-promotion analysis",
		rollout: func() *v1alpha1.Rollout {
			return blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PostPromotionAnalysis: &v1alpha1.RolloutAnalysis{Templates: cluster}})
		},
		field: "spec.strategy.blueGreen.postPromotionAnalysis.templates[1]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.rollout())
			in := s.input()
			in.WatchNamespace = "team-a"
			p, err := plan(in)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.field + ` refers to ClusterAnalysisTemplate "shared", but the controller runs namespaced (--namespace=team-a) and cannot read cluster-scoped templates`
			if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled); c == nil || c.Reason != v1alpha1.ReasonInvalidSpec || c.Message != want {
				t.Fatalf("Stalled condition = %+v, want InvalidSpec %q", c, want)
			}
			if p.Create != nil || len(p.Services) > 0 || len(p.Scale) > 0 || len(p.CreateRuns) > 0 {
				t.Errorf("plan of an invalid Rollout writes: %+v", p)
			}

			p, err = plan(s.input())
			if err != nil {
				t.Fatal(err)
			}
			if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled); c != nil && c.Reason == v1alpha1.ReasonInvalidSpec {
				t.Errorf("cluster mode refuses the Rollout: %s", c.Message)
			}
		})
	}
}
