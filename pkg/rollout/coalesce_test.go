package rollout

import (
	"testing"
	"time"

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

func TestCoalescerHoldsCountsUntilTheDelay(t *testing.T) {
	c := newCoalescer(2 * time.Second)
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhaseProgressing, Replicas: 2}
	counts := prev.DeepCopy()
	counts.Replicas = 3
	step := prev.DeepCopy()
	step.CurrentStepIndex = ptr.To[int32](1)

	if wait := c.hold(key, &prev, counts, time.Time{}, now); wait != 2*time.Second {
		t.Fatalf("first counts-only change: wait %s, want 2s", wait)
	}
	if wait := c.hold(key, &prev, counts, time.Time{}, now.Add(1500*time.Millisecond)); wait != 500*time.Millisecond {
		t.Errorf("the same change 1.5s later: wait %s, want the 0.5s left", wait)
	}
	if wait := c.hold(key, &prev, step, time.Time{}, now.Add(1600*time.Millisecond)); wait != 0 {
		t.Errorf("a step change waited %s; it is written at once (with the counts)", wait)
	}
	// After a write, a new counts-only change waits its own delay...
	if wait := c.hold(key, &prev, counts, time.Time{}, now.Add(1700*time.Millisecond)); wait != 2*time.Second {
		t.Errorf("counts after a write: wait %s, want 2s", wait)
	}
	// ...and is written once it has waited it.
	if wait := c.hold(key, &prev, counts, time.Time{}, now.Add(3700*time.Millisecond)); wait != 0 {
		t.Errorf("counts held 2s: wait %s, want a write", wait)
	}
	healthy := counts.DeepCopy()
	healthy.Phase = v1alpha1.RolloutPhaseHealthy
	if wait := c.hold(key, &prev, healthy, time.Time{}, now); wait != 0 {
		t.Errorf("counts of a Rollout at rest waited %s", wait)
	}
	// Paused, but a timed pause ends within the delay: held until then.
	prevPaused := prev.DeepCopy()
	prevPaused.Phase = v1alpha1.RolloutPhasePaused
	paused := counts.DeepCopy()
	paused.Phase = v1alpha1.RolloutPhasePaused
	if wait := c.hold(key, prevPaused, paused, now.Add(time.Second), now); wait != 2*time.Second {
		t.Errorf("counts during a 1s timed pause: wait %s, want 2s", wait)
	}
	if wait := c.hold(key, prevPaused, paused, time.Time{}, now.Add(time.Second)); wait != 0 {
		t.Errorf("counts of a Rollout paused until promoted waited %s", wait)
	}
	if wait := newCoalescer(-1).hold(key, &prev, counts, time.Time{}, now); wait != 0 {
		t.Errorf("with a negative delay counts waited %s", wait)
	}
	var none *coalescer
	if wait := none.hold(key, &prev, counts, time.Time{}, now); wait != 0 {
		t.Errorf("a nil coalescer held a write for %s", wait)
	}
}

// TestSeenOwnScale: after the controller scales a ReplicaSet, a cache that
// still shows the version it scaled from is behind; any other version means
// it has caught up (or moved past), and the guard is forgotten.
func TestSeenOwnScale(t *testing.T) {
	r := &Reconciler{}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-abc", ResourceVersion: "10"}}
	if !r.seenOwnScale(rs) {
		t.Fatal("a ReplicaSet never scaled counted as stale")
	}
	r.scaled.Store(types.NamespacedName{Namespace: "ns", Name: "web-abc"}, "10")
	if r.seenOwnScale(rs) {
		t.Error("the version scaled from counted as current")
	}
	rs.ResourceVersion = "11"
	if !r.seenOwnScale(rs) {
		t.Error("the version after the scale counted as stale")
	}
	rs.ResourceVersion = "10"
	if !r.seenOwnScale(rs) {
		t.Error("the guard outlived the cache catching up")
	}
}
