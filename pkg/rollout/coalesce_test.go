package rollout

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestCountsOnly(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	prev := v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhaseProgressing, Message: "1/2 canary pods available", CurrentPodHash: "new", StableRS: "old",
		CurrentStepIndex: ptr.To[int32](0), Replicas: 3, UpdatedReplicas: 1, ReadyReplicas: 2, AvailableReplicas: 2, LastProgressTime: &t0,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonProgressing, Message: "1/2"}},
	}
	rows := []struct {
		name   string
		change func(st *v1alpha1.RolloutStatus)
		want   bool
	}{
		{"nothing", func(*v1alpha1.RolloutStatus) {}, true},
		{"counts, clock and messages", func(st *v1alpha1.RolloutStatus) {
			st.ReadyReplicas, st.AvailableReplicas, st.Replicas = 3, 3, 4
			st.LastProgressTime = ptr.To(metav1.NewTime(t0.Add(time.Second)))
			st.Message, st.Conditions[0].Message = "2/2", "2/2"
		}, true},
		{"step", func(st *v1alpha1.RolloutStatus) { st.CurrentStepIndex = ptr.To[int32](1) }, false},
		{"phase", func(st *v1alpha1.RolloutStatus) { st.Phase = v1alpha1.RolloutPhasePaused }, false},
		{"abort", func(st *v1alpha1.RolloutStatus) { st.Abort = true }, false},
		{"request handled", func(st *v1alpha1.RolloutStatus) { st.LastHandled.Promote = "t" }, false},
		{"condition reason", func(st *v1alpha1.RolloutStatus) {
			st.Conditions[0].Reason, st.Conditions[0].Message = v1alpha1.ReasonRolloutCompleted, "done"
		}, false},
		{"stable", func(st *v1alpha1.RolloutStatus) { st.StableRS = "new" }, false},
	}
	for _, r := range rows {
		next := prev.DeepCopy()
		r.change(next)
		if got := countsOnly(&prev, next); got != r.want {
			t.Errorf("%s: countsOnly %v, want %v", r.name, got, r.want)
		}
	}
}

func TestStatusWait(t *testing.T) {
	basic := &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{}}}}
	prev := v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhaseProgressing, Replicas: 2}
	with := func(phase v1alpha1.RolloutPhase, change func(*v1alpha1.RolloutStatus)) (*v1alpha1.RolloutStatus, *v1alpha1.RolloutStatus) {
		p, n := prev.DeepCopy(), prev.DeepCopy()
		p.Phase, n.Phase = phase, phase
		change(n)
		return p, n
	}
	counts := func(st *v1alpha1.RolloutStatus) { st.Replicas = 3 }
	step := func(st *v1alpha1.RolloutStatus) { st.CurrentStepIndex = ptr.To[int32](1) }
	rows := []struct {
		name    string
		phase   v1alpha1.RolloutPhase
		change  func(*v1alpha1.RolloutStatus)
		events  int
		requeue time.Duration
		want    time.Duration
	}{
		{"counts while an update moves", v1alpha1.RolloutPhaseProgressing, counts, 0, 0, countsDelay},
		{"counts and an event", v1alpha1.RolloutPhaseProgressing, counts, 1, 0, 0},
		{"a step while an update moves", v1alpha1.RolloutPhaseProgressing, step, 0, 0, 0},
		{"counts during a 1s timed pause", v1alpha1.RolloutPhasePaused, counts, 0, time.Second, countsDelay},
		{"counts paused until promoted", v1alpha1.RolloutPhasePaused, counts, 0, 0, 0},
		{"counts of a Healthy Rollout", v1alpha1.RolloutPhaseHealthy, counts, 0, 0, 0},
		{"counts with a timer beyond the delay", v1alpha1.RolloutPhaseHealthy, counts, 0, 2 * countsDelay, 0},
	}
	for _, r := range rows {
		p, n := with(r.phase, r.change)
		if got := statusWait(basic, p, n, r.events, r.requeue); got != r.want {
			t.Errorf("%s: statusWait %s, want %s", r.name, got, r.want)
		}
	}
}

