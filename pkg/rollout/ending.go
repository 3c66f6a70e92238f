package rollout

import (
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// ending is how carrying out a plan ended. It is the one place that decides
// both what controller-runtime does next (result) and what the Rollout's
// conditions say about it (failedStatus), so the two cannot disagree.
type ending int

const (
	// applied: every write of the plan was made.
	applied ending = iota
	// stale: the cache was behind the API server (a conflict, our own write
	// not seen yet); look again shortly, nothing is wrong.
	stale
	// blocked: a PodDisruptionBudget refused an eviction; the plan's status
	// is written and the eviction retried shortly.
	blocked
	// terminating: the namespace is going away, and the Rollout with it.
	terminating
	// transient: a failure that may pass by itself (5xx, 429, a timeout, a
	// dropped connection, an object gone since it was read); retried with
	// the controller's backoff, reported only once it lasts.
	transient
	// permanent: the controller cannot go on without a person (a forbidden
	// write, an admission webhook's denial, an object the API server finds
	// invalid): Stalled, retried slowly in case someone fixed it.
	permanent
)

// permanentRetry is how often a write that needs a person is tried again:
// nothing the controller watches tells it when RBAC or a webhook changes.
const permanentRetry = 30 * time.Second

// transientReported is how many transient failures in a row make the
// Reconciling condition say so: fewer are normal on a busy API server and
// would only make the condition flap.
const transientReported = 3

// classify tells how an apply error ends the reconcile. Of several joined
// errors (routers are tried independently) the most serious decides.
func classify(err error) ending {
	switch {
	case err == nil:
		return applied
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return terminating
	case isPermanent(err):
		return permanent
	case isTransient(err):
		return transient
	case errors.Is(err, errBlocked):
		return blocked
	case errors.Is(err, errRequeue):
		return stale
	}
	return transient
}

// isPermanent: an answer that will be the same next time unless a person
// changes something. A webhook's denial comes as 400, 403 or 422 (its
// choice); all three are permanent whatever sent them.
func isPermanent(err error) bool {
	return anyError(err, func(e error) bool {
		return apierrors.IsForbidden(e) || apierrors.IsInvalid(e) || apierrors.IsBadRequest(e) ||
			apierrors.IsMethodNotSupported(e) || traffic.IsInvalid(e)
	})
}

// isTransient: any error that is not one of ours saying "look again".
func isTransient(err error) bool {
	return anyError(err, func(e error) bool {
		return !errors.Is(e, errRequeue) && !errors.Is(e, errBlocked)
	})
}

// anyError reports whether f holds for err or, for joined errors, for any
// of the joined ones.
func anyError(err error, f func(error) bool) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if anyError(e, f) {
				return true
			}
		}
		return false
	}
	return f(err)
}

// result is what controller-runtime does after the reconcile: next is the
// plan's own timer, used when the plan was carried out.
func (e ending) result(err error, next time.Duration) (reconcile.Result, error) {
	switch e {
	case stale:
		return reconcile.Result{RequeueAfter: staleCacheRetry}, nil
	case blocked:
		return reconcile.Result{RequeueAfter: blockedRetry}, nil
	case terminating:
		return reconcile.Result{}, nil
	case transient:
		// Returned, so the controller's per-object backoff applies.
		return reconcile.Result{}, err
	case permanent:
		return reconcile.Result{RequeueAfter: permanentRetry}, nil
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

// failedStatus is the status a failed apply leaves: the one read, since the
// plan was not carried out, saying why. A failure that needs a person makes
// the Rollout Degraded and Stalled with reason ReconcileError, reported like
// an invalid spec: the controller has seen this generation and cannot go on.
// A transient one only gives Reconciling its reason, once it has lasted
// (failures counts them in a row, this one included). It returns false when
// nothing need change.
func (e ending) failedStatus(ro *v1alpha1.Rollout, err error, failures int, now time.Time) (v1alpha1.RolloutStatus, bool) {
	st := *ro.Status.DeepCopy()
	switch {
	case e == permanent:
		return finishStatus(ro, st, nil, outcome{phase: v1alpha1.RolloutPhaseDegraded, reason: v1alpha1.ReasonReconcileError, message: err.Error()}, now), true
	case e == transient && failures >= transientReported:
		// Still reconciling: kstatus keeps calling it InProgress, and the
		// reason says what keeps it from finishing.
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconcileError, Message: err.Error(),
			ObservedGeneration: st.ObservedGeneration, LastTransitionTime: metav1.NewTime(now),
		})
		return st, true
	}
	return st, false
}

// failures counts each Rollout's failed applies in a row.
type failures struct {
	mu sync.Mutex
	n  map[types.NamespacedName]int
}

// failed counts one more failure and returns how many in a row.
func (f *failures) failed(key types.NamespacedName) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[types.NamespacedName]int{}
	}
	f.n[key]++
	return f.n[key]
}

// forget ends the streak: the apply went through, or the Rollout is gone.
func (f *failures) forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.n, key)
}
