package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
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
		if got := statusWait(basic, p, n, r.events, r.requeue, false).Delay; got != r.want {
			t.Errorf("%s: statusWait %s, want %s", r.name, got, r.want)
		}
	}
}

// TestTailWaits: the tail of an update of a canary without traffic routing
// — its last steps done, the switch to its revision — may wait (Healthy
// usually carries it), when the steps passed complete by themselves and the
// canary's ReplicaSet records them; nothing else that changes with it may.
func TestTailWaits(t *testing.T) {
	t0, t1 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC))
	atEnd := v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhaseProgressing, Message: "Promoting web-2: waiting for 2 available replicas (1 now)",
		CurrentPodHash: "new", StableRS: "old", CurrentStepIndex: ptr.To[int32](2), CurrentStepHash: "steps", Replicas: 3, AvailableReplicas: 2,
		Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 100, PodTemplateHash: "new"}, Stable: v1alpha1.WeightDestination{PodTemplateHash: "old"}}},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRolloutPromoted, Message: "waiting", LastTransitionTime: t0},
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonProgressing, LastTransitionTime: t0},
		},
	}
	// atStep0 is the status in force at the first step, a weight of 50.
	atStep0 := atEnd.DeepCopy()
	atStep0.CurrentStepIndex = ptr.To[int32](0)
	atStep0.Canary.Weights.Canary.Weight, atStep0.Canary.Weights.Stable.Weight = 50, 50
	atStep0.Conditions[0].Reason = v1alpha1.ReasonReplicaSetUpdated
	switched := func(st *v1alpha1.RolloutStatus) {
		st.StableRS, st.Message, st.AvailableReplicas = "new", promotedMessage, 3
		st.Canary.Weights = &v1alpha1.TrafficWeights{Stable: v1alpha1.WeightDestination{Weight: 100, PodTemplateHash: "new"}}
		st.Conditions[0].Reason, st.Conditions[0].Message, st.Conditions[0].LastTransitionTime = v1alpha1.ReasonRolloutCompleted, promotedMessage, t1
	}
	stepsDone := func(st *v1alpha1.RolloutStatus) {
		st.CurrentStepIndex, st.Replicas = ptr.To[int32](2), 3
		st.Canary.Weights.Canary.Weight, st.Canary.Weights.Stable.Weight = 100, 0
		st.Conditions[0].Reason, st.Message = v1alpha1.ReasonRolloutPromoted, "Promoting web-2: waiting for 2 available replicas (1 now)"
	}
	canary := func(steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: steps}}}}
	}
	basic := canary(setWeight(50), pause("1s"))
	routed := basic.DeepCopy()
	routed.Spec.Strategy.Canary.TrafficRouting = &v1alpha1.TrafficRouting{}
	blueGreen := &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}}}
	analysis := canary(setWeight(50), v1alpha1.CanaryStep{Analysis: &v1alpha1.RolloutAnalysis{}})
	indefinite := canary(setWeight(50), pause(""))
	rows := []struct {
		name   string
		ro     *v1alpha1.Rollout
		prev   *v1alpha1.RolloutStatus
		change func(*v1alpha1.RolloutStatus)
		marked bool
		want   time.Duration
	}{
		{"the switch", basic, &atEnd, switched, false, 150 * time.Second},
		{"the switch under traffic routing", routed, &atEnd, switched, false, 0},
		{"a blue-green switch", blueGreen, &atEnd, switched, false, 0},
		{"the switch and Healthy", basic, &atEnd, func(st *v1alpha1.RolloutStatus) { switched(st); st.Phase = v1alpha1.RolloutPhaseHealthy }, false, 0},
		{"the switch and a condition turned", basic, &atEnd, func(st *v1alpha1.RolloutStatus) { switched(st); st.Conditions[1].Status = metav1.ConditionTrue }, false, 0},
		{"the switch and an abort", basic, &atEnd, func(st *v1alpha1.RolloutStatus) { switched(st); st.Abort = true }, false, 0},
		{"the switch and a request handled", basic, &atEnd, func(st *v1alpha1.RolloutStatus) { switched(st); st.LastHandled.Promote = "t" }, false, 0},
		{"to a revision that is not the current one", basic, &atEnd, func(st *v1alpha1.RolloutStatus) { switched(st); st.StableRS = "other" }, false, 0},
		{"the last steps, marked", basic, atStep0, stepsDone, true, 150 * time.Second},
		{"the last steps and the switch, marked", basic, atStep0, func(st *v1alpha1.RolloutStatus) { stepsDone(st); switched(st) }, true, 150 * time.Second},
		{"the last steps, not marked", basic, atStep0, stepsDone, false, 0},
		{"the last steps under traffic routing", routed, atStep0, stepsDone, true, 0},
		{"past an analysis step", analysis, atStep0, stepsDone, true, 0},
		{"past a pause until promoted", indefinite, atStep0, stepsDone, true, 0},
		{"a step that is not the last", canary(setWeight(50), pause("1s"), setWeight(75)), atStep0, stepsDone, true, 0},
		{"the last steps and a new step hash", basic, atStep0, func(st *v1alpha1.RolloutStatus) { stepsDone(st); st.CurrentStepHash = "other" }, true, 0},
		{"the last steps and a pause left", basic, atStep0, func(st *v1alpha1.RolloutStatus) {
			stepsDone(st)
			st.PauseConditions = []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep}}
		}, true, 0},
	}
	for _, r := range rows {
		next := r.prev.DeepCopy()
		r.change(next)
		if got := statusWait(r.ro, r.prev, next, 1, 0, r.marked).Delay; got != r.want {
			t.Errorf("%s: statusWait %s, want %s", r.name, got, r.want)
		}
	}
}