// TestSwitchWaits: the switch of a canary without traffic routing to its
// new revision may wait (Healthy usually carries it); nothing else that
// changes with it may.
func TestSwitchWaits(t *testing.T) {
	t0, t1 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC))
	prev := v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhaseProgressing, Message: "Promoting web-2: waiting for 2 available replicas (1 now)",
		CurrentPodHash: "new", StableRS: "old", CurrentStepIndex: ptr.To[int32](2), Replicas: 3, AvailableReplicas: 2,
		Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 100, PodTemplateHash: "new"}, Stable: v1alpha1.WeightDestination{PodTemplateHash: "old"}}},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRolloutPromoted, Message: "waiting", LastTransitionTime: t0},
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonProgressing, LastTransitionTime: t0},
		},
	}
	switched := func(st *v1alpha1.RolloutStatus) {
		st.StableRS, st.Message, st.AvailableReplicas = "new", promotedMessage, 3
		st.Canary.Weights = &v1alpha1.TrafficWeights{Stable: v1alpha1.WeightDestination{Weight: 100, PodTemplateHash: "new"}}
		st.Conditions[0].Reason, st.Conditions[0].Message, st.Conditions[0].LastTransitionTime = v1alpha1.ReasonRolloutCompleted, promotedMessage, t1
	}
	basic := &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{}}}}
	routed := basic.DeepCopy()
	routed.Spec.Strategy.Canary.TrafficRouting = &v1alpha1.TrafficRouting{}
	blueGreen := &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}}}
	rows := []struct {
		name   string
		ro     *v1alpha1.Rollout
		change func(*v1alpha1.RolloutStatus)
		want   time.Duration
	}{
		{"the switch", basic, switched, switchDelay},
		{"the switch under traffic routing", routed, switched, 0},
		{"a blue-green switch", blueGreen, switched, 0},
		{"the switch and Healthy", basic, func(st *v1alpha1.RolloutStatus) { switched(st); st.Phase = v1alpha1.RolloutPhaseHealthy }, 0},
		{"the switch and a condition turned", basic, func(st *v1alpha1.RolloutStatus) { switched(st); st.Conditions[1].Status = metav1.ConditionTrue }, 0},
		{"the switch and an abort", basic, func(st *v1alpha1.RolloutStatus) { switched(st); st.Abort = true }, 0},
		{"the switch and a request handled", basic, func(st *v1alpha1.RolloutStatus) { switched(st); st.LastHandled.Promote = "t" }, 0},
		{"to a revision that is not the current one", basic, func(st *v1alpha1.RolloutStatus) { switched(st); st.StableRS = "other" }, 0},
	}
	for _, r := range rows {
		next := prev.DeepCopy()
		r.change(next)
		if got := statusWait(r.ro, &prev, next, 1, 0); got != r.want {
			t.Errorf("%s: statusWait %s, want %s", r.name, got, r.want)
		}
	}
}

func TestCoalescerHoldsUntilTheDelay(t *testing.T) {
	c := newCoalescer()
	const delay = 2 * time.Second
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := now.Add

	if wait := c.hold(key, delay, now); wait != 2*time.Second {
		t.Fatalf("first change that can wait: wait %s, want 2s", wait)
	}
	if wait := c.hold(key, delay, at(1500*time.Millisecond)); wait != 500*time.Millisecond {
		t.Errorf("another 1.5s later: wait %s, want the 0.5s left", wait)
	}
	if wait := c.hold(key, 0, at(1600*time.Millisecond)); wait != 0 {
		t.Errorf("a change that cannot wait waited %s", wait)
	}
	// After a write, a new change waits its own delay...
	if wait := c.hold(key, delay, at(1700*time.Millisecond)); wait != 2*time.Second {
		t.Errorf("after a write: wait %s, want 2s", wait)
	}
	// ...and is written once it has waited it.
	if wait := c.hold(key, delay, at(3700*time.Millisecond)); wait != 0 {
		t.Errorf("held 2s: wait %s, want a write", wait)
	}
	var none *coalescer
	if wait := none.hold(key, delay, now); wait != 0 {
		t.Errorf("a nil coalescer held a write for %s", wait)
	}
}

