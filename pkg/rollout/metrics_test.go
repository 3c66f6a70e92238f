package rollout

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(4, "25%", "25%", setWeight(25), pause(""))
	ro.Status.Phase = v1alpha1.RolloutPhaseHealthy
	m.observe(ro, v1alpha1.RolloutStatus{
		Phase:            v1alpha1.RolloutPhasePaused,
		CurrentStepIndex: ptr.To[int32](1),
		Canary:           v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 25}}},
	})
	ro.Status.Phase = v1alpha1.RolloutPhasePaused
	m.observe(ro, v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhasePaused, CurrentStepIndex: ptr.To[int32](1),
		Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 25}}}})
	want := `
# HELP rollouts_canary_weight Weight, in percent of maxTrafficWeight, the canary of a Rollout gets.
# TYPE rollouts_canary_weight gauge
rollouts_canary_weight{name="web",namespace="default"} 25
# HELP rollouts_info One series per Rollout, with its strategy and phase as labels; the value is always 1.
# TYPE rollouts_info gauge
rollouts_info{name="web",namespace="default",phase="Paused",strategy="canary"} 1
# HELP rollouts_phase_transitions_total Phase changes of Rollouts, by the phase entered.
# TYPE rollouts_phase_transitions_total counter
rollouts_phase_transitions_total{name="web",namespace="default",phase="Paused"} 1
# HELP rollouts_step Index of the canary step a Rollout is at (the number of steps once promoted).
# TYPE rollouts_step gauge
rollouts_step{name="web",namespace="default"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rollouts_info", "rollouts_phase_transitions_total", "rollouts_step", "rollouts_canary_weight"); err != nil {
		t.Error(err)
	}
	m.forget("default", "web")
	if n := testutil.CollectAndCount(m.info) + testutil.CollectAndCount(m.step); n != 0 {
		t.Errorf("%d series left after the Rollout was deleted", n)
	}
	var nilMetrics *Metrics
	nilMetrics.observe(ro, ro.Status) // must not panic
}
