//go:build bench

package bench

import (
	"context"
	"fmt"
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

// abortTimeout bounds each wait of an abort trial; every one of them takes
// a few seconds at most when the controller works.
const abortTimeout = time.Minute

// BenchmarkAbortLatency measures how fast a failing measurement stops a
// canary. Each iteration creates a Rollout (3 replicas; steps setWeight 50,
// analysis, pause), waits for it to be Healthy, changes its image, lets the
// step's web metric (interval 1s, failureLimit 0) pass once and then fail.
// From the failing measurement's finishedAt, as the AnalysisRun records it,
// it times the first watch event showing the Rollout aborted with the
// canary weight at 0, and the first showing the canary ReplicaSet scaled to
// 0. Both clocks are this machine's.
func BenchmarkAbortLatency(b *testing.B) {
	env.StartManager(b, func(mgr manager.Manager, opts controller.Options) error {
		opts.MaxConcurrentReconciles = defaultWorkers
		if err := (&rollout.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts); err != nil {
			return err
		}
		return (&analysis.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
	ctx := context.Background()
	ns := env.Namespace(b)
	srv := newVerdictServer(b)
	if err := env.Client.Create(ctx, verdictTemplate(ns, srv.URL)); err != nil {
		b.Fatal(err)
	}
	c := newCache(b, ns)
	playReplicaSets(b, c)
	var current atomic.Pointer[abortTrial]
	on(b, c, &v1alpha1.Rollout{}, func(ro *v1alpha1.Rollout, at time.Time) {
		if t := current.Load(); t != nil && ro.Name == t.name {
			t.observeRollout(ro, at)
		}
	})
	on(b, c, &v1alpha1.AnalysisRun{}, func(run *v1alpha1.AnalysisRun, at time.Time) {
		if t := current.Load(); t != nil && ownedBy(run, t.name) {
			t.observeRun(run, at)
		}
	})
	on(b, c, &appsv1.ReplicaSet{}, func(rs *appsv1.ReplicaSet, at time.Time) {
		if t := current.Load(); t != nil && ownedBy(rs, t.name) {
			t.observeReplicaSet(rs, at)
		}
	})
	startCache(b, c)

	var samples []abortSample
	for b.Loop() {
		b.StopTimer()
		t := newAbortTrial(fmt.Sprintf("web-%d", len(samples)+1))
		current.Store(t)
		srv.setFailing(false)
		t.create(b, ns)
		t.await(b, ns, t.healthy, "Healthy")
		b.StartTimer()

		t.setImage(b, ns, "web:2")
		t.await(b, ns, t.passed, "a Successful measurement of the step's analysis")
		srv.setFailing(true)
		failed := t.await(b, ns, t.failed, "a Failed measurement")
		aborted := t.await(b, ns, t.aborted, "the Rollout aborted with the canary weight at 0")
		scaledDown := t.await(b, ns, t.scaledDown, "the canary ReplicaSet scaled to 0")
		b.StopTimer()

		served := srv.failedAt()
		// finishedAt has microseconds; the measurement ends after the answer.
		if served.IsZero() || failed.Before(served.Truncate(time.Microsecond)) {
			b.Fatalf("%s: failing measurement finished at %s, before the server first failed (%s)", t.name, failed, served)
		}
		if aborted.Before(failed) || scaledDown.Before(failed) {
			b.Fatalf("%s: aborted (%s) or canary scaled to 0 (%s) before the failing measurement finished (%s)", t.name, aborted, scaledDown, failed)
		}
		samples = append(samples, abortSample{rollout: t.name, served: served, failed: failed, aborted: aborted, scaledDown: scaledDown})
		b.StartTimer()
	}
	publish(b, abortResult(b.Name(), samples))
}

// abortSample is the timeline of one trial.
type abortSample struct {
	rollout                             string
	served, failed, aborted, scaledDown time.Time
}

func abortResult(name string, samples []abortSample) Result {
	res := Result{
		Name:    name,
		Columns: []string{"rollout", "failing answer → finishedAt ms", "finishedAt → aborted ms", "finishedAt → canary RS 0 ms"},
	}
	var toAbort, toZero []float64
	for _, s := range samples {
		a, z := Millis(s.aborted.Sub(s.failed)), Millis(s.scaledDown.Sub(s.failed))
		toAbort, toZero = append(toAbort, a), append(toZero, z)
		res.Rows = append(res.Rows, []string{s.rollout, FormatValue(Millis(s.failed.Sub(s.served))), FormatValue(a), FormatValue(z)})
	}
	abort, zero := Summarize(toAbort), Summarize(toZero)
	res.Metrics = []Metric{
		{"abort-p50-ms", abort.Median}, {"abort-min-ms", abort.Min}, {"abort-max-ms", abort.Max},
		{"rs0-p50-ms", zero.Median}, {"rs0-min-ms", zero.Min}, {"rs0-max-ms", zero.Max},
		{"samples", float64(len(samples))},
	}
	return res
}

// verdictTemplate is the analysis of the trials: the server must say ok,
// checked every second, and the first failure fails the run.
func verdictTemplate(ns, url string) *v1alpha1.AnalysisTemplate {
	return &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "verdict", Namespace: ns},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{verdictMetric(url, nil)}},
	}
}

// verdictMetric asks the verdict server every second, count times (nil:
// until the run ends), and fails at the first {"ok": false}.
func verdictMetric(url string, count *int32) v1alpha1.Metric {
	return v1alpha1.Metric{
		Name:             "verdict",
		Interval:         "1s",
		Count:            count,
		FailureLimit:     ptr.To[int32](0),
		SuccessCondition: "result == true",
		Provider:         v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url, JSONPath: "{$.ok}"}},
	}
}

