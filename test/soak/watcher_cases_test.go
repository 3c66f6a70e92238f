//go:build soak

package soak

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// These tests feed the watcher hand-made events, in the order a cluster
// could deliver them, and show that each invariant catches its breach —
// and that a stream delivering late does not make one up.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type feed struct {
	t *testing.T
	w *watcher
	m *member
}

func newFeed(t *testing.T, m *member) *feed {
	return &feed{t: t, w: newWatcher([]*member{m}, newTally()), m: m}
}

// at delivers obj at resourceVersion rv, ms milliseconds after t0.
func (f *feed) at(ms int, rv uint64, k objKind, obj client.Object) {
	obj.SetResourceVersion(fmt.Sprint(rv))
	f.w.ingest(event{kind: k, obj: obj, at: t0.Add(time.Duration(ms) * time.Millisecond)})
}

func (f *feed) drain(ms int) { f.w.drain(t0.Add(time.Duration(ms)*time.Millisecond), false) }

// clean drains the first 3 s and fails the test if anything was violated
// by then.
func (f *feed) clean(when string) {
	f.t.Helper()
	f.drain(3000)
	if v := f.w.violations; len(v) != 0 {
		f.t.Fatalf("%s: %+v", when, v)
	}
}

func (f *feed) violations(invariant string) []string {
	var out []string
	for _, v := range f.w.violations {
		if v.invariant == invariant {
			out = append(out, v.message)
		}
	}
	return out
}

func (f *feed) rollout(stable, current string, mutate ...func(*v1alpha1.Rollout)) *v1alpha1.Rollout {
	ro := f.m.rollout()
	ro.Status.StableRS, ro.Status.CurrentPodHash = stable, current
	ro.Status.Phase = v1alpha1.RolloutPhaseProgressing
	for _, fn := range mutate {
		fn(ro)
	}
	return ro
}

func (f *feed) rs(hash string, spec, avail int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.m.key.Namespace, Name: f.m.key.Name + "-" + hash, Labels: map[string]string{"app": f.m.key.Name, v1alpha1.PodTemplateHashLabel: hash}},
		Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)},
		Status:     appsv1.ReplicaSetStatus{Replicas: spec, AvailableReplicas: avail},
	}
}

func (f *feed) service(name, hash string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.m.key.Namespace, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": f.m.key.Name, v1alpha1.PodTemplateHashLabel: hash}},
	}
}

func (f *feed) route(canaryWeight int32) *gatewayv1.HTTPRoute {
	r := f.m.objects()[2].(*gatewayv1.HTTPRoute)
	stable, canary := f.m.services()
	r.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{
		{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(stable)}, Weight: ptr.To(f.m.maxWeight - canaryWeight)}},
		{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(canary)}, Weight: ptr.To(canaryWeight)}},
	}
	return r
}

func canaryMember() *member {
	return &member{key: types.NamespacedName{Namespace: "soak-0", Name: "canary-00"}, strategy: strategyCanary, replicas: 4,
		maxSurge: intstr.FromInt32(1), maxUnavailable: intstr.FromInt32(1)}
}

func routedMember() *member {
	return &member{key: types.NamespacedName{Namespace: "soak-0", Name: "routed-01"}, strategy: strategyRouted, replicas: 4,
		maxSurge: intstr.FromString("25%"), maxUnavailable: intstr.FromInt32(0), maxWeight: 100, minPods: 1}
}

func TestWatcherSurgeAndAvailability(t *testing.T) {
	f := newFeed(t, canaryMember())
	f.at(0, 10, kindRollout, f.rollout("a", "a"))
	// The first deploy comes up: nothing is enforced until it is available.
	f.at(10, 11, kindReplicaSet, f.rs("a", 4, 0))
	f.at(20, 12, kindReplicaSet, f.rs("a", 4, 4))
	// An update within the limits: 4 + 1 pods, 3 available at least.
	f.at(30, 13, kindRollout, f.rollout("a", "b"))
	f.at(40, 14, kindReplicaSet, f.rs("b", 1, 0))
	f.at(50, 15, kindReplicaSet, f.rs("b", 1, 1))
	f.at(60, 16, kindReplicaSet, f.rs("a", 3, 3))
	f.clean("violations within the limits")
	// One pod too many, then one available too few.
	f.at(3000, 17, kindReplicaSet, f.rs("b", 3, 1))
	f.at(3010, 18, kindReplicaSet, f.rs("b", 2, 1))
	f.at(3020, 19, kindReplicaSet, f.rs("a", 1, 1))
	f.drain(6000)
	if got := f.violations(invSurge); len(got) != 1 || !strings.Contains(got[0], "ask for 6 pods, more than replicas 4 + maxSurge 1") {
		t.Errorf("surge violations: %q", got)
	}
	if got := f.violations(invAvailability); len(got) != 1 || !strings.Contains(got[0], "2 pods available, fewer than replicas 4 − maxUnavailable 1") {
		t.Errorf("availability violations: %q", got)
	}
}

