package rollout

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// DefaultCountsDelay is how long, during an update, a status change that
// only refreshes the replica counts may wait to be written.
const DefaultCountsDelay = 60 * time.Second

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

// coalescer holds back status writes that only refresh counts while an
// update moves, so that the pods coming and going between two steps make no
// writes of their own: the next write that matters (a step done, a timed
// pause over, a switch, Healthy) carries them, or they are written once they
// have waited delay. A Rollout at rest (Healthy, Degraded, paused until
// promoted) has its counts written at once.
type coalescer struct {
	delay time.Duration
	mu    sync.Mutex
	// since is when a Rollout's held-back change first waited.
	since map[types.NamespacedName]time.Time
}

func newCoalescer(delay time.Duration) *coalescer {
	return &coalescer{delay: delay, since: map[types.NamespacedName]time.Time{}}
}

// hold decides for one status change: 0 means write it now; otherwise it
// waits and the Rollout should be looked at again after the duration. next
// is the Rollout's next planned look (0: none), such as the end of a timed
// pause: a Rollout that will move by then is not at rest either.
func (c *coalescer) hold(key types.NamespacedName, prev, st *v1alpha1.RolloutStatus, next, now time.Time) time.Duration {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	moving := st.Phase == v1alpha1.RolloutPhaseProgressing || !next.IsZero() && !next.After(now.Add(c.delay))
	if c.delay <= 0 || !moving || !countsOnly(prev, st) {
		delete(c.since, key)
		return 0
	}
	since, ok := c.since[key]
	if !ok {
		since = now
		c.since[key] = now
	}
	if left := since.Add(c.delay).Sub(now); left > 0 {
		return left
	}
	delete(c.since, key)
	return 0
}

// forget drops what is known of a Rollout that is gone.
func (c *coalescer) forget(key types.NamespacedName) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.since, key)
}
