//go:build bench

package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/rollout"
)

const (
	// hangingRuns are the AnalysisRuns of the loaded namespace, each with
	// a web metric whose endpoint never answers.
	hangingRuns = 50
	// fairnessTrials are the aborts timed per phase and iteration.
	fairnessTrials = 5
	// fairnessTimeout bounds each wait of a trial.
	fairnessTimeout = time.Minute
	// reconcileTimeout is the controller's default --reconcile-timeout.
	reconcileTimeout = 30 * time.Second
)

// BenchmarkFairnessAbort times, in namespace b, a Rollout's abort by its
// step analysis: from the failing measurement's finishedAt, as the
// AnalysisRun records it, to the first watch event of the canary
// ReplicaSet at spec 0. Each iteration times it unloaded, then while
// namespace a runs 50 AnalysisRuns whose web metrics hang until their
// timeout (10s; a loopback listener that never answers), and reports the
// medians of both and their ratio. The reconcilers run with the
// controller's defaults: 10 workers each, the default measurement bounds,
// a 30s reconcile deadline.
func BenchmarkFairnessAbort(b *testing.B) {
	env.StartManager(b, func(mgr manager.Manager, opts controller.Options) error {
		opts.MaxConcurrentReconciles, opts.ReconciliationTimeout = defaultWorkers, reconcileTimeout
		if err := (&rollout.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts); err != nil {
			return err
		}
		return (&analysis.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
	srv := NewVerdictServer(b)
	hang := newSilentListener(b)
	nsB := env.Namespace(b)
	env.PlayReplicaSets(b, nsB)
	w := newAbortWatch(b, nsB)
	ro := createAnalysedRollout(b, nsB, srv.URL)
	w.await(b, w.healthy, "the Rollout Healthy")

	var unloaded, loaded []float64
	var peak int64
	image := 1
	trial := func() float64 {
		image++
		return abortTrial(b, w, srv, ro, image)
	}
	for b.Loop() {
		for range fairnessTrials {
			unloaded = append(unloaded, trial())
		}
		nsA := env.Namespace(b)
		createHangingRuns(b, nsA, hang.url)
		hang.awaitOpen(b, analysis.DefaultMeasurementsPerNamespace)
		for range fairnessTrials {
			loaded = append(loaded, trial())
		}
		peak = max(peak, hang.peak.Load())
		// Deleting the runs cancels their measurements: the next
		// iteration starts unloaded.
		if err := env.Client.DeleteAllOf(context.Background(), &v1alpha1.AnalysisRun{}, client.InNamespace(nsA)); err != nil {
			b.Fatal(err)
		}
		hang.awaitOpen(b, 0)
	}
	publish(b, fairnessResult(b.Name(), unloaded, loaded, peak))
}

func fairnessResult(name string, unloaded, loaded []float64, peak int64) Result {
	res := Result{Name: name, Columns: []string{"trial", "unloaded: failed → canary RS spec 0 ms", "loaded: failed → canary RS spec 0 ms"}}
	for i := range unloaded {
		res.Rows = append(res.Rows, []string{strconv.Itoa(i + 1), FormatValue(unloaded[i]), FormatValue(loaded[i])})
	}
	u, l := Summarize(unloaded), Summarize(loaded)
	res.Metrics = []Metric{
		{"unloaded-p50-ms", u.Median},
		{"loaded-p50-ms", l.Median},
		{"loaded/unloaded-p50", l.Median / u.Median},
		{"unloaded-max-ms", u.Max},
		{"loaded-max-ms", l.Max},
		// Connections open at once to the silent endpoint: the loaded
		// namespace's measurement bound, plus those its client closed at
		// a timeout that the listener has not seen closed yet.
		{"silent-connections-max", float64(peak)},
	}
	return res
}

// abortTrial updates the Rollout to image n, lets its analysis pass once,
// then fails the endpoint, and returns how long after the failing
// measurement finished the canary ReplicaSet was seen at spec 0, in ms.
func abortTrial(b *testing.B, w *abortWatch, srv *VerdictServer, ro *v1alpha1.Rollout, n int) float64 {
	b.Helper()
	srv.SetFailing(false)
	passed := w.expectPassed()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:%d"}]}}}}`, n)
	if err := env.Client.Patch(context.Background(), ro.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		b.Fatal(err)
	}
	w.await(b, passed, fmt.Sprintf("a successful measurement of image %d", n))
	failed, zero := w.expectAbort()
	srv.SetFailing(true)
	w.await(b, failed, "a failed measurement")
	w.await(b, zero, "the canary ReplicaSet at spec 0")
	return Millis(zero.at.Sub(failed.at))
}

// createAnalysedRollout creates a Rollout of 2 replicas (setWeight 50, a
// step analysis asking the verdict server every second, a pause) and its
// template.
func createAnalysedRollout(b *testing.B, ns, url string) *v1alpha1.Rollout {
	b.Helper()
	ctx := context.Background()
	tmpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "verdict", Namespace: ns},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{VerdictMetric(url, nil)}},
	}
	labels := map[string]string{"app": "web"}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](50)},
				{Analysis: &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: "verdict"}}}},
				{Pause: &v1alpha1.RolloutPause{}},
			}}},
		},
	}
	for _, o := range []client.Object{tmpl, ro} {
		if err := env.Client.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	return ro
}

