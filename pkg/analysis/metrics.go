package analysis

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Metrics are the AnalysisRun reconciler's Prometheus metrics. A nil
// *Metrics records nothing.
type Metrics struct {
	value *prometheus.GaugeVec
	phase *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		value: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "analysis_run_metric_value",
			Help: "Last numeric value measured for a metric of an AnalysisRun (a number or a one-element list).",
		}, []string{"namespace", "analysis_run", "metric"}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "analysis_run_phase",
			Help: "One series per AnalysisRun, with its current phase as a label; the value is always 1.",
		}, []string{"namespace", "name", "phase"}),
	}
	for _, c := range []prometheus.Collector{m.value, m.phase} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records a run's phase and its metrics' last numeric values.
func (m *Metrics) observe(run *v1alpha1.AnalysisRun) {
	if m == nil || run.Status.Phase == "" {
		return
	}
	m.phase.DeletePartialMatch(prometheus.Labels{"namespace": run.Namespace, "name": run.Name})
	m.phase.WithLabelValues(run.Namespace, run.Name, string(run.Status.Phase)).Set(1)
	for _, mr := range run.Status.MetricResults {
		if v, ok := lastNumber(mr.Measurements); ok {
			m.value.WithLabelValues(run.Namespace, run.Name, mr.Name).Set(v)
		}
	}
}

// forget drops the series of a deleted run.
func (m *Metrics) forget(key types.NamespacedName) {
	if m == nil {
		return
	}
	m.phase.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "name": key.Name})
	m.value.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "analysis_run": key.Name})
}

// lastNumber is the value of the latest measurement that measured a single
// number: a number, or a list of one (an instant vector of one series).
func lastNumber(ms []v1alpha1.Measurement) (float64, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		text := strings.TrimSuffix(strings.TrimPrefix(ms[i].Value, "["), "]")
		if v, err := strconv.ParseFloat(text, 64); err == nil {
			return v, true
		}
	}
	return 0, false
}
