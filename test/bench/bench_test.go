//go:build bench

package bench

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
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

// publish adds a result to bin/bench/results.{json,md} (Report.Publish).
func publish(b *testing.B, res Result) {
	b.Helper()
	report.Publish(b, res, filepath.Join(testenv.RepoRoot(), "bin", "bench"), "results")
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
