//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// onceRunYAML is an AnalysisRun measuring a web metric once, with a 60s
// timeout.
func onceRunYAML(name, url string) string {
	return fmt.Sprintf(`apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisRun
metadata: {name: %s}
spec:
  metrics:
  - name: rate
    count: 1
    successCondition: "result >= 0.95"
    provider: {web: {url: %q, jsonPath: "{$.rate}", timeout: 60s}}
`, name, url)
}

// TestTenancyMeasurementsFairness: the controller binary with its default
// flags (10 analysis workers, 10 measurements per namespace). Namespace a
// has more runs than either whose endpoint hangs until the test releases
// it; a run of namespace b is measured and ends Successful while all of
// a's still hang, a holding only its bound of connections; released, each
// of a's runs is measured once.
func TestTenancyMeasurementsFairness(t *testing.T) {
	t.Parallel()
	const hanging = analysis.DefaultMeasurementsPerNamespace + 2
	var requests atomic.Int32
	released := make(chan struct{})
	release := sync.OnceFunc(func() { close(released) })
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-released:
			_, _ = io.WriteString(w, `{"rate": 0.99}`)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { release(); hang.Close() })
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"rate": 0.97}`)
	}))
	t.Cleanup(answers.Close)

	nsA, nsB := namespace(t), namespace(t)
	var docs []string
	for i := range hanging {
		docs = append(docs, onceRunYAML(fmt.Sprintf("hangs-%d", i), hang.URL))
	}
	cl.MustKubectl(t, strings.Join(docs, "---\n"), "-n", nsA, "apply", "-f", "-")
	eventually(t, 2*time.Minute, "namespace a's measurements at the hanging endpoint", func(context.Context) (bool, string) {
		n := requests.Load()
		return n >= analysis.DefaultMeasurementsPerNamespace, fmt.Sprintf("%d requests", n)
	})

	cl.MustKubectl(t, onceRunYAML("answers", answers.URL), "-n", nsB, "apply", "-f", "-")
	eventually(t, 2*time.Minute, "namespace b's run ended", func(context.Context) (bool, string) {
		run := getAnalysisRun(t, nsB, "answers")
		return run.Status.Phase.Completed(), string(run.Status.Phase)
	})
	if run := getAnalysisRun(t, nsB, "answers"); run.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("namespace b's run: %s %q", run.Status.Phase, run.Status.Message)
	}
	// Namespace a is still hanging: nothing recorded, only its bound taken.
	for i := range hanging {
		run := getAnalysisRun(t, nsA, fmt.Sprintf("hangs-%d", i))
		for _, mr := range run.Status.MetricResults {
			if len(mr.Measurements) > 0 {
				t.Errorf("%s recorded %+v before its endpoint answered", run.Name, mr.Measurements)
			}
		}
	}
	if n := requests.Load(); n != analysis.DefaultMeasurementsPerNamespace {
		t.Errorf("%d measurements of namespace a at its endpoint at once, want %d", n, analysis.DefaultMeasurementsPerNamespace)
	}

	release()
	for i := range hanging {
		name := fmt.Sprintf("hangs-%d", i)
		eventually(t, 2*time.Minute, name+" ended", func(context.Context) (bool, string) {
			run := getAnalysisRun(t, nsA, name)
			return run.Status.Phase.Completed(), string(run.Status.Phase)
		})
		if run := getAnalysisRun(t, nsA, name); run.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
			t.Errorf("%s once released: %s %q", name, run.Status.Phase, run.Status.Message)
		}
	}
	if n := requests.Load(); n != hanging {
		t.Errorf("the hanging endpoint was asked %d times, want once per run (%d)", n, hanging)
	}
}
