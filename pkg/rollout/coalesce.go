package rollout

import (
	"math"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// countsDelay is how long, during an update, a status change that only
// refreshes the replica counts may wait to be written. The progress
// deadline does not wait with it: it is measured from the held status
// (Input.HeldStatus).
const countsDelay = 2 * time.Minute

// tailDelay is the least the tail of an update of a canary without traffic
// routing may wait to be written: past its last step, what is left is the
// canary's scale-up, the switch to it and the previous revision's
// scale-down, and Healthy, once those pods are gone, carries the tail in
// one write instead of two or three. Under load the pods come and go
// slowly, and the tail may wait up to a quarter of the progress deadline
// (tailWait).
const tailDelay = 30 * time.Second

// pauseHoldMax is the longest timed pause step whose start may go unwritten:
// the write that ends the pause carries it instead, one write instead of
// two. A pause this short is over before anyone watching could act on it.
// After a restart the controller starts such a pause again, so it lasts at
// most twice as long; a longer pause is written, and shows as Paused, when
// it starts.
const pauseHoldMax = 3 * time.Second

// pauseSlack is how much longer than its duration the start of a held pause
// may wait: the reconcile that ends the pause may come a little late.
const pauseSlack = 2 * time.Second

// waitKind is what kind of status change waits.
type waitKind int

const (
	waitNone waitKind = iota
	// waitCounts: only the counts changed (countsOnly).
	waitCounts
	// waitTail: a canary without traffic routing past its last step, or
	// switched (tailOnly).
	waitTail
	// waitPause: a short timed pause step started (pauseOnly).
	waitPause
	waitKinds
)

// Wait is how long a plan's status change may wait for the next write that
// matters, which carries it, and what kind of change it is. The zero Wait
// writes it now.
type Wait struct {
	Kind  waitKind
	Delay time.Duration
}

// statusWait is how long a status change may wait for the next one that
// matters, which carries it. Three kinds of change wait:
//   - one that only refreshes counts (countsOnly) while the Rollout is
//     moving — an update in progress, or a timer (a timed pause) due within
//     countsDelay — so that next write is coming. A Rollout at rest (Healthy,
//     Degraded, paused until promoted) has its counts written at once;
//   - the tail of an update of a canary without traffic routing (tailOnly):
//     its last steps done, the switch to its revision, for tailWait. Until
//     it is written the status still says Progressing, which is true; what
//     waits is the step reached and the name of the new stable revision;
//   - the start of a timed pause step of at most pauseHoldMax (pauseOnly),
//     for the pause and pauseSlack: the status says Progressing at the step
//     before, and the write that ends the pause moves it past both. The
//     controller remembers when the pause started (Input.HeldStatus).
//
// All are decided again from the status in force by the next reconcile
// (the steps of a tail with the mark on the canary's ReplicaSet, which
// stepsMarked says it carries), so a held change's events wait with it (a
// plan with events whose change is only counts, or a pause, is written at
// once).
func statusWait(ro *v1alpha1.Rollout, prev, next *v1alpha1.RolloutStatus, events int, requeueAfter time.Duration, stepsMarked bool) Wait {
	moving := next.Phase == v1alpha1.RolloutPhaseProgressing || requeueAfter > 0 && requeueAfter <= countsDelay
	switch {
	case moving && events == 0 && countsOnly(prev, next):
		return Wait{waitCounts, countsDelay}
	case tailOnly(ro, prev, next, stepsMarked):
		return Wait{waitTail, tailWait(ro)}
	}
	if d, ok := pauseOnly(ro, prev, next); ok && events == 0 {
		return Wait{waitPause, d + pauseSlack}
	}
	return Wait{}
}

// countsOnly reports whether next differs from prev only in what moves with
// every pod that comes and goes: the replica counts, the progress clock and
// the messages that describe them. Everything a decision rests on (phase,
// revision, step, pause, abort, the request tokens handled) is elsewhere.
func countsOnly(prev, next *v1alpha1.RolloutStatus) bool {
	n := next.DeepCopy()
	n.Replicas, n.UpdatedReplicas, n.ReadyReplicas, n.AvailableReplicas, n.HPAReplicas =
		prev.Replicas, prev.UpdatedReplicas, prev.ReadyReplicas, prev.AvailableReplicas, prev.HPAReplicas
	n.LastProgressTime, n.Message = prev.LastProgressTime, prev.Message
	for i := range n.Conditions {
		if c := meta.FindStatusCondition(prev.Conditions, n.Conditions[i].Type); c != nil && c.Status == n.Conditions[i].Status && c.Reason == n.Conditions[i].Reason {
			n.Conditions[i].Message = c.Message
		}
	}
	return equality.Semantic.DeepEqual(prev, n)
}

// tailOnly reports whether next is prev with a canary of a Rollout without
// traffic routing past its last step, still Progressing (the canary scaling
// up, the previous revision's pods still going), and maybe promoted to
// stable: the step reached, the stable revision, the weights and the words
// that say so changed, and the counts, nothing else. The steps passed since
// prev are ones that complete by themselves (weights reached, timed pauses
// over), and the canary's ReplicaSet records that they are done (marked),
// so that the next reconcile, from prev, finds them done rather than
// scaling back to the step prev names. No router or Service depends on the
// step or the recorded stable revision then, and the next reconcile decides
// the switch again.
func tailOnly(ro *v1alpha1.Rollout, prev, next *v1alpha1.RolloutStatus, marked bool) bool {
	c := ro.Spec.Strategy.Canary
	if c == nil || c.TrafficRouting != nil || prev.Phase != v1alpha1.RolloutPhaseProgressing || next.Phase != v1alpha1.RolloutPhaseProgressing ||
		next.Abort || prev.CurrentPodHash != next.CurrentPodHash || prev.CurrentStepHash != next.CurrentStepHash ||
		len(prev.PauseConditions) > 0 || len(next.PauseConditions) > 0 || int(ptr.Deref(next.CurrentStepIndex, 0)) != len(c.Steps) ||
		next.StableRS != prev.StableRS && next.StableRS != next.CurrentPodHash {
		return false
	}
	from := int(ptr.Deref(prev.CurrentStepIndex, 0))
	if from == len(c.Steps) && prev.StableRS == next.StableRS {
		return false // neither a step nor the switch: counts (countsOnly)
	}
	if from < len(c.Steps) {
		if !marked {
			return false
		}
		for _, step := range c.Steps[from:] {
			if step.SetWeight == nil && (step.Pause == nil || step.Pause.Duration == nil) {
				return false
			}
		}
	}
	n := next.DeepCopy()
	n.StableRS, n.PromoteFull, n.CurrentStepIndex = prev.StableRS, prev.PromoteFull, prev.CurrentStepIndex
	n.Canary.Weights = prev.Canary.Weights
	for i := range n.Conditions {
		if c := meta.FindStatusCondition(prev.Conditions, n.Conditions[i].Type); c != nil && c.Status == n.Conditions[i].Status {
			n.Conditions[i].Reason, n.Conditions[i].LastTransitionTime = c.Reason, c.LastTransitionTime
		}
	}
	return countsOnly(prev, n)
}

// tailWait is how long the tail of an update of a Rollout may wait: a
// quarter of the progress deadline, the time the user gave an update to
// move, and at least tailDelay. Healthy ends it sooner, on most clusters
// long before: the wait only matters where the pods go slowly.
func tailWait(ro *v1alpha1.Rollout) time.Duration {
	return max(tailDelay, progressDeadline(ro)/4)
}

// pauseOnly reports whether next is prev, Progressing, now Paused at a
// timed pause step of at most pauseHoldMax which it just reached — past
// steps that completed by themselves (weights reached) — and returns the
// pause's duration. Only the step, the phase, the pause and the words that
// say so changed, and the counts (and, without traffic routing, the
// weights, which then describe the pods' split): no weight a router was
// given, no analysis, no request handled.
// The next reconcile reaches the same pause again from prev, and keeps its
// start from Input.HeldStatus.
func pauseOnly(ro *v1alpha1.Rollout, prev, next *v1alpha1.RolloutStatus) (time.Duration, bool) {
	c := ro.Spec.Strategy.Canary
	if c == nil || ro.Spec.Paused || prev.Phase != v1alpha1.RolloutPhaseProgressing || next.Phase != v1alpha1.RolloutPhasePaused ||
		len(prev.PauseConditions) > 0 || len(next.PauseConditions) != 1 || next.PauseConditions[0].Reason != v1alpha1.PauseReasonCanaryPauseStep {
		return 0, false
	}
	i := int(ptr.Deref(next.CurrentStepIndex, 0))
	if i >= len(c.Steps) || c.Steps[i].Pause == nil || c.Steps[i].Pause.Duration == nil || i <= int(ptr.Deref(prev.CurrentStepIndex, 0)) {
		return 0, false
	}
	d, err := v1alpha1.ParseSecondsOrDuration(*c.Steps[i].Pause.Duration)
	if err != nil || d <= 0 || d > pauseHoldMax {
		return 0, false
	}
	n := next.DeepCopy()
	n.Phase, n.PauseConditions, n.CurrentStepIndex = prev.Phase, prev.PauseConditions, prev.CurrentStepIndex
	if c.TrafficRouting == nil {
		// Without a router the weights only describe the pods' split.
		n.Canary.Weights = prev.Canary.Weights
	}
	if len(n.Conditions) != len(prev.Conditions) {
		return 0, false
	}
	for i := range n.Conditions {
		c := meta.FindStatusCondition(prev.Conditions, n.Conditions[i].Type)
		if c == nil {
			return 0, false
		}
		n.Conditions[i] = *c
	}
	return d, countsOnly(prev, n)
}

// coalescer times the status changes the plan says can wait: each kind of
// change waits at most as long as the plan said when a change of that kind
// first waited, and the next write that matters (a step done, a
// timed pause over, a switch, Healthy) carries them sooner.
type coalescer struct {
	mu   sync.Mutex
	held map[types.NamespacedName]*held
}

// held is what of one Rollout's status waits.
type held struct {
	// until is when the change of each kind that waits must be written: its
	// delay from when a change of that kind first waited (zero: none has).
	until [waitKinds]time.Time
	// status is the latest status that waits.
	status *v1alpha1.RolloutStatus
}

func newCoalescer() *coalescer {
	return &coalescer{held: map[types.NamespacedName]*held{}}
}

// hold returns how much longer a Rollout's status change st may wait (0:
// write it now: it cannot wait, or has waited long enough).
func (c *coalescer) hold(key types.NamespacedName, w Wait, st *v1alpha1.RolloutStatus, now time.Time) time.Duration {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.Delay <= 0 || w.Kind <= waitNone || w.Kind >= waitKinds {
		delete(c.held, key)
		return 0
	}
	h := c.held[key]
	if h == nil {
		h = &held{}
		c.held[key] = h
	}
	if h.until[w.Kind].IsZero() {
		h.until[w.Kind] = now.Add(w.Delay)
	}
	left := h.until[w.Kind].Sub(now)
	if left <= 0 {
		delete(c.held, key)
		return 0
	}
	h.status = st.DeepCopy()
	return left
}

// heldStatus is the latest status of a Rollout that waits, if any.
func (c *coalescer) heldStatus(key types.NamespacedName) *v1alpha1.RolloutStatus {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.held[key]; h != nil && h.status != nil {
		return h.status.DeepCopy()
	}
	return nil
}

// forget drops what is known of a Rollout that is gone.
func (c *coalescer) forget(key types.NamespacedName) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, key)
}

