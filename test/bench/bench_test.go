//go:build bench

package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/test/testenv"
)

// defaultWorkers is how many objects each reconciler handles in parallel
// by default: the controller's --rollout-workers and --analysis-workers.
const defaultWorkers = 10

var env *testenv.Env

// report gathers this run's results; publish rewrites bin/bench after each
// benchmark, so a later failure keeps the earlier results.
var report = NewReport(time.Now())

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// publish reports a result's metrics to the benchmark framework (they
// print on its line), logs its samples as a table and writes the results
// files. The framework keeps only ten lines of a benchmark's log;
// bin/bench/results.md has everything.
func publish(b *testing.B, res Result) {
	b.Helper()
	for _, m := range res.Metrics {
		b.ReportMetric(m.Value, m.Unit)
	}
	if len(res.Rows) > 0 {
		b.Log("\n" + markdownTable(res.Columns, res.Rows))
	}
	res.Load = LoadAverage()
	report.Add(res)
	if err := report.Write(filepath.Join(testenv.RepoRoot(), "bin", "bench")); err != nil {
		b.Fatal(err)
	}
}

// newCache returns an informer cache over one namespace. Register handlers
// with on, then start it with startCache.
func newCache(tb testing.TB, ns string) cache.Cache {
	tb.Helper()
	c, err := cache.New(env.Config, cache.Options{Scheme: apis.NewScheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// startCache runs the cache and waits for its informers to list. It runs
// until stop is called or the benchmark ends.
func startCache(tb testing.TB, c cache.Cache) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("watch cache: %v", err)
		}
	})
	tb.Cleanup(stop)
	if !c.WaitForCacheSync(ctx) {
		tb.Fatal("watch cache did not sync")
	}
	return stop
}

// on calls fn with every object of obj's kind the cache sees added or
// updated, and the moment its event arrived. Each call of on gets its own
// delivery goroutine, so a slow fn delays no other handler.
func on[T client.Object](tb testing.TB, c cache.Cache, obj T, fn func(T, time.Time)) {
	tb.Helper()
	inf, err := c.GetInformer(context.Background(), obj)
	if err != nil {
		tb.Fatal(err)
	}
	handle := func(o any) {
		at := time.Now()
		if t, ok := o.(T); ok {
			fn(t, at)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, o any) { handle(o) },
	}); err != nil {
		tb.Fatal(err)
	}
}

// playReplicaSets stands in for the ReplicaSet controller, which envtest
// lacks: as soon as a ReplicaSet's spec changes it reports all its replicas
// ready and available. Pods are not simulated.
func playReplicaSets(tb testing.TB, c cache.Cache) {
	on(tb, c, &appsv1.ReplicaSet{}, func(rs *appsv1.ReplicaSet, _ time.Time) {
		n := ptr.Deref(rs.Spec.Replicas, 1)
		want := appsv1.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
		if rs.Status.Replicas == want.Replicas && rs.Status.AvailableReplicas == want.AvailableReplicas &&
			rs.Status.ReadyReplicas == want.ReadyReplicas && rs.Status.ObservedGeneration == want.ObservedGeneration {
			return
		}
		rs = rs.DeepCopy()
		rs.Status = want
		// A conflict means a newer version exists; its event plays it.
		_ = env.Client.Status().Update(context.Background(), rs)
	})
}

// mark is the moment something was first seen.
type mark struct {
	once sync.Once
	done chan struct{}
	at   time.Time
}

func newMark() *mark { return &mark{done: make(chan struct{})} }

// set records at, unless a moment was recorded already.
func (m *mark) set(at time.Time) {
	m.once.Do(func() {
		m.at = at
		close(m.done)
	})
}

// wait returns the recorded moment, or false after timeout.
func (m *mark) wait(timeout time.Duration) (time.Time, bool) {
	select {
	case <-m.done:
		return m.at, true
	case <-time.After(timeout):
		return time.Time{}, false
	}
}

// verdictServer is the endpoint of a web metric: it answers {"ok": true},
// or {"ok": false} once told to fail, and counts requests and connections.
// It remembers when each request came, by the value of its query parameter
// run.
type verdictServer struct {
	*httptest.Server
	failing     atomic.Bool
	requests    atomic.Int64
	connections atomic.Int64

	mu           sync.Mutex
	firstFailure time.Time
	byRun        map[string][]time.Time
}

func newVerdictServer(tb testing.TB) *verdictServer {
	s := &verdictServer{byRun: map[string][]time.Time{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.connections.Add(1)
		}
	}
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

func (s *verdictServer) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.requests.Add(1)
	ok := !s.failing.Load()
	s.mu.Lock()
	if !ok && s.firstFailure.IsZero() {
		s.firstFailure = now
	}
	run := r.URL.Query().Get("run")
	s.byRun[run] = append(s.byRun[run], now)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"ok": %t}`, ok)
}

// setFailing switches the answer; passing again forgets the first failure.
func (s *verdictServer) setFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing.Store(failing)
	if !failing {
		s.firstFailure = time.Time{}
	}
}

// failedAt is when the server first answered {"ok": false}.
func (s *verdictServer) failedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstFailure
}

// requestsOf returns when the requests for run came.
func (s *verdictServer) requestsOf(run string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.byRun[run])
}

// askedMoreThan returns the runs with more than n requests, sorted.
func (s *verdictServer) askedMoreThan(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var runs []string
	for run, reqs := range s.byRun {
		if len(reqs) > n {
			runs = append(runs, run)
		}
	}
	slices.Sort(runs)
	return runs
}

// reconciles is controller-runtime's count of the reconciles of a
// controller so far, by result (success, error, requeue, requeue_after).
func reconciles(tb testing.TB, controller string) map[string]float64 {
	tb.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	n := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["controller"] == controller {
				n[labels["result"]] += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
