//go:build integration

package analysis

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestIntegrationTTL deletes finished runs when their ttlStrategy says, not
// before: secondsAfterSuccess over secondsAfterCompletion for a success,
// secondsAfterCompletion for a failure without secondsAfterFailure, and a
// failure with only secondsAfterSuccess is kept.
func TestIntegrationTTL(t *testing.T) {
	startReconciler(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rate := "0.99"
		if strings.Contains(r.URL.Path, "bad") {
			rate = "0.42"
		}
		_, _ = io.WriteString(w, fmt.Sprintf(`{"rate": %s}`, rate))
	}))
	defer srv.Close()
	ctx := context.Background()
	ns := env.Namespace(t)
	create := func(name, path string, ttl v1alpha1.TTLStrategy) *v1alpha1.AnalysisRun {
		m := webMetric("rate", srv.URL+path, "result > 0.9", func(m *v1alpha1.Metric) { m.Interval, m.Count = "", nil })
		run := &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{m}, TTLStrategy: &ttl},
		}
		if err := env.Client.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
		return run
	}
	good := create("good", "/good", v1alpha1.TTLStrategy{SecondsAfterSuccess: ptr.To[int32](2), SecondsAfterCompletion: ptr.To[int32](3600)})
	bad := create("bad", "/bad", v1alpha1.TTLStrategy{SecondsAfterCompletion: ptr.To[int32](2)})
	kept := create("kept", "/bad", v1alpha1.TTLStrategy{SecondsAfterSuccess: ptr.To[int32](1)})

	deadlines := map[*v1alpha1.AnalysisRun]time.Time{}
	for _, run := range []*v1alpha1.AnalysisRun{good, bad} {
		done := waitRun(t, client.ObjectKeyFromObject(run), func(r *v1alpha1.AnalysisRun) bool { return r.Status.CompletedAt != nil })
		deadlines[run] = done.Status.CompletedAt.Add(2 * time.Second)
	}
	gone := map[*v1alpha1.AnalysisRun]time.Time{}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for run := range deadlines {
			if _, seen := gone[run]; seen {
				continue
			}
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(run), &v1alpha1.AnalysisRun{})
			if apierrors.IsNotFound(err) {
				gone[run] = time.Now()
			} else if err != nil {
				return false, err
			}
		}
		return len(gone) == len(deadlines), nil
	})
	if err != nil {
		t.Fatalf("deleted %d of %d runs: %v", len(gone), len(deadlines), err)
	}
	for run, deadline := range deadlines {
		if gone[run].Before(deadline) {
			t.Errorf("%s was deleted at %s, before its deadline %s", run.Name, gone[run], deadline)
		}
	}
	got := waitRun(t, client.ObjectKeyFromObject(kept), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if got.Status.Phase != v1alpha1.AnalysisPhaseFailed {
		t.Fatalf("kept: %s, want Failed", got.Status.Phase)
	}
	// Had the success TTL (1 s) applied, the run would be gone 1 s after it
	// completed (the status has whole seconds): look again past that.
	time.Sleep(time.Until(got.Status.CompletedAt.Add(3 * time.Second)))
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(kept), &v1alpha1.AnalysisRun{}); err != nil {
		t.Errorf("kept, a failure with only secondsAfterSuccess, 3 s after it completed: %v; want it kept", err)
	}
}
