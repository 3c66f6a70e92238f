//go:build bench

package scale

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
)

// latencyTimeout bounds each wait of a latency trial.
const latencyTimeout = time.Minute

// BenchmarkSingleRollout is scenario B: one Rollout of 3 replicas (steps
// setWeight 50, pause until promoted), alone on the cluster. Each trial
// updates it and promotes it, then updates it again and aborts. Every
// latency runs from the moment just before the request to the first watch
// event showing its effect.
func BenchmarkSingleRollout(b *testing.B) {
	ns := benchNamespace(b, "single")
	startController(b, "controller-single")
	ev := watchEvents(b, ns, &v1alpha1.Rollout{}, &appsv1.ReplicaSet{}, &v1alpha1.AnalysisRun{})
	ro := latencyRollout(ns, "single", nil)
	createHealthy(b, ev, ro)

	cols := []string{"update → new ReplicaSet", "update → paused at step", "promote → Healthy", "abort → canary ReplicaSet spec 0", "abort → canary pods 0"}
	samples := make([][]float64, len(cols))
	trials := envInt("BENCH_TRIALS", 10)
	image := 1
	for b.Loop() {
		for range trials {
			// Update, then promote.
			image++
			stable := currentHash(b, ns, ro.Name)
			newRS := ev.expect(func(o client.Object) bool {
				rs, ok := o.(*appsv1.ReplicaSet)
				return ok && ownedBy(rs, ro.Name) && rs.Labels[v1alpha1.PodTemplateHashLabel] != stable
			})
			paused := ev.expect(rolloutIs(ro.Name, pausedAt(1)))
			t0 := setRolloutImage(b, ns, ro.Name, image)
			rsAt := ev.await(b, newRS, "the new ReplicaSet")
			pauseAt := ev.await(b, paused, "paused at step 1")
			done := ev.expect(rolloutIs(ro.Name, healthy))
			t1 := request(b, ns, ro.Name, v1alpha1.PromoteAnnotation)
			healthyAt := ev.await(b, done, "Healthy after promote")

			// Update, then abort.
			image++
			paused = ev.expect(rolloutIs(ro.Name, pausedAt(1)))
			setRolloutImage(b, ns, ro.Name, image)
			ev.await(b, paused, "paused at step 1 again")
			canary := currentHash(b, ns, ro.Name)
			specZero := ev.expect(replicaSetIs(ro.Name, canary, func(rs *appsv1.ReplicaSet) bool { return ptr.Deref(rs.Spec.Replicas, 1) == 0 }))
			podsZero := ev.expect(replicaSetIs(ro.Name, canary, func(rs *appsv1.ReplicaSet) bool {
				return ptr.Deref(rs.Spec.Replicas, 1) == 0 && rs.Status.Replicas == 0
			}))
			t2 := request(b, ns, ro.Name, v1alpha1.AbortAnnotation)
			zeroAt := ev.await(b, specZero, "the canary ReplicaSet at spec 0")
			goneAt := ev.await(b, podsZero, "the canary pods gone")
			for i, d := range []time.Duration{rsAt.Sub(t0), pauseAt.Sub(t0), healthyAt.Sub(t1), zeroAt.Sub(t2), goneAt.Sub(t2)} {
				samples[i] = append(samples[i], bench.Millis(d))
			}
		}
	}
	publish(b, latencyResult("single rollout latencies", cols, []string{"update-newrs", "update-paused", "promote-healthy", "abort-rs0", "abort-pods0"}, samples))
}