// TestTailWaitFollowsTheDeadline: the tail may wait a quarter of the
// progress deadline, at least tailDelay.
func TestTailWaitFollowsTheDeadline(t *testing.T) {
	ro := func(deadline int32) *v1alpha1.Rollout {
		ro := &v1alpha1.Rollout{}
		if deadline > 0 {
			ro.Spec.ProgressDeadlineSeconds = ptr.To(deadline)
		}
		return ro
	}
	rows := []struct {
		name string
		ro   *v1alpha1.Rollout
		want time.Duration
	}{
		{"the default deadline of 600s", ro(0), 150 * time.Second},
		{"a deadline of 200s", ro(200), 50 * time.Second},
		{"a deadline of 60s", ro(60), tailDelay},
	}
	for _, r := range rows {
		if got := tailWait(r.ro); got != r.want {
			t.Errorf("%s: tailWait %s, want %s", r.name, got, r.want)
		}
	}
}

func TestCoalescerHoldsUntilTheDelay(t *testing.T) {
	c := newCoalescer()
	counts := Wait{waitCounts, 2 * time.Second}
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := now.Add
	st := &v1alpha1.RolloutStatus{}

	if wait := c.hold(key, counts, st, now); wait != 2*time.Second {
		t.Fatalf("first change that can wait: wait %s, want 2s", wait)
	}
	if wait := c.hold(key, counts, st, at(1500*time.Millisecond)); wait != 500*time.Millisecond {
		t.Errorf("another 1.5s later: wait %s, want the 0.5s left", wait)
	}
	if wait := c.hold(key, Wait{}, st, at(1600*time.Millisecond)); wait != 0 {
		t.Errorf("a change that cannot wait waited %s", wait)
	}
	// After a write, a new change waits its own delay...
	if wait := c.hold(key, counts, st, at(1700*time.Millisecond)); wait != 2*time.Second {
		t.Errorf("after a write: wait %s, want 2s", wait)
	}
	// ...a change of another kind waits its own delay from when it first
	// waited, not from the first change held...
	if wait := c.hold(key, Wait{waitTail, 5 * time.Second}, st, at(3000*time.Millisecond)); wait != 5*time.Second {
		t.Errorf("a switch after counts held: wait %s, want its 5s", wait)
	}
	if wait := c.hold(key, Wait{waitTail, 5 * time.Second}, st, at(7000*time.Millisecond)); wait != time.Second {
		t.Errorf("the switch 4s later: wait %s, want the 1s left", wait)
	}
	// A later plan that would let it wait longer does not move the end.
	if wait := c.hold(key, Wait{waitTail, 9 * time.Second}, st, at(7500*time.Millisecond)); wait != 500*time.Millisecond {
		t.Errorf("the switch with a longer delay later: wait %s, want the 0.5s left", wait)
	}
	// ...and is written once it has waited it.
	if wait := c.hold(key, Wait{waitTail, 5 * time.Second}, st, at(8000*time.Millisecond)); wait != 0 {
		t.Errorf("held 5s: wait %s, want a write", wait)
	}
	var none *coalescer
	if wait := none.hold(key, counts, st, now); wait != 0 {
		t.Errorf("a nil coalescer held a write for %s", wait)
	}
	if held := none.heldStatus(key); held != nil {
		t.Errorf("a nil coalescer remembers a status: %+v", held)
	}
}