// createHangingRuns creates the loaded namespace's runs: one web metric
// each, measured every second until 100 errors in a row, against an
// endpoint that never answers, so each measurement hangs for its timeout.
func createHangingRuns(b *testing.B, ns, url string) {
	b.Helper()
	for i := range hangingRuns {
		run := &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hangs-%02d", i), Namespace: ns},
			Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{
				Name: "hangs", Interval: "1s", SuccessCondition: "result == true", ConsecutiveErrorLimit: ptr.To[int32](100),
				Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url, JSONPath: "{$.ok}", Timeout: "10s"}},
			}}},
		}
		if err := env.Client.Create(context.Background(), run); err != nil {
			b.Fatal(err)
		}
	}
}

// silentListener accepts connections on loopback and never answers; it
// counts the connections open.
type silentListener struct {
	url        string
	open, peak atomic.Int64
}

func newSilentListener(tb testing.TB) *silentListener {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &silentListener{url: "http://" + l.Addr().String() + "/"}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var all []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			s.peak.Store(max(s.peak.Load(), s.open.Add(1)))
			conns.Go(func() {
				// Read the request and whatever follows until the client
				// gives up and closes; answer nothing.
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				s.open.Add(-1)
			})
		}
	}()
	tb.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range all {
			_ = c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	return s
}

// awaitOpen waits until exactly n connections are open.
func (s *silentListener) awaitOpen(b *testing.B, n int64) {
	b.Helper()
	deadline := time.Now().Add(fairnessTimeout)
	for s.open.Load() != n {
		if time.Now().After(deadline) {
			b.Fatalf("%d connections open to the silent endpoint, want %d", s.open.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// abortWatch follows namespace b's Rollout, runs and ReplicaSets; each
// expectation is a Mark set by the first event that meets it.
type abortWatch struct {
	healthy *Mark

	mu         sync.Mutex
	passed     *Mark  // a run of a new revision measured a success
	passedHash string // that revision
	failed     *Mark  // at the failing measurement's finishedAt
	zero       *Mark  // at the event of the canary ReplicaSet at spec 0
	canary     string // the revision expected to be aborted
}

func newAbortWatch(b *testing.B, ns string) *abortWatch {
	b.Helper()
	w := &abortWatch{healthy: NewMark()}
	c := newCache(b, ns)
	on(b, c, &v1alpha1.Rollout{}, func(ro *v1alpha1.Rollout, at time.Time) {
		if ro.Status.Phase == v1alpha1.RolloutPhaseHealthy && ro.Status.ObservedGeneration == ro.Generation {
			w.healthy.Set(at)
		}
	})
	on(b, c, &v1alpha1.AnalysisRun{}, w.observeRun)
	on(b, c, &appsv1.ReplicaSet{}, func(rs *appsv1.ReplicaSet, at time.Time) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.zero != nil && rs.Labels[v1alpha1.PodTemplateHashLabel] == w.canary && ptr.Deref(rs.Spec.Replicas, 1) == 0 {
			w.zero.Set(at)
		}
	})
	startCache(b, c)
	return w
}

func (w *abortWatch) observeRun(run *v1alpha1.AnalysisRun, at time.Time) {
	hash := run.Labels[v1alpha1.PodTemplateHashLabel]
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, mr := range run.Status.MetricResults {
		// Runs of earlier revisions have ended.
		if w.passed != nil && w.passedHash == "" && hash != "" && mr.Successful > 0 && !run.Status.Phase.Completed() {
			w.passedHash = hash
			w.passed.Set(at)
		}
		if w.failed == nil || hash != w.canary {
			continue
		}
		for _, m := range mr.Measurements {
			if m.Phase == v1alpha1.AnalysisPhaseFailed && m.FinishedAt != nil {
				w.failed.Set(m.FinishedAt.Time)
			}
		}
	}
}

// expectPassed returns the mark of the next revision's first success.
func (w *abortWatch) expectPassed() *Mark {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.passed, w.passedHash = NewMark(), ""
	w.failed, w.zero, w.canary = nil, nil, ""
	return w.passed
}

// expectAbort returns the marks of the failing measurement of the revision
// that passed and of its ReplicaSet at spec 0.
func (w *abortWatch) expectAbort() (failed, zero *Mark) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed, w.zero, w.canary = NewMark(), NewMark(), w.passedHash
	w.passed = nil
	return w.failed, w.zero
}

func (w *abortWatch) await(b *testing.B, m *Mark, what string) {
	b.Helper()
	if _, ok := m.Wait(fairnessTimeout); !ok {
		b.Fatalf("not seen within %s: %s", fairnessTimeout, what)
	}
}
