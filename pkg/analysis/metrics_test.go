package analysis

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	values := func(vs ...string) []v1alpha1.Measurement {
		var out []v1alpha1.Measurement
		for _, v := range vs {
			out = append(out, v1alpha1.Measurement{Value: v})
		}
		return out
	}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop"}}
	run.Status = v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseRunning, MetricResults: []v1alpha1.MetricResult{
		{Name: "rate", Measurements: values("0.5", "0.97")},
		{Name: "vector", Measurements: values("[0.25]")},
		{Name: "error-after-value", Measurements: values("3", "")}, // the last number stays
		{Name: "list", Measurements: values("[0.1,0.2]")},
		{Name: "json", Measurements: values(`{"ok":true}`, "true")},
		{Name: "job", Measurements: values("")},
	}}
	m.observe(run)
	run.Status.Phase = v1alpha1.AnalysisPhaseFailed
	m.observe(run)
	other := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "shop"}, Status: v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseSuccessful}}
	m.observe(other)
	want := `
# HELP analysis_run_metric_value Last numeric value measured for a metric of an AnalysisRun (a number or a one-element list).
# TYPE analysis_run_metric_value gauge
analysis_run_metric_value{analysis_run="smoke",metric="error-after-value",namespace="shop"} 3
analysis_run_metric_value{analysis_run="smoke",metric="rate",namespace="shop"} 0.97
analysis_run_metric_value{analysis_run="smoke",metric="vector",namespace="shop"} 0.25
# HELP analysis_run_phase One series per AnalysisRun, with its current phase as a label; the value is always 1.
# TYPE analysis_run_phase gauge
analysis_run_phase{name="other",namespace="shop",phase="Successful"} 1
analysis_run_phase{name="smoke",namespace="shop",phase="Failed"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "analysis_run_metric_value", "analysis_run_phase"); err != nil {
		t.Error(err)
	}
	m.forget(types.NamespacedName{Namespace: "shop", Name: "smoke"})
	if n := testutil.CollectAndCount(m.value) + testutil.CollectAndCount(m.phase); n != 1 {
		t.Errorf("%d series left after the run was deleted; want only the other run's phase", n)
	}
	var none *Metrics
	none.observe(run) // records nothing, must not panic
	none.forget(types.NamespacedName{})
}