func TestWatcherAbortExemptsTheCanaryWithoutRouting(t *testing.T) {
	f := newFeed(t, canaryMember())
	f.at(0, 10, kindRollout, f.rollout("a", "b"))
	f.at(10, 11, kindReplicaSet, f.rs("a", 3, 3))
	f.at(20, 12, kindReplicaSet, f.rs("b", 1, 1))
	// The abort request, then the canary goes at once and the stable
	// comes back: below the floor meanwhile, as DESIGN §3.3 has it.
	f.at(30, 13, kindRollout, f.rollout("a", "b", func(ro *v1alpha1.Rollout) { ro.Annotations[v1alpha1.AbortAnnotation] = "t1" }))
	f.at(40, 14, kindReplicaSet, f.rs("b", 0, 0))
	f.at(50, 15, kindReplicaSet, f.rs("a", 4, 2))
	f.at(60, 16, kindRollout, f.rollout("a", "b", func(ro *v1alpha1.Rollout) {
		ro.Annotations[v1alpha1.AbortAnnotation] = "t1"
		ro.Status.LastHandled.Abort, ro.Status.Abort = "t1", true
	}))
	f.at(70, 17, kindReplicaSet, f.rs("a", 4, 4))
	f.clean("violations during an abort")
}

// TestWatcherAbortExemptionEndsOnSettledStatuses: an abort retried at once
// (found by the soak) leaves the canary ReplicaSet at a spec its status has
// not seen, still counting the pods the abort removed; the floor is back
// only when statuses that have seen their spec say so.
func TestWatcherAbortExemptionEndsOnSettledStatuses(t *testing.T) {
	f := newFeed(t, canaryMember())
	unseen := func(rs *appsv1.ReplicaSet) *appsv1.ReplicaSet {
		rs.Generation, rs.Status.ObservedGeneration = 3, 2
		return rs
	}
	f.at(0, 10, kindRollout, f.rollout("a", "b"))
	f.at(10, 11, kindReplicaSet, f.rs("a", 3, 3))
	f.at(20, 12, kindReplicaSet, f.rs("b", 1, 1))
	f.at(30, 13, kindRollout, f.rollout("a", "b", func(ro *v1alpha1.Rollout) {
		ro.Annotations[v1alpha1.AbortAnnotation] = "t1"
		ro.Status.LastHandled.Abort, ro.Status.Abort = "t1", true
	}))
	f.at(35, 14, kindReplicaSet, unseen(f.rs("b", 0, 1)))
	f.at(40, 15, kindReplicaSet, f.rs("a", 4, 2))
	// Retried: the canary is asked for again before its status has seen
	// the abort's scale to 0; it still shows its old pod.
	f.at(50, 16, kindRollout, f.rollout("a", "b", func(ro *v1alpha1.Rollout) {
		ro.Annotations[v1alpha1.AbortAnnotation] = "t1"
		ro.Status.LastHandled.Abort = "t1"
	}))
	f.at(60, 17, kindReplicaSet, unseen(f.rs("b", 1, 1)))
	f.at(70, 18, kindReplicaSet, f.rs("a", 3, 2))
	f.at(80, 19, kindReplicaSet, f.rs("b", 1, 0))
	f.clean("violations before the floor was back")
	// Back: then a drop is a violation again.
	f.at(3000, 20, kindReplicaSet, f.rs("b", 1, 1))
	f.at(3010, 21, kindReplicaSet, f.rs("a", 3, 3))
	f.at(3020, 22, kindReplicaSet, f.rs("a", 3, 1))
	f.drain(6000)
	if got := f.violations(invAvailability); len(got) != 1 {
		t.Errorf("availability violations after the floor was back: %q, want one", got)
	}
}

func TestWatcherWeightWaitsForLateStreams(t *testing.T) {
	m := routedMember()
	stable, canary := m.services()
	f := newFeed(t, m)
	f.at(0, 10, kindRollout, f.rollout("a", "b"))
	f.at(10, 11, kindReplicaSet, f.rs("a", 4, 4))
	f.at(20, 12, kindService, f.service(stable, "a"))
	f.at(30, 13, kindService, f.service(canary, "b"))
	f.at(40, 14, kindReplicaSet, f.rs("b", 2, 0))
	f.at(50, 15, kindRoute, f.route(0))
	// The canary's pods are available (rv 20) before the weight moves to
	// 50 (rv 21), but the route's stream delivers first.
	f.at(100, 21, kindRoute, f.route(50))
	f.drain(150)
	f.at(200, 20, kindReplicaSet, f.rs("b", 2, 2))
	f.clean("a late stream made up a violation")
	// Now the canary loses its pods while the route still sends it 50.
	f.at(3000, 22, kindReplicaSet, f.rs("b", 0, 0))
	f.drain(6000)
	if got := f.violations(invWeight); len(got) != 1 || !strings.Contains(got[0], `weight 50/100 to routed-01-canary, which selects revision "b" with 0 available pods; it needs 2`) {
		t.Errorf("weight violations: %q", got)
	}
}