// BenchmarkAnalysisAbort is scenario C: a Rollout of 3 replicas whose step
// analysis asks a web metric every second (failureLimit 0). Each trial
// updates it, lets the metric pass once, then makes the endpoint fail. From
// the failing measurement's finishedAt, as the AnalysisRun records it, it
// times the first watch event showing the Rollout aborted (canary weight 0)
// and the first showing the canary ReplicaSet at spec 0.
func BenchmarkAnalysisAbort(b *testing.B) {
	ns := benchNamespace(b, "analysis")
	startController(b, "controller-analysis")
	ev := watchEvents(b, ns, &v1alpha1.Rollout{}, &appsv1.ReplicaSet{}, &v1alpha1.AnalysisRun{})
	srv := bench.NewVerdictServer(b)
	ctx := context.Background()
	tmpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "verdict", Namespace: ns},
		Spec:       v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{bench.VerdictMetric(srv.URL, nil)}},
	}
	if err := k8s.Create(ctx, tmpl); err != nil {
		b.Fatal(err)
	}
	ro := latencyRollout(ns, "analysed", &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: "verdict"}}})
	var objs []client.Object
	for _, svc := range []string{ro.Spec.Strategy.Canary.StableService, ro.Spec.Strategy.Canary.CanaryService} {
		objs = append(objs, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: ns},
			Spec:       corev1.ServiceSpec{Selector: ro.Spec.Selector.MatchLabels, Ports: []corev1.ServicePort{{Port: 80}}},
		})
	}
	createHealthy(b, ev, ro, objs...)

	cols := []string{"failing answer → finishedAt", "finishedAt → aborted", "finishedAt → canary ReplicaSet spec 0"}
	samples := make([][]float64, len(cols))
	trials := envInt("BENCH_TRIALS", 10)
	image := 1
	for b.Loop() {
		for range trials {
			image++
			srv.SetFailing(false)
			passed := ev.expect(func(o client.Object) bool {
				run, ok := o.(*v1alpha1.AnalysisRun)
				return ok && ownedBy(run, ro.Name) && run.Labels[v1alpha1.PodTemplateHashLabel] != "" && successful(run) > 0 && !finished(run)
			})
			setRolloutImage(b, ns, ro.Name, image)
			ev.await(b, passed, "a successful measurement of the new revision")
			canary := currentHash(b, ns, ro.Name)
			var failedAt time.Time
			var mu sync.Mutex
			failed := ev.expect(func(o client.Object) bool {
				run, ok := o.(*v1alpha1.AnalysisRun)
				if !ok || !ownedBy(run, ro.Name) {
					return false
				}
				for _, mr := range run.Status.MetricResults {
					for _, m := range mr.Measurements {
						if m.Phase == v1alpha1.AnalysisPhaseFailed && m.FinishedAt != nil {
							mu.Lock()
							failedAt = m.FinishedAt.Time
							mu.Unlock()
							return true
						}
					}
				}
				return false
			})
			aborted := ev.expect(rolloutIs(ro.Name, func(ro *v1alpha1.Rollout) bool {
				return ro.Status.Abort && ro.Status.Canary.Weights != nil && ro.Status.Canary.Weights.Canary.Weight == 0
			}))
			specZero := ev.expect(replicaSetIs(ro.Name, canary, func(rs *appsv1.ReplicaSet) bool { return ptr.Deref(rs.Spec.Replicas, 1) == 0 }))
			srv.SetFailing(true)
			ev.await(b, failed, "a failed measurement")
			abortedAt := ev.await(b, aborted, "the Rollout aborted")
			zeroAt := ev.await(b, specZero, "the canary ReplicaSet at spec 0")
			mu.Lock()
			fin := failedAt
			mu.Unlock()
			served := srv.FailedAt()
			if served.IsZero() || fin.Before(served.Truncate(time.Microsecond)) {
				b.Fatalf("failing measurement finished at %s, before the server first failed (%s)", fin, served)
			}
			for i, d := range []time.Duration{fin.Sub(served), abortedAt.Sub(fin), zeroAt.Sub(fin)} {
				samples[i] = append(samples[i], bench.Millis(d))
			}
		}
	}
	publish(b, latencyResult("analysis abort latencies", cols, []string{"answer-finished", "failed-aborted", "failed-rs0"}, samples))
}

// createHealthy creates the objects, then the Rollout, and waits until it
// is Healthy.
func createHealthy(b *testing.B, ev *eventWatch, ro *v1alpha1.Rollout, objs ...client.Object) {
	b.Helper()
	for _, o := range append(objs, ro) {
		if err := k8s.Create(context.Background(), o); err != nil {
			b.Fatal(err)
		}
	}
	ev.await(b, ev.expect(rolloutIs(ro.Name, healthy)), "Healthy")
}

func successful(run *v1alpha1.AnalysisRun) int32 {
	var n int32
	for _, mr := range run.Status.MetricResults {
		n += mr.Successful
	}
	return n
}