func ownedBy(o client.Object, rolloutName string) bool {
	owner := metav1.GetControllerOf(o)
	return owner != nil && owner.Kind == "Rollout" && owner.Name == rolloutName
}

// abortTrial follows one Rollout through an update aborted by its analysis.
// Its observe methods run on the watch's delivery goroutines.
type abortTrial struct {
	name string
	// healthy: the first revision is stable and available. passed: the
	// step's run measured a success. failed: the first Failed measurement's
	// finishedAt. aborted, scaledDown: when the watch saw them.
	healthy, passed, failed, aborted, scaledDown *mark

	mu         sync.Mutex
	stableHash string
	// scaledUp holds the ReplicaSets of a new revision seen with replicas.
	scaledUp map[string]bool
}

func newAbortTrial(name string) *abortTrial {
	return &abortTrial{
		name:    name,
		healthy: newMark(), passed: newMark(), failed: newMark(), aborted: newMark(), scaledDown: newMark(),
		scaledUp: map[string]bool{},
	}
}

func (t *abortTrial) observeRollout(ro *v1alpha1.Rollout, at time.Time) {
	st := &ro.Status
	if st.Phase == v1alpha1.RolloutPhaseHealthy && !st.Abort && st.StableRS != "" && st.StableRS == st.CurrentPodHash &&
		st.ObservedGeneration == ro.Generation {
		t.mu.Lock()
		if t.stableHash == "" {
			t.stableHash = st.StableRS
		}
		t.mu.Unlock()
		t.healthy.set(at)
	}
	if st.Abort && st.Canary.Weights != nil && st.Canary.Weights.Canary.Weight == 0 {
		t.aborted.set(at)
	}
}

func (t *abortTrial) observeRun(run *v1alpha1.AnalysisRun, at time.Time) {
	for _, mr := range run.Status.MetricResults {
		if mr.Successful > 0 {
			t.passed.set(at)
		}
		for _, m := range mr.Measurements {
			if m.Phase == v1alpha1.AnalysisPhaseFailed && m.FinishedAt != nil {
				t.failed.set(m.FinishedAt.Time)
			}
		}
	}
}

func (t *abortTrial) observeReplicaSet(rs *appsv1.ReplicaSet, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stableHash == "" || rs.Labels[v1alpha1.PodTemplateHashLabel] == t.stableHash {
		return
	}
	switch n := ptr.Deref(rs.Spec.Replicas, 1); {
	case n > 0:
		t.scaledUp[rs.Name] = true
	case t.scaledUp[rs.Name]:
		t.scaledDown.set(at)
	}
}

// create creates the trial's Services and Rollout.
func (t *abortTrial) create(b *testing.B, ns string) {
	b.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": t.name}
	for _, svc := range []string{t.name + "-stable", t.name + "-canary"} {
		if err := env.Client.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: ns},
			Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
		}); err != nil {
			b.Fatal(err)
		}
	}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: t.name, Namespace: ns},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
				StableService: t.name + "-stable",
				CanaryService: t.name + "-canary",
				Steps: []v1alpha1.CanaryStep{
					{SetWeight: ptr.To[int32](50)},
					{Analysis: &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: "verdict"}}}},
					{Pause: &v1alpha1.RolloutPause{}},
				},
			}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		b.Fatal(err)
	}
}

func (t *abortTrial) setImage(b *testing.B, ns, image string) {
	b.Helper()
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":` + strconv.Quote(image) + `}]}}}}`
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: t.name}}
	if err := env.Client.Patch(context.Background(), ro, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		b.Fatal(err)
	}
}

// await waits for a mark, or fails the benchmark showing where the Rollout
// and its AnalysisRuns stand.
func (t *abortTrial) await(b *testing.B, ns string, m *mark, what string) time.Time {
	b.Helper()
	at, ok := m.wait(abortTimeout)
	if ok {
		return at
	}
	ctx := context.Background()
	var ro v1alpha1.Rollout
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: t.name}, &ro)
	msg := fmt.Sprintf("%s: %s not seen within %s\nrollout (err %v): %+v", t.name, what, abortTimeout, err, ro.Status)
	var runs v1alpha1.AnalysisRunList
	if err := env.Client.List(ctx, &runs, client.InNamespace(ns)); err == nil {
		for i := range runs.Items {
			if ownedBy(&runs.Items[i], t.name) {
				msg += fmt.Sprintf("\nanalysisrun %s: %+v", runs.Items[i].Name, runs.Items[i].Status)
			}
		}
	}
	b.Fatal(msg)
	return time.Time{}
}
