//go:build integration

package analysis

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// hangingServer answers nothing until released: every request waits, like
// an endpoint that hangs until the measurement's timeout. It listens on
// loopback only.
type hangingServer struct {
	*httptest.Server
	arrived  chan struct{}
	requests atomic.Int32
	release  func()
}

func newHangingServer(t *testing.T) *hangingServer {
	t.Helper()
	released := make(chan struct{})
	s := &hangingServer{arrived: make(chan struct{}, 100)}
	s.release = sync.OnceFunc(func() { close(released) })
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.arrived <- struct{}{}
		select {
		case <-released:
			_, _ = io.WriteString(w, `{"rate": 0.99}`)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		s.release()
		s.Close()
	})
	return s
}

// awaitRequests waits until n requests have arrived.
func (s *hangingServer) awaitRequests(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-s.arrived:
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d measurements reached the hanging endpoint", i, n)
		}
	}
}

// TestIntegrationHangingMeasurementsDoNotBlockOtherNamespaces: with one
// reconcile worker, namespace a has more runs than its measurement bound
// whose endpoint hangs (until the test releases it, long past the run of
// namespace b). The run of namespace b is measured and ends Successful
// while every measurement of a still hangs, and a holds no more than its
// bound of slots; once released, each of a's runs is measured once.
func TestIntegrationHangingMeasurementsDoNotBlockOtherNamespaces(t *testing.T) {
	const perNamespace, hanging = 3, 5
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		opts.MaxConcurrentReconciles = 1
		return (&Reconciler{Client: mgr.GetClient(), MeasurementsPerNamespace: perNamespace}).SetupWithManager(mgr, opts)
	})
	hang := newHangingServer(t)
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"rate": 0.97}`)
	}))
	defer answers.Close()
	ctx := context.Background()
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	once := func(m *v1alpha1.Metric) {
		m.Interval, m.Count = "", ptr.To[int32](1)
		m.Provider.Web.Timeout = "60s"
	}

	var runsA []client.ObjectKey
	for i := range hanging {
		run := &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hangs-%d", i), Namespace: nsA},
			Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{webMetric("rate", hang.URL, "result >= 0.95", once)}},
		}
		if err := env.Client.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
		runsA = append(runsA, client.ObjectKeyFromObject(run))
	}
	hang.awaitRequests(t, perNamespace)

	b := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "answers", Namespace: nsB},
		Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{webMetric("rate", answers.URL, "result >= 0.95", once)}},
	}
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := waitRun(t, client.ObjectKeyFromObject(b), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if mr := got.Status.MetricResults; got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || len(mr) != 1 || len(mr[0].Measurements) != 1 || mr[0].Measurements[0].Value != "0.97" {
		t.Errorf("run of namespace b: %s %+v", got.Status.Phase, mr)
	}

	// Still hanging: nothing of namespace a is recorded, and a took only
	// its bound of slots.
	for _, key := range runsA {
		var run v1alpha1.AnalysisRun
		if err := env.Client.Get(ctx, key, &run); err != nil {
			t.Fatal(err)
		}
		for _, mr := range run.Status.MetricResults {
			if len(mr.Measurements) > 0 {
				t.Errorf("%s recorded %+v before its endpoint answered", key.Name, mr.Measurements)
			}
		}
	}
	if n := hang.requests.Load(); n != perNamespace {
		t.Errorf("%d measurements of namespace a reached its endpoint at once, want its bound %d", n, perNamespace)
	}

	hang.release()
	for _, key := range runsA {
		got := waitRun(t, key, func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
		if got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
			t.Errorf("%s once released: %s %q", key.Name, got.Status.Phase, got.Status.Message)
		}
	}
	if n := hang.requests.Load(); n != hanging {
		t.Errorf("the hanging endpoint was asked %d times, want once per run (%d)", n, hanging)
	}
}
