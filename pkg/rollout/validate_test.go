package rollout

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

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
