//go:build integration

package analysis

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func startReconciler(t *testing.T) {
	t.Helper()
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		return (&Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
}

func webMetric(name, url, success string, extra func(*v1alpha1.Metric)) v1alpha1.Metric {
	m := v1alpha1.Metric{
		Name: name, Interval: "1s", Count: ptr.To[int32](3), SuccessCondition: success,
		Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url, JSONPath: "{$.rate}"}},
	}
	if extra != nil {
		extra(&m)
	}
	return m
}

func waitRun(t *testing.T, key client.ObjectKey, cond func(*v1alpha1.AnalysisRun) bool) *v1alpha1.AnalysisRun {
	t.Helper()
	var run v1alpha1.AnalysisRun
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, key, &run); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return cond(&run), nil
	})
	if err != nil {
		t.Fatalf("run %s: not reached; status %+v", key.Name, run.Status)
	}
	return &run
}

// TestIntegrationAnalysisRun measures web metrics against an httptest
// server through the real API server: a passing metric, a failing one that
// fails the run with its value in the message, and a dry-run failure that
// does not decide.
func TestIntegrationAnalysisRun(t *testing.T) {
	startReconciler(t)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		rate := "0.99"
		if strings.Contains(r.URL.Path, "bad") {
			rate = "0.42"
		}
		_, _ = io.WriteString(w, fmt.Sprintf(`{"rate": %s}`, rate))
	}))
	defer srv.Close()
	ctx := context.Background()
	ns := env.Namespace(t)

	good := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "good", Namespace: ns},
		Spec: v1alpha1.AnalysisRunSpec{
			Metrics: []v1alpha1.Metric{
				webMetric("rate", srv.URL+"/good", "result >= 0.95", nil),
				webMetric("shadow", srv.URL+"/bad", "result >= 0.95", nil),
			},
			DryRun: []v1alpha1.DryRun{{MetricName: "shadow"}},
		},
	}
	bad := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: ns},
		Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{webMetric("rate", srv.URL+"/bad", "result >= 0.95", nil)}},
	}
	for _, run := range []*v1alpha1.AnalysisRun{good, bad} {
		if err := env.Client.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
	}

	got := waitRun(t, client.ObjectKeyFromObject(good), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	// The scheduler waits the interval between measurements: compare the
	// recorded times (microseconds), not the test's wall clock.
	ms := got.Status.MetricResults[0].Measurements
	for i := 1; i < len(ms); i++ {
		if gap := ms[i].StartedAt.Sub(ms[i-1].FinishedAt.Time); gap < 200*time.Millisecond {
			t.Errorf("measurement %d started %s after the previous one finished; interval is 200ms", i, gap)
		}
	}
	if got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("good run %s: %s", got.Status.Phase, got.Status.Message)
	}
	if mr := got.Status.MetricResults[0]; mr.Count != 3 || len(mr.Measurements) != 3 || mr.Measurements[0].Value != "0.99" {
		t.Errorf("rate measured %d times, measurements %+v", mr.Count, mr.Measurements)
	}
	if d := got.Status.DryRunSummary; d == nil || d.Failed != 1 {
		t.Errorf("dry-run summary %+v, want one failed metric", d)
	}

	got = waitRun(t, client.ObjectKeyFromObject(bad), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if got.Status.Phase != v1alpha1.AnalysisPhaseFailed || !strings.Contains(got.Status.Message, `Metric "rate" Failed`) || !strings.Contains(got.Status.Message, "0.42") {
		t.Errorf("bad run %s: %q", got.Status.Phase, got.Status.Message)
	}
	if mr := got.Status.MetricResults[0]; mr.Count != 1 {
		t.Errorf("a failing metric was measured %d times after failing", mr.Count)
	}
}