// TestCoalescerRemembersTheHeldStatus: while a status waits, the coalescer
// gives the latest one back to the planner (a copy it cannot change); a
// write, or the Rollout going, forgets it.
func TestCoalescerRemembersTheHeldStatus(t *testing.T) {
	c := newCoalescer()
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	paused := &v1alpha1.RolloutStatus{CurrentPodHash: "new", CurrentStepIndex: ptr.To[int32](1), PauseConditions: []v1alpha1.PauseCondition{
		{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: metav1.NewTime(now)},
	}}
	counted := paused.DeepCopy()
	counted.Replicas = 3
	if held := c.heldStatus(key); held != nil {
		t.Fatalf("a status before any was held: %+v", held)
	}
	if wait := c.hold(key, Wait{waitPause, 3 * time.Second}, paused, now); wait != 3*time.Second {
		t.Fatalf("a pause start held: wait %s, want 3s", wait)
	}
	c.hold(key, Wait{waitCounts, time.Minute}, counted, now.Add(time.Second))
	held := c.heldStatus(key)
	if diff := cmp.Diff(counted, held); diff != "" {
		t.Fatalf("held status, not the latest (-want +got):\n%s", diff)
	}
	held.Replicas = 9
	if again := c.heldStatus(key); again.Replicas != 3 {
		t.Errorf("a change to the copy given out reached the held status: replicas %d", again.Replicas)
	}
	c.hold(key, Wait{}, counted, now.Add(2*time.Second))
	if held := c.heldStatus(key); held != nil {
		t.Errorf("a status still held after a write: %+v", held)
	}
	c.hold(key, Wait{waitPause, 3 * time.Second}, paused, now)
	c.forget(key)
	if held := c.heldStatus(key); held != nil {
		t.Errorf("a status still held after the Rollout went: %+v", held)
	}
}