func TestWatcherPromotionAfterFailedRun(t *testing.T) {
	run := func(phase v1alpha1.AnalysisPhase) *v1alpha1.AnalysisRun {
		return &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Namespace: "soak-0", Name: "routed-01-b-1", Labels: map[string]string{
				v1alpha1.RolloutLabel: "routed-01", v1alpha1.PodTemplateHashLabel: "b", v1alpha1.AnalysisKindLabel: "step",
			}},
			Status: v1alpha1.AnalysisRunStatus{Phase: phase},
		}
	}
	for _, tc := range []struct {
		name    string
		aborted bool
		want    int
	}{
		{"promoted over the failed run", false, 1},
		{"aborted, then promoted after a retry", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeed(t, routedMember())
			f.at(0, 10, kindRollout, f.rollout("a", "b"))
			f.at(10, 11, kindRun, run(v1alpha1.AnalysisPhaseRunning))
			if tc.aborted {
				f.at(20, 13, kindRollout, f.rollout("a", "b", func(ro *v1alpha1.Rollout) { ro.Status.Abort = true }))
			}
			f.at(30, 20, kindRollout, f.rollout("b", "b"))
			// The verdict (rv 12) is delivered after the promotion.
			f.at(40, 12, kindRun, run(v1alpha1.AnalysisPhaseFailed))
			f.drain(3000)
			if got := f.violations(invPromotion); len(got) != tc.want {
				t.Errorf("promotion violations: %q, want %d", got, tc.want)
			}
		})
	}
}

func TestWatcherReplicaSetsThatOutstayTheirRole(t *testing.T) {
	f := newFeed(t, canaryMember())
	f.at(0, 10, kindRollout, f.rollout("a", "b"))
	f.at(10, 11, kindReplicaSet, f.rs("a", 3, 3))
	f.at(20, 12, kindReplicaSet, f.rs("b", 1, 1))
	f.at(30, 13, kindReplicaSet, f.rs("c", 1, 1))
	f.drain(100)
	f.w.sweep(t0.Add(time.Minute))
	if v := f.violations(invReplicaSets); len(v) != 0 {
		t.Fatalf("a new ReplicaSet within its allowance: %q", v)
	}
	f.w.sweep(t0.Add(retireGrace + time.Second))
	if got := f.violations(invReplicaSets); len(got) != 1 || !strings.Contains(got[0], "routed") && !strings.Contains(got[0], "canary-00-c (1 pods") {
		t.Errorf("replicaset violations: %q", got)
	}
}

// TestWatcherRetiringReplicaSetWaitsForPods: a retiring ReplicaSet's
// available pod may stay while the current revision's pods are on their
// way (found by the soak: removing it would break the floor, and surge was
// spent); its allowance runs from when they are all available.
func TestWatcherRetiringReplicaSetWaitsForPods(t *testing.T) {
	f := newFeed(t, canaryMember())
	f.at(0, 10, kindRollout, f.rollout("a", "b"))
	f.at(10, 11, kindReplicaSet, f.rs("a", 2, 2))
	f.at(20, 12, kindReplicaSet, f.rs("b", 3, 1))
	f.at(30, 13, kindReplicaSet, f.rs("c", 1, 1))
	f.drain(100)
	f.w.sweep(t0.Add(time.Minute))
	f.w.sweep(t0.Add(retireGrace + time.Second))
	if v := f.violations(invReplicaSets); len(v) != 0 {
		t.Fatalf("a retiring ReplicaSet while the current one waits for pods: %q", v)
	}
	f.at(int(retireGrace.Milliseconds())+2000, 14, kindReplicaSet, f.rs("b", 3, 3))
	f.drain(int(retireGrace.Milliseconds()) + 3000)
	// Last seen waiting at the sweep of retireGrace+1s.
	f.w.sweep(t0.Add(retireGrace + 3*time.Second))
	f.w.sweep(t0.Add(2 * retireGrace))
	if v := f.violations(invReplicaSets); len(v) != 0 {
		t.Fatalf("within the allowance after the pods came: %q", v)
	}
	f.w.sweep(t0.Add(2*retireGrace + 2*time.Second))
	if got := f.violations(invReplicaSets); len(got) != 1 || !strings.Contains(got[0], "canary-00-c (1 pods") {
		t.Errorf("replicaset violations: %q", got)
	}
}