func finished(run *v1alpha1.AnalysisRun) bool {
	switch run.Status.Phase {
	case v1alpha1.AnalysisPhaseSuccessful, v1alpha1.AnalysisPhaseFailed, v1alpha1.AnalysisPhaseError, v1alpha1.AnalysisPhaseInconclusive:
		return true
	}
	return false
}

// latencyRollout is a Rollout of 3 replicas: setWeight 50, then the
// analysis if any, then a pause until promoted.
func latencyRollout(ns, name string, analysis *v1alpha1.RolloutAnalysis) *v1alpha1.Rollout {
	ro := scaleRollout(ns, name)
	ro.Spec.Replicas = ptr.To[int32](3)
	steps := []v1alpha1.CanaryStep{{SetWeight: ptr.To[int32](50)}}
	if analysis != nil {
		steps = append(steps, v1alpha1.CanaryStep{Analysis: analysis})
		ro.Spec.Strategy.Canary.StableService, ro.Spec.Strategy.Canary.CanaryService = name+"-stable", name+"-canary"
	}
	steps = append(steps, v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{}})
	ro.Spec.Strategy.Canary.Steps = steps
	return ro
}

func healthy(ro *v1alpha1.Rollout) bool {
	st := &ro.Status
	return st.Phase == v1alpha1.RolloutPhaseHealthy && st.ObservedGeneration == ro.Generation && st.StableRS != "" && st.StableRS == st.CurrentPodHash
}

func pausedAt(step int32) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		st := &ro.Status
		return st.Phase == v1alpha1.RolloutPhasePaused && st.ObservedGeneration == ro.Generation &&
			ptr.Deref(st.CurrentStepIndex, -1) == step && st.StableRS != st.CurrentPodHash
	}
}

func rolloutIs(name string, cond func(*v1alpha1.Rollout) bool) func(client.Object) bool {
	return func(o client.Object) bool {
		ro, ok := o.(*v1alpha1.Rollout)
		return ok && ro.Name == name && cond(ro)
	}
}

func replicaSetIs(rollout, hash string, cond func(*appsv1.ReplicaSet) bool) func(client.Object) bool {
	return func(o client.Object) bool {
		rs, ok := o.(*appsv1.ReplicaSet)
		return ok && ownedBy(rs, rollout) && rs.Labels[v1alpha1.PodTemplateHashLabel] == hash && cond(rs)
	}
}

func ownedBy(o client.Object, rollout string) bool {
	owner := metav1.GetControllerOf(o)
	return owner != nil && owner.Kind == "Rollout" && owner.Name == rollout
}

// currentHash is the Rollout's status.currentPodHash, read from the API.
func currentHash(b *testing.B, ns, name string) string {
	b.Helper()
	var ro v1alpha1.Rollout
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ro); err != nil {
		b.Fatal(err)
	}
	return ro.Status.CurrentPodHash
}

// setRolloutImage gives the Rollout image app:n and returns the moment
// just before the request.
func setRolloutImage(b *testing.B, ns, name string, n int) time.Time {
	b.Helper()
	return patchRollout(b, ns, name, fmt.Sprintf(imagePatch, n))
}

// request writes a request annotation and returns the moment just before.
func request(b *testing.B, ns, name, annotation string) time.Time {
	b.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotation, strconv.FormatInt(time.Now().UnixNano(), 10))
	return patchRollout(b, ns, name, patch)
}

func patchRollout(b *testing.B, ns, name, patch string) time.Time {
	b.Helper()
	at := time.Now()
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Patch(context.Background(), ro, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		b.Fatal(err)
	}
	return at
}

// latencyResult summarises samples of several latencies, in ms.
func latencyResult(name string, cols, units []string, samples [][]float64) bench.Result {
	res := bench.Result{Name: name, Columns: append([]string{"trial"}, cols...)}
	for i, unit := range units {
		s := bench.Summarize(samples[i])
		res.Metrics = append(res.Metrics, bench.Metric{Unit: unit + "-p50-ms", Value: s.Median},
			bench.Metric{Unit: unit + "-min-ms", Value: s.Min}, bench.Metric{Unit: unit + "-max-ms", Value: s.Max})
	}
	for t := range samples[0] {
		row := []string{strconv.Itoa(t + 1)}
		for i := range samples {
			row = append(row, bench.FormatValue(samples[i][t]))
		}
		res.Rows = append(res.Rows, row)
	}
	return res
}
