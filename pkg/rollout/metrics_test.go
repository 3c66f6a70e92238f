package rollout

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// perRollout are the per-Rollout metrics, in the order Gather sorts them,
// with their help texts.
var perRollout = [][3]string{
	{"rollouts_canary_weight", "gauge", "Weight, in percent of maxTrafficWeight, the canary of a Rollout gets."},
	{"rollouts_info", "gauge", "One series per Rollout, with its strategy and phase as labels; the value is always 1."},
	{"rollouts_phase_transitions_total", "counter", "Phase changes of Rollouts, by the phase entered."},
	{"rollouts_step", "gauge", "Index of the canary step a Rollout is at (the number of steps once promoted)."},
}

// exposition is the text format of the per-Rollout metrics with these
// series, one list per metric in perRollout's order.
func exposition(series ...[]string) string {
	var b strings.Builder
	for i, m := range perRollout {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m[0], m[2], m[0], m[1])
		for _, line := range series[i] {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func perRolloutNames() []string {
	names := make([]string, len(perRollout))
	for i, m := range perRollout {
		names[i] = m[0]
	}
	return names
}

func newTestMetrics(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

// gatherThenForgetWeb compares the per-Rollout metrics with want, then
// deletes Rollout default/web and counts the series left.
func gatherThenForgetWeb(t *testing.T, reg *prometheus.Registry, m *Metrics, want string, left int) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), perRolloutNames()...); err != nil {
		t.Error(err)
	}
	m.forget("default", "web")
	if n := testutil.CollectAndCount(rolloutCollector{m}); n != left {
		t.Errorf("%d series left after default/web was deleted, want %d", n, left)
	}
}

func TestMetrics(t *testing.T) {
	reg, m := newTestMetrics(t)
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
	want := exposition(
		[]string{`rollouts_canary_weight{name="web",namespace="default"} 25`},
		[]string{`rollouts_info{name="web",namespace="default",phase="Paused",strategy="canary"} 1`},
		[]string{`rollouts_phase_transitions_total{name="web",namespace="default",phase="Paused"} 1`},
		[]string{`rollouts_step{name="web",namespace="default"} 1`})
	gatherThenForgetWeb(t, reg, m, want, 0)
	var nilMetrics *Metrics
	nilMetrics.observe(ro, ro.Status) // must not panic
}

// Counters add up per phase entered, gauges follow the latest status, and
// each Rollout has its own series.
func TestMetricsFollowEachRollout(t *testing.T) {
	reg, m := newTestMetrics(t)
	web := canaryRollout(4, "25%", "25%", setWeight(25), pause(""))
	api := web.DeepCopy()
	api.Name = "api"
	api.Spec.Strategy = v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{ActiveService: "api"}}
	for _, phase := range []v1alpha1.RolloutPhase{v1alpha1.RolloutPhasePaused, v1alpha1.RolloutPhaseProgressing, v1alpha1.RolloutPhasePaused} {
		st := v1alpha1.RolloutStatus{Phase: phase, CurrentStepIndex: ptr.To[int32](1),
			Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 25}}}}
		m.observe(web, st)
		web.Status = st
	}
	// No step index and no weights: the step stays, the weight is 0.
	m.observe(web, v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhaseHealthy})
	m.observe(api, v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhaseHealthy})
	want := exposition(
		[]string{
			`rollouts_canary_weight{name="api",namespace="default"} 0`,
			`rollouts_canary_weight{name="web",namespace="default"} 0`,
		},
		[]string{
			`rollouts_info{name="api",namespace="default",phase="Healthy",strategy="blueGreen"} 1`,
			`rollouts_info{name="web",namespace="default",phase="Healthy",strategy="canary"} 1`,
		},
		[]string{
			`rollouts_phase_transitions_total{name="api",namespace="default",phase="Healthy"} 1`,
			`rollouts_phase_transitions_total{name="web",namespace="default",phase="Healthy"} 1`,
			`rollouts_phase_transitions_total{name="web",namespace="default",phase="Paused"} 2`,
			`rollouts_phase_transitions_total{name="web",namespace="default",phase="Progressing"} 1`,
		},
		[]string{`rollouts_step{name="web",namespace="default"} 1`})
	gatherThenForgetWeb(t, reg, m, want, 3)
}