// TestPauseWaits: reaching a short timed pause step may wait for the write
// that ends the pause; a longer pause, one that waits for a person, or
// anything else that changes with it may not.
func TestPauseWaits(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(5 * time.Second))
	prev := v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhaseProgressing, Message: "Step 1/2: scaling to weight 50 (1 canary / 1 stable)",
		CurrentPodHash: "new", StableRS: "old", CurrentStepIndex: ptr.To[int32](0), Replicas: 3, AvailableReplicas: 2, LastProgressTime: &t0,
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReplicaSetUpdated, LastTransitionTime: t0},
			{Type: v1alpha1.ConditionPaused, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonReplicaSetUpdated, LastTransitionTime: t0},
		},
	}
	paused := func(st *v1alpha1.RolloutStatus) {
		st.Phase, st.Message, st.CurrentStepIndex, st.LastProgressTime, st.AvailableReplicas = v1alpha1.RolloutPhasePaused, "Step 2/2: paused for 1s", ptr.To[int32](1), nil, 3
		st.PauseConditions = []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: t1}}
		for i := range st.Conditions {
			st.Conditions[i].Reason, st.Conditions[i].Message, st.Conditions[i].LastTransitionTime = v1alpha1.ReasonCanaryPauseStep, st.Message, t1
		}
		st.Conditions[1].Status = metav1.ConditionTrue
	}
	rollout := func(d string) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			Steps: []v1alpha1.CanaryStep{setWeight(50), pause(d)},
		}}}}
	}
	short := rollout("1s")
	routed := short.DeepCopy()
	routed.Spec.Strategy.Canary.TrafficRouting = &v1alpha1.TrafficRouting{}
	weighted := func(st *v1alpha1.RolloutStatus) {
		paused(st)
		st.Canary.Weights = &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 50, PodTemplateHash: "new"}}
	}
	specPaused := short.DeepCopy()
	specPaused.Spec.Paused = true
	rows := []struct {
		name   string
		ro     *v1alpha1.Rollout
		change func(*v1alpha1.RolloutStatus)
		events int
		want   Wait
	}{
		{"a 1s pause reached", short, paused, 0, Wait{waitPause, time.Second + pauseSlack}},
		{"a pause of pauseHoldMax", rollout("3s"), paused, 0, Wait{waitPause, pauseHoldMax + pauseSlack}},
		{"a longer pause", rollout("4s"), paused, 0, Wait{}},
		{"a pause until promoted", rollout(""), paused, 0, Wait{}},
		{"a pause with an event", short, paused, 1, Wait{}},
		{"a pause under spec.paused", specPaused, paused, 0, Wait{}},
		{"a pause and an abort", short, func(st *v1alpha1.RolloutStatus) { paused(st); st.Abort = true }, 0, Wait{}},
		{"a pause and a request handled", short, func(st *v1alpha1.RolloutStatus) { paused(st); st.LastHandled.Promote = "t" }, 0, Wait{}},
		{"a pause and weights without a router", short, weighted, 0, Wait{waitPause, time.Second + pauseSlack}},
		{"a pause and weights given to a router", routed, weighted, 0, Wait{}},
		{"a pause on a new revision", short, func(st *v1alpha1.RolloutStatus) { paused(st); st.CurrentPodHash = "newer" }, 0, Wait{}},
		{"an inconclusive analysis", short, func(st *v1alpha1.RolloutStatus) {
			paused(st)
			st.PauseConditions[0].Reason = v1alpha1.PauseReasonInconclusiveAnalysis
		}, 0, Wait{}},
	}
	for _, r := range rows {
		next := prev.DeepCopy()
		r.change(next)
		if got := statusWait(r.ro, &prev, next, r.events, time.Second, false); got != r.want {
			t.Errorf("%s: statusWait %+v, want %+v", r.name, got, r.want)
		}
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
		p, wait := s.tickHeld()
		if wait {
			if p.StatusWait.Kind == waitTail {
				held++
			}
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

// heldTail runs a canary without traffic routing from Healthy on web:1
// through an update to web:2 until the status write of its tail (steps
// done, switch) first waits, and returns the canary's size then.
func heldTail(t *testing.T) (*sim, int32) {
	t.Helper()
	s := newSim(t, canaryRollout(4, "1", "0", setWeight(50), pause("1s")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	for range 40 {
		p, held := s.tickHeld()
		if held && p.StatusWait.Kind == waitTail && ptr.Deref(s.ro.Status.CurrentStepIndex, 0) < 2 {
			if got := s.canary().Annotations[v1alpha1.StepsDoneAnnotation]; got != s.ro.Status.CurrentStepHash {
				t.Fatalf("the tail waits, but the canary's mark is %q, want the steps hash %q", got, s.ro.Status.CurrentStepHash)
			}
			return s, *s.canary().Spec.Replicas
		}
	}
	t.Fatalf("the tail never waited; status %s step %d %q", s.ro.Status.Phase, ptr.Deref(s.ro.Status.CurrentStepIndex, 0), s.ro.Status.Message)
	return nil, 0
}

// canary is the ReplicaSet of the sim's current revision.
func (s *sim) canary() *appsv1.ReplicaSet {
	s.t.Helper()
	for _, rs := range s.rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == s.ro.Status.CurrentPodHash {
			return rs
		}
	}
	s.t.Fatalf("no ReplicaSet of the current revision %s", s.ro.Status.CurrentPodHash)
	return nil
}

// TestHeldTailKeepsItsSteps: the tail of a canary without traffic routing
// waits for Healthy with the status in force still at the first step, and
// every reconcile meanwhile — from that status, with the held one or, after
// a restart of the controller, without it — finds the steps done from the
// canary's mark: the canary only grows, and Healthy carries the steps and
// the switch with one RolloutCompleted event.
func TestHeldTailKeepsItsSteps(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			s, size := heldTail(t)
			if restart {
				s.coalesce = newCoalescer()
			}
			completed := 0
			for i := 0; i < 40 && !healthyPhase(s.ro.Status); i++ {
				p, held := s.tickHeld()
				if got := *s.canary().Spec.Replicas; got < size {
					t.Fatalf("the canary shrank from %d to %d in the tail; status step %d %q", size, got, ptr.Deref(s.ro.Status.CurrentStepIndex, 0), s.ro.Status.Message)
				} else {
					size = got
				}
				for _, e := range p.Events {
					if !held && e.Reason == v1alpha1.ReasonRolloutCompleted {
						completed++
					}
				}
			}
			if !healthyPhase(s.ro.Status) || s.ro.Status.StableRS != s.ro.Status.CurrentPodHash || ptr.Deref(s.ro.Status.CurrentStepIndex, 0) != 2 {
				t.Fatalf("not Healthy on the new revision past both steps: %s step %d %q", s.ro.Status.Phase, ptr.Deref(s.ro.Status.CurrentStepIndex, 0), s.ro.Status.Message)
			}
			if completed != 1 {
				t.Errorf("RolloutCompleted written %d times, want once (with Healthy)", completed)
			}
			s.expectSizes(map[string]int32{"web:2": 4})
		})
	}
}

