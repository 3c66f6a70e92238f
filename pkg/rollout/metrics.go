package rollout

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Metrics are the Rollout reconciler's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	info        *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	step        *prometheus.GaugeVec
	weight      *prometheus.GaugeVec
	duration    prometheus.Histogram

	mu sync.Mutex
	// infoOf holds each Rollout's rollouts_info labels (strategy, phase),
	// so a change deletes exactly the old series: a partial match would
	// scan every series, on every reconcile.
	infoOf map[[2]string][2]string
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		infoOf: map[[2]string][2]string{},
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollouts_info",
			Help: "One series per Rollout, with its strategy and phase as labels; the value is always 1.",
		}, []string{"namespace", "name", "strategy", "phase"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollouts_phase_transitions_total",
			Help: "Phase changes of Rollouts, by the phase entered.",
		}, []string{"namespace", "name", "phase"}),
		step: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollouts_step",
			Help: "Index of the canary step a Rollout is at (the number of steps once promoted).",
		}, []string{"namespace", "name"}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollouts_canary_weight",
			Help: "Weight, in percent of maxTrafficWeight, the canary of a Rollout gets.",
		}, []string{"namespace", "name"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rollouts_reconcile_duration_seconds",
			Help:    "Time one Rollout reconcile takes: observe, plan and apply.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	for _, c := range []prometheus.Collector{m.info, m.transitions, m.step, m.weight, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records a Rollout's state after a successful reconcile.
func (m *Metrics) observe(ro *v1alpha1.Rollout, st v1alpha1.RolloutStatus) {
	if m == nil {
		return
	}
	strategy := "canary"
	if ro.Spec.Strategy.BlueGreen != nil {
		strategy = "blueGreen"
	}
	key := prometheus.Labels{"namespace": ro.Namespace, "name": ro.Name}
	id, info := [2]string{ro.Namespace, ro.Name}, [2]string{strategy, string(st.Phase)}
	m.mu.Lock()
	if old, ok := m.infoOf[id]; !ok || old != info {
		if ok {
			m.info.DeleteLabelValues(ro.Namespace, ro.Name, old[0], old[1])
		}
		m.infoOf[id] = info
		m.info.WithLabelValues(ro.Namespace, ro.Name, strategy, string(st.Phase)).Set(1)
	}
	m.mu.Unlock()
	if st.Phase != ro.Status.Phase && st.Phase != "" {
		m.transitions.WithLabelValues(ro.Namespace, ro.Name, string(st.Phase)).Inc()
	}
	if st.CurrentStepIndex != nil {
		m.step.With(key).Set(float64(ptr.Deref(st.CurrentStepIndex, 0)))
	}
	var weight int32
	if st.Canary.Weights != nil {
		weight = st.Canary.Weights.Canary.Weight
	}
	m.weight.With(key).Set(float64(weight))
}

// forget drops the series of a deleted Rollout.
func (m *Metrics) forget(namespace, name string) {
	if m == nil {
		return
	}
	key := prometheus.Labels{"namespace": namespace, "name": name}
	m.mu.Lock()
	if old, ok := m.infoOf[[2]string{namespace, name}]; ok {
		m.info.DeleteLabelValues(namespace, name, old[0], old[1])
		delete(m.infoOf, [2]string{namespace, name})
	}
	m.mu.Unlock()
	m.transitions.DeletePartialMatch(key)
	m.step.Delete(key)
	m.weight.Delete(key)
}

func (m *Metrics) timeReconcile(start time.Time, now time.Time) {
	if m == nil {
		return
	}
	m.duration.Observe(now.Sub(start).Seconds())
}
