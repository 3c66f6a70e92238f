package rollout

import (
	"context"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Notifications is what the Reconciler asks of the notification sender
// (pkg/notifications, DESIGN.md §16). The Reconciler records each
// transition someone is subscribed to in the status write that makes it
// (status.pendingNotifications), hands the recorded ones to Deliver once
// written, and removes them when Settled: a new leader finds in the status
// what its predecessor had not delivered.
type Notifications interface {
	// Subscribed keeps the transitions of ro someone is subscribed to.
	Subscribed(ctx context.Context, ro *v1alpha1.Rollout, fired []v1alpha1.PendingNotification) []v1alpha1.PendingNotification
	// Deliver queues each of ro's pending notifications not queued yet,
	// and forgets those no longer pending. ro's status is as written.
	Deliver(ctx context.Context, ro *v1alpha1.Rollout)
	// Settled reports whether every delivery of the notification keyed
	// key (PendingNotification.Key) has ended, delivered or given up.
	Settled(ro types.NamespacedName, key string) bool
	// Forget drops what is known of a Rollout that is gone.
	Forget(ro types.NamespacedName)
	// Settlements names Rollouts with a notification newly settled, to
	// reconcile so that it leaves the status.
	Settlements() <-chan event.GenericEvent
}

// maxPendingNotifications bounds status.pendingNotifications (the CRD's
// maxItems); beyond it the oldest are given up.
const maxPendingNotifications = 50

// transitions are the notification triggers a plan fires, read from the
// status it leaves (st) against the status it started from (old), its
// events, and whether it took a promote request. Each trigger fires once
// per plan, except on-rollout-step-completed: once per step completed.
// They are ordered as they happen: the update starts, is promoted, steps
// complete, analysis ends, the update aborts, pauses, completes, degrades.
func transitions(old, st *v1alpha1.RolloutStatus, events []Event, promoteRequest bool, now time.Time) []v1alpha1.PendingNotification {
	var out []v1alpha1.PendingNotification
	fire := func(t v1alpha1.NotificationTrigger, step *int32, run string) {
		out = append(out, v1alpha1.PendingNotification{
			Trigger: t, Revision: st.CurrentPodHash, Step: step, AnalysisRun: run, At: metav1.NewTime(now),
		})
	}
	step := st.CurrentStepIndex
	if old.CurrentPodHash != "" && st.CurrentPodHash != old.CurrentPodHash {
		fire(v1alpha1.TriggerRolloutUpdated, step, "")
	}
	if promoteRequest || slices.ContainsFunc(events, func(e Event) bool { return e.Reason == v1alpha1.ReasonRolloutPromoted }) {
		// At the step that was promoted.
		at := step
		if old.CurrentPodHash == st.CurrentPodHash {
			at = old.CurrentStepIndex
		}
		fire(v1alpha1.TriggerRolloutPromoted, at, "")
	}
	// Steps passed within one update; a full promotion skips the rest
	// rather than completing them.
	if old.CurrentPodHash == st.CurrentPodHash && old.CurrentStepHash == st.CurrentStepHash && !st.PromoteFull {
		for i := ptr.Deref(old.CurrentStepIndex, 0); i < ptr.Deref(st.CurrentStepIndex, 0); i++ {
			fire(v1alpha1.TriggerRolloutStepCompleted, ptr.To(i+1), "")
		}
	}
	for _, slot := range []func(*v1alpha1.RolloutStatus) *v1alpha1.RunStatus{
		func(s *v1alpha1.RolloutStatus) *v1alpha1.RunStatus { return s.Canary.CurrentStepAnalysisRun },
		func(s *v1alpha1.RolloutStatus) *v1alpha1.RunStatus { return s.Canary.CurrentBackgroundAnalysisRun },
		func(s *v1alpha1.RolloutStatus) *v1alpha1.RunStatus { return s.BlueGreen.PrePromotionAnalysisRun },
		func(s *v1alpha1.RolloutStatus) *v1alpha1.RunStatus { return s.BlueGreen.PostPromotionAnalysisRun },
	} {
		run, was := slot(st), slot(old)
		if run == nil || was != nil && was.Name == run.Name && was.Phase == run.Phase {
			continue
		}
		switch run.Phase {
		case v1alpha1.AnalysisPhaseFailed:
			fire(v1alpha1.TriggerAnalysisRunFailed, step, run.Name)
		case v1alpha1.AnalysisPhaseError:
			fire(v1alpha1.TriggerAnalysisRunError, step, run.Name)
		case v1alpha1.AnalysisPhaseInconclusive:
			fire(v1alpha1.TriggerAnalysisRunInconclusive, step, run.Name)
		}
	}
	if st.Abort && !old.Abort {
		fire(v1alpha1.TriggerRolloutAborted, step, "")
	}
	newPause := slices.ContainsFunc(st.PauseConditions, func(c v1alpha1.PauseCondition) bool {
		return !slices.ContainsFunc(old.PauseConditions, func(o v1alpha1.PauseCondition) bool { return o.Reason == c.Reason })
	})
	if newPause || st.Phase == v1alpha1.RolloutPhasePaused && old.Phase != v1alpha1.RolloutPhasePaused {
		fire(v1alpha1.TriggerRolloutPaused, step, "")
	}
	if old.StableRS != "" && old.StableRS != old.CurrentPodHash && st.StableRS == st.CurrentPodHash {
		fire(v1alpha1.TriggerRolloutCompleted, step, "")
	}
	if st.Phase == v1alpha1.RolloutPhaseDegraded && old.Phase != v1alpha1.RolloutPhaseDegraded {
		fire(v1alpha1.TriggerRolloutDegraded, step, "")
	}
	return out
}

// recordNotifications updates p's status.pendingNotifications: those
// settled leave, the plan's transitions someone is subscribed to join. A
// change is written at once (the status write may not wait): a transition
// is delivered only once recorded.
func (r *Reconciler) recordNotifications(ctx context.Context, ro *v1alpha1.Rollout, p *Plan) {
	if r.Notifications == nil {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	st := &p.Status
	before := len(st.PendingNotifications)
	st.PendingNotifications = slices.DeleteFunc(slices.Clone(st.PendingNotifications), func(n v1alpha1.PendingNotification) bool {
		return r.Notifications.Settled(key, n.Key())
	})
	changed := len(st.PendingNotifications) != before
	if len(p.Notify) > 0 {
		for _, n := range r.Notifications.Subscribed(ctx, ro, p.Notify) {
			if !slices.ContainsFunc(st.PendingNotifications, func(o v1alpha1.PendingNotification) bool { return o.Key() == n.Key() }) {
				st.PendingNotifications = append(st.PendingNotifications, n)
				changed = true
			}
		}
	}
	if over := len(st.PendingNotifications) - maxPendingNotifications; over > 0 {
		log.FromContext(ctx).Info("Too many notifications pending: giving up the oldest", "givenUp", st.PendingNotifications[:over])
		st.PendingNotifications = slices.Delete(st.PendingNotifications, 0, over)
	}
	if len(st.PendingNotifications) == 0 {
		st.PendingNotifications = nil
	}
	if changed {
		p.StatusWait = Wait{}
	}
}

// deliverNotifications hands the pending notifications of ro, with the
// status as written (written false: the status write waits, and ro's is
// the one in force), to the sender.
func (r *Reconciler) deliverNotifications(ctx context.Context, ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, written bool) {
	if r.Notifications == nil || len(st.PendingNotifications) == 0 && len(ro.Status.PendingNotifications) == 0 {
		return
	}
	if written {
		ro = ro.DeepCopy()
		ro.Status = *st.DeepCopy()
	}
	r.Notifications.Deliver(ctx, ro)
}