// staleGuard remembers, per object, the resourceVersion of this
// controller's last write to it. A cache that shows an older version has not
// seen the write, and planning from it would do the same work twice; the
// same or a newer version means it caught up, and the entry goes.
//
// The cache is expected to catch up within milliseconds, through the watch.
// When it has not after cacheLag (a watch the API server ended and the
// informer backing off before it lists again, which can last a minute), the
// guard says so, and the reconcile reads the object from the API server
// instead of waiting: a pending abort must not wait for an informer.
//
// Resource versions are compared as numbers, as etcd writes them. One that
// is not a number cannot be ordered, and is never waited for.
type staleGuard struct{ last sync.Map } // types.NamespacedName → writtenAt

type writtenAt struct {
	version uint64
	at      time.Time
}

// cacheLag is how long a reconcile waits for the cache to show its own
// write before it reads around the cache.
const cacheLag = 2 * time.Second

// wrote records a write that left an object at version after.
func (g *staleGuard) wrote(key types.NamespacedName, after string, now time.Time) {
	if v, err := strconv.ParseUint(after, 10, 64); err == nil {
		g.last.Store(key, writtenAt{version: v, at: now})
	}
}

// behind reports whether the cached version predates our last write, and
// whether it has for longer than cacheLag (overdue: read the live object).
func (g *staleGuard) behind(key types.NamespacedName, cached string, now time.Time) (behind, overdue bool) {
	w, ok := g.last.Load(key)
	if !ok {
		return false, false
	}
	last := w.(writtenAt)
	if v, err := strconv.ParseUint(cached, 10, 64); err != nil || v >= last.version {
		g.last.CompareAndDelete(key, w)
		return false, false
	}
	return true, now.Sub(last.at) > cacheLag
}

// unsure records a write whose outcome is unknown: the request went out
// and no answer came back (a cut connection, a timeout, a 5xx from
// something in between), so the API server may have applied it; or one
// refused because the object was not what the cache said. Nothing in the
// cache can be trusted to show it, and the next reconcile reads the
// object from the API server at once (found by the soak: a scale-down of
// the stable whose answer was lost, and a plan on the cache's old size
// removed a canary the availability floor still needed).
func (g *staleGuard) unsure(key types.NamespacedName, now time.Time) {
	g.last.Store(key, writtenAt{version: math.MaxUint64, at: now.Add(-cacheLag - time.Nanosecond)})
}

// readLive records the version of the object read from the API server
// after an unsure write: from then on the cache must show that one.
func (g *staleGuard) readLive(key types.NamespacedName, version string) {
	w, ok := g.last.Load(key)
	if !ok || w.(writtenAt).version != math.MaxUint64 {
		return
	}
	if v, err := strconv.ParseUint(version, 10, 64); err == nil {
		g.last.CompareAndSwap(key, w, writtenAt{version: v, at: w.(writtenAt).at})
	}
}

func (g *staleGuard) forget(key types.NamespacedName) { g.last.Delete(key) }
