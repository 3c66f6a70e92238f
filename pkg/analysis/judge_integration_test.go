//go:build integration

package analysis

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stats "github.com/kubeseed/rollouts/pkg/analysis/judge"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

// TestIntegrationJudgeProvider compares series a real Prometheus scraped:
// the exporter's latency gauge follows the same wave for every version,
// scaled per version, so "the same distribution" is exactly the same data
// and a +40 % version is shifted at every point.
func TestIntegrationJudgeProvider(t *testing.T) {
	var tick atomic.Int64
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		v := 0.1 + 0.01*math.Sin(float64(tick.Add(1)))
		_, _ = fmt.Fprintf(w, "# TYPE latency_seconds gauge\n")
		for version, factor := range map[string]float64{"baseline": 1, "same": 1, "slower": 1.4} {
			_, _ = fmt.Fprintf(w, "latency_seconds{version=%q} %g\n", version, v*factor)
		}
	}))
	defer exporter.Close()
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(exporter.URL, "http://"))
	p := &Prometheus{Secrets: env.Client, Now: time.Now}
	j := &Judge{Prometheus: p}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "default"}}
	spec := func(canary string, metrics ...v1alpha1.JudgeMetricQuery) *v1alpha1.JudgeMetric {
		s := &v1alpha1.JudgeMetric{
			PrometheusConnection: v1alpha1.PrometheusConnection{Address: prom},
			Window:               v1alpha1.PrometheusRange{Start: "10s", Step: "1s"},
			Metrics: []v1alpha1.JudgeMetricQuery{{
				Name: "latency", Direction: "increase",
				CanaryQuery:   fmt.Sprintf(`latency_seconds{version=%q}`, canary),
				BaselineQuery: `latency_seconds{version="baseline"}`,
			}},
		}
		s.Metrics = append(s.Metrics, metrics...)
		return s
	}
	measure := func(m *v1alpha1.Metric) (Measured, JudgeResult) {
		t.Helper()
		meas := j.Measure(context.Background(), run, m)
		var res JudgeResult
		if meas.Err == nil {
			if err := json.Unmarshal([]byte(meas.Value), &res); err != nil {
				t.Fatalf("value %q: %v", meas.Value, err)
			}
		}
		return meas, res
	}
	// Let the window fill with at least 8 points a side.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, res := measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: spec("same")}})
		if len(res.Metrics) == 1 && res.Metrics[0].CanaryCount >= 8 && res.Metrics[0].BaselineCount >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window did not fill: %+v", res)
		}
		time.Sleep(time.Second)
	}

	meas, res := measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: spec("same")}})
	if meas.Err != nil || meas.Phase != v1alpha1.AnalysisPhaseSuccessful || res.Score != 100 || res.Metrics[0].Classification != stats.Pass {
		t.Errorf("same data: %v %s %+v", meas.Err, meas.Phase, res)
	}
	meas, res = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: spec("slower")}})
	if meas.Err != nil || meas.Phase != v1alpha1.AnalysisPhaseFailed || res.Score != 0 || res.Metrics[0].Classification != stats.High || res.Metrics[0].CILower <= 0 {
		t.Errorf("+40%%: %v %s %+v", meas.Err, meas.Phase, res)
	}
	if !strings.Contains(meas.Message, "latency High") {
		t.Errorf("message %q does not name the metric", meas.Message)
	}

	// Two groups, one failing: 50 is Failed, or Inconclusive with a lower
	// marginal threshold.
	two := spec("same", v1alpha1.JudgeMetricQuery{Name: "cpu", CanaryQuery: `latency_seconds{version="slower"}`, BaselineQuery: `latency_seconds{version="baseline"}`})
	meas, res = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: two}})
	if meas.Phase != v1alpha1.AnalysisPhaseFailed || res.Score != 50 {
		t.Errorf("one of two groups failing: %s %+v", meas.Phase, res)
	}
	two.Thresholds = v1alpha1.JudgeThresholds{Pass: 90, Marginal: 50}
	if meas, _ = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: two}}); meas.Phase != v1alpha1.AnalysisPhaseInconclusive {
		t.Errorf("score 50 with marginal 50: %s", meas.Phase)
	}

	// Conditions, when set, judge the result object instead.
	meas, _ = measure(&v1alpha1.Metric{SuccessCondition: "result.score >= 40", Provider: v1alpha1.MetricProvider{Judge: two}})
	if meas.Phase != "" || meas.Result.(map[string]any)["score"] != 50.0 {
		t.Errorf("with a condition: phase %q result %v", meas.Phase, meas.Result)
	}

	// No data for the canary, and a query Prometheus rejects.
	meas, res = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: spec("v9")}})
	if meas.Phase != v1alpha1.AnalysisPhaseFailed || res.Metrics[0].Classification != stats.NoData || res.Reason == "" {
		t.Errorf("no canary data: %s %+v", meas.Phase, res)
	}
	bad := spec("same")
	bad.Metrics[0].CanaryQuery = "latency_seconds{"
	if meas, _ = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: bad}}); meas.Err == nil || !strings.Contains(meas.Err.Error(), "judge metric latency, canary query") {
		t.Errorf("bad query: %v", meas.Err)
	}
	bad = spec("same")
	bad.Window.Step = "0s"
	if meas, _ = measure(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Judge: bad}}); meas.Err == nil || !strings.Contains(meas.Err.Error(), "step") {
		t.Errorf("zero step: %v", meas.Err)
	}
}