// TestAbortInTheTailClearsTheMark: an abort while the tail waits takes the
// canary away with its mark, and a retry runs the steps again from the
// first: the canary comes back at the first step's size, not at full size.
func TestAbortInTheTailClearsTheMark(t *testing.T) {
	s, _ := heldTail(t)
	s.request(v1alpha1.AbortAnnotation, "a1")
	s.until("aborted", 20, func(st v1alpha1.RolloutStatus) bool { return st.Phase == v1alpha1.RolloutPhaseDegraded })
	s.wait(3)
	if mark, ok := s.canary().Annotations[v1alpha1.StepsDoneAnnotation]; ok {
		t.Fatalf("the aborted canary keeps its steps-done mark %q", mark)
	}
	s.request(v1alpha1.RetryAnnotation, "r1")
	s.until("at the pause again", 30, func(st v1alpha1.RolloutStatus) bool { return ptr.Deref(st.CurrentStepIndex, 0) == 1 })
	s.expectSizes(map[string]int32{"web:2": 2, "web:1": 2})
}

// TestHeldPauseKeepsItsStart: the start of a 3s pause step waits for the
// write that ends it — the status in force never says Paused — and the
// pause, started again by every reconcile from that status, still ends 3s
// after it first started, because the planner keeps the held start.
func TestHeldPauseKeepsItsStart(t *testing.T) {
	s := newSim(t, canaryRollout(4, "1", "0", setWeight(50), pause("3s"), setWeight(75)))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	var first, over time.Time
	for i := 0; i < 40 && over.IsZero(); i++ {
		now := s.now
		p, held := s.tickHeld()
		if s.ro.Status.Phase == v1alpha1.RolloutPhasePaused {
			t.Fatalf("the held pause was written at %s: %q", now.Sub(s.start), s.ro.Status.Message)
		}
		switch {
		case held && p.StatusWait.Kind == waitPause && first.IsZero():
			first = now
		case !held && ptr.Deref(s.ro.Status.CurrentStepIndex, 0) >= 2:
			over = now
		}
	}
	if first.IsZero() || over.IsZero() {
		t.Fatalf("the pause was never held (%s) or never ended (%s); status %s %q", first, over, s.ro.Status.Phase, s.ro.Status.Message)
	}
	if d := over.Sub(first); d < 3*time.Second || d > 4*time.Second {
		t.Errorf("the held pause lasted %s, want 3s (one reconcile a second)", d)
	}
	s.until("Healthy", 30, healthyPhase)
}

// TestHeldCountsDoNotPostponeTheDeadline: counts that wait to be written
// are progress once, when they change, not at every reconcile until the
// write: an update stuck after a held change of counts is Degraded at its
// progress deadline, well before the counts would have been written.
func TestHeldCountsDoNotPostponeTheDeadline(t *testing.T) {
	s := stuckUpdate(t, 10, false)
	var counted, degraded time.Time
	for i := 0; i < 60 && degraded.IsZero(); i++ {
		now := s.now
		p, held := s.tickHeld()
		switch {
		case held && p.StatusWait.Kind == waitCounts && counted.IsZero():
			counted = now
		case s.ro.Status.Phase == v1alpha1.RolloutPhaseDegraded:
			degraded = now
		}
	}
	if counted.IsZero() || degraded.IsZero() {
		t.Fatalf("no counts held (%s) or never Degraded (%s); status %s %q", counted, degraded, s.ro.Status.Phase, s.ro.Status.Message)
	}
	if d := degraded.Sub(counted); d < 9*time.Second || d > 11*time.Second {
		t.Errorf("Degraded %s after the counts first waited, want the 10s deadline (counts may wait %s)", d, countsDelay)
	}
}