// TestStaleGuard: after a write, a cache that shows an older version than
// the write left is behind, overdue once that has lasted cacheLag; the same
// or a newer version means it caught up, and the guard is forgotten.
func TestStaleGuard(t *testing.T) {
	var g staleGuard
	key := types.NamespacedName{Namespace: "ns", Name: "web-abc"}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	check := func(cached string, at time.Duration, wantBehind, wantOverdue bool) {
		t.Helper()
		behind, overdue := g.behind(key, cached, now.Add(at))
		if behind != wantBehind || overdue != wantOverdue {
			t.Errorf("cache at %s after %s: behind %t overdue %t, want %t %t", cached, at, behind, overdue, wantBehind, wantOverdue)
		}
	}
	check("10", 0, false, false) // never written
	g.wrote(key, "11", now)
	check("10", time.Second, true, false)
	check("9", cacheLag, true, false) // older still: a cache that lists again may go back
	check("10", cacheLag+time.Millisecond, true, true)
	check("12", 0, false, false) // moved past the write
	check("10", cacheLag+time.Second, false, false)

	g.wrote(key, "20", now)
	check("20", 0, false, false) // caught up exactly
	g.wrote(key, "not-a-number", now)
	check("1", 0, false, false) // cannot be ordered: never waited for
	g.wrote(key, "30", now)
	check("not-a-number", 0, false, false)
	g.wrote(key, "40", now)
	g.forget(key)
	check("39", 0, false, false)
}

func TestSoonest(t *testing.T) {
	rows := []struct{ a, b, want time.Duration }{
		{0, 0, 0},
		{0, time.Second, time.Second},
		{time.Second, 0, time.Second},
		{2 * time.Second, time.Second, time.Second},
		{time.Second, 2 * time.Second, time.Second},
		{-time.Second, time.Second, time.Second},
		{time.Second, -time.Second, time.Second},
	}
	for _, r := range rows {
		if got := soonest(r.a, r.b); got != r.want {
			t.Errorf("soonest(%s, %s) = %s, want %s", r.a, r.b, got, r.want)
		}
	}
}

// TestHeldSwitchIsDecidedAgain: the planner's own switch of a canary
// without traffic routing may wait, and when it does (neither its status nor
// its events written) the next reconcile decides it again from the status
// in force, and Healthy carries it with its RolloutCompleted event, once.
func TestHeldSwitchIsDecidedAgain(t *testing.T) {
	s := newSim(t, canaryRollout(4, "1", "0", setWeight(50)))
	s.until("Healthy", 15, healthyPhase)
	previous := s.ro.Status.StableRS
	done := func() bool { return healthyPhase(s.ro.Status) && s.ro.Status.StableRS != previous }
	s.setImage("web:2")
	held, completed := 0, 0
	for i := 0; i < 40 && !done(); i++ {
		before := *s.ro.Status.DeepCopy()
		p := s.tick()
		if p.StatusWait == switchDelay {
			held++
			s.ro.Status = before // the coalescer held it: not written
			continue
		}
		for _, e := range p.Events {
			if e.Reason == v1alpha1.ReasonRolloutCompleted {
				completed++
			}
		}
	}
	if held == 0 {
		t.Fatalf("the switch never waited; status %s %q", s.ro.Status.Phase, s.ro.Status.Message)
	}
	if !done() || s.ro.Status.StableRS != s.ro.Status.CurrentPodHash {
		t.Fatalf("not Healthy on the new revision after a held switch: %s %q", s.ro.Status.Phase, s.ro.Status.Message)
	}
	if completed != 1 {
		t.Errorf("RolloutCompleted written %d times, want once (with Healthy)", completed)
	}
}
