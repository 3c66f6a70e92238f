package rollout

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// outcome is what a strategy concluded: an explicit phase when it knows one
// (Degraded), the reason and message of the state it is in, the events of
// its transitions, and when to look again.
type outcome struct {
	phase        v1alpha1.RolloutPhase
	reason       string
	message      string
	events       []Event
	requeueAfter time.Duration
	// services maps a Service name to the hash its selector must carry.
	services map[string]string
	annotate []AnnotationChange
	// waiting: the update waits on purpose (analysis, experiment), which
	// doesn't count against the progress deadline.
	waiting bool
	// createRuns are AnalysisRuns to create.
	createRuns []*v1alpha1.AnalysisRun
	// abortFor is why a failed analysis aborts the update.
	abortFor string
	// keepRuns are the runs and experiments the update follows; other
	// unfinished ones are terminated.
	keepRuns []string
	// createExperiments are Experiments to create.
	createExperiments []*v1alpha1.Experiment
	// extra are the traffic destinations of a running experiment's
	// templates.
	extra []v1alpha1.WeightDestination
	// dropNow names a ReplicaSet scaled down to its target at once,
	// whatever the availability floor (an aborted canary without router).
	dropNow string
	// stepsDone is the steps hash to mark the canary ReplicaSet with in
	// its next scale-up: the steps are all done and the status that says
	// so may wait (canarySteps).
	stepsDone string
}

// after sets requeueAfter to d unless an earlier timer is already due.
func (o *outcome) after(d time.Duration) { o.requeueAfter = soonest(o.requeueAfter, d) }

// soonest is the earlier of two timers, where 0 (or less) means no timer.
func soonest(a, b time.Duration) time.Duration {
	switch {
	case b <= 0:
		return max(a, 0)
	case a <= 0 || b < a:
		return b
	}
	return a
}

// waitsForPerson reports whether a paused Rollout stays paused until someone
// acts: spec.paused, an inconclusive analysis or experiment, a canary pause
// step without a duration, or a blue-green preview without automatic
// promotion. Timed pauses end by themselves.
func waitsForPerson(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus) bool {
	if ro.Spec.Paused {
		return true
	}
	for _, pc := range st.PauseConditions {
		switch pc.Reason {
		case v1alpha1.PauseReasonInconclusiveAnalysis, v1alpha1.PauseReasonInconclusiveExperiment:
			return true
		case v1alpha1.PauseReasonCanaryPauseStep:
			if c := ro.Spec.Strategy.Canary; c != nil {
				i := int(ptr.Deref(st.CurrentStepIndex, 0))
				if i < len(c.Steps) && c.Steps[i].Pause != nil && c.Steps[i].Pause.Duration == nil {
					return true
				}
			}
		case v1alpha1.PauseReasonBlueGreenPause:
			if bg := ro.Spec.Strategy.BlueGreen; bg != nil && !ptr.Deref(bg.AutoPromotionEnabled, true) {
				return true
			}
		}
	}
	return false
}

// addPause records a pause reason (keeping its first start time) and returns
// when the pause started.
func addPause(st *v1alpha1.RolloutStatus, reason v1alpha1.PauseReason, now time.Time) time.Time {
	for _, pc := range st.PauseConditions {
		if pc.Reason == reason {
			return pc.StartTime.Time
		}
	}
	st.PauseConditions = append(st.PauseConditions, v1alpha1.PauseCondition{Reason: reason, StartTime: metav1.NewTime(now)})
	return now
}

func removePause(st *v1alpha1.RolloutStatus, reason v1alpha1.PauseReason) {
	kept := st.PauseConditions[:0]
	for _, pc := range st.PauseConditions {
		if pc.Reason != reason {
			kept = append(kept, pc)
		}
	}
	st.PauseConditions = kept
	if len(kept) == 0 {
		st.PauseConditions = nil
	}
}

// healthy: fully promoted and every replica of the current revision updated
// and available. A canary without traffic routing also waits for the old pods
// to be gone, since they still serve; elsewhere old pods take no traffic, and
// a ReplicaSet waiting out a scale-down delay or going to 0 doesn't count.
func healthy(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, now time.Time) bool {
	c := w.current
	if st.StableRS != st.CurrentPodHash || c.planned ||
		c.spec != w.replicas || c.current != w.replicas || c.available != w.replicas {
		return false
	}
	oldPodsServe := ro.Spec.Strategy.Canary != nil && ro.Spec.Strategy.Canary.TrafficRouting == nil
	for _, rs := range w.others() {
		if oldPodsServe && max(rs.spec, rs.current) > 0 {
			return false
		}
		if rs.spec > 0 && !rs.delayed(now) {
			return false
		}
	}
	return true
}

// countReplicas fills the replica counts from the observed ReplicaSets.
func countReplicas(st *v1alpha1.RolloutStatus, w *world) {
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas = 0, 0, 0
	for _, rs := range w.all {
		st.Replicas += rs.current
		st.ReadyReplicas += rs.ready
		st.AvailableReplicas += rs.available
	}
	st.UpdatedReplicas = w.current.current
	st.HPAReplicas = st.Replicas
}

// trackProgress enforces progressDeadlineSeconds on an update. Progress is any
// change of the revision, step, or replica counts; pauses and purposeful waits
// restart the clock. When the deadline passes the outcome becomes
// Degraded/ProgressDeadlineExceeded and, with progressDeadlineAbort, the
// update is aborted (the next reconcile scales back).
//
// Progress is measured from the latest status decided: the one in force,
// or one whose write waits (Input.HeldStatus), so that a held change does
// not count as progress again at every reconcile.
func trackProgress(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, out *outcome, now time.Time) {
	if st.StableRS == st.CurrentPodHash && healthy(ro, st, w, now) || st.Abort || out.phase == v1alpha1.RolloutPhaseDegraded {
		st.LastProgressTime = nil
		return
	}
	prev := &ro.Status
	if w.heldStatus != nil {
		prev = w.heldStatus
	}
	moved := prev.CurrentPodHash != st.CurrentPodHash || prev.StableRS != st.StableRS ||
		ptr.Deref(prev.CurrentStepIndex, -1) != ptr.Deref(st.CurrentStepIndex, -1) ||
		prev.UpdatedReplicas != st.UpdatedReplicas || prev.ReadyReplicas != st.ReadyReplicas ||
		prev.AvailableReplicas != st.AvailableReplicas
	if ro.Spec.Paused || len(st.PauseConditions) > 0 || out.waiting {
		// No deadline while the update waits on purpose; the clock starts
		// again when the wait ends. (Not refreshing it on every reconcile of
		// a long wait also spares a status write each time.)
		st.LastProgressTime = nil
		return
	}
	deadline := progressDeadline(ro)
	if !moved && w.heldStatus != nil && prev.LastProgressTime != nil {
		st.LastProgressTime = prev.LastProgressTime
	}
	if moved || st.LastProgressTime == nil {
		st.LastProgressTime = ptrTime(now)
		out.after(deadline)
		return
	}
	if left := st.LastProgressTime.Add(deadline).Sub(now); left > 0 {
		out.after(left)
		return
	}
	out.phase, out.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonProgressDeadlineExceeded
	out.message = fmt.Sprintf("Revision %s made no progress for %s", w.current.name, deadline)
	if ro.Spec.ProgressDeadlineAbort {
		st.Abort = true
		st.AbortedAt = ptrTime(now)
		st.PauseConditions = nil
		out.events = append(out.events, Event{Warning: true, Reason: v1alpha1.ReasonRolloutAborted, Message: out.message + ": aborting (progressDeadlineAbort)"})
		out.after(time.Millisecond)
	} else if ro.Status.Phase != v1alpha1.RolloutPhaseDegraded {
		out.events = append(out.events, Event{Warning: true, Reason: v1alpha1.ReasonProgressDeadlineExceeded, Message: out.message})
	}
}

// progressDeadline is the Rollout's progressDeadlineSeconds, defaulted.
func progressDeadline(ro *v1alpha1.Rollout) time.Duration {
	return time.Duration(ptr.Deref(ro.Spec.ProgressDeadlineSeconds, 600)) * time.Second
}

// finishStatus fills the counts, phase, message and conditions. w is nil
// when the spec is invalid and nothing was observed.
func finishStatus(ro *v1alpha1.Rollout, st v1alpha1.RolloutStatus, w *world, out outcome, now time.Time) v1alpha1.RolloutStatus {
	st.ObservedGeneration = ro.Generation
	if sel, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector); err == nil && ro.Spec.Selector != nil {
		st.Selector = sel.String()
	}

	phase, reason, message := out.phase, out.reason, out.message
	switch {
	case phase != "":
		// The strategy (or the progress deadline, or a restart) decided.
	case ro.Spec.Paused:
		phase, reason, message = v1alpha1.RolloutPhasePaused, v1alpha1.ReasonRolloutPaused, "Paused by spec.paused"
	case len(st.PauseConditions) > 0:
		phase = v1alpha1.RolloutPhasePaused
		reason = string(st.PauseConditions[0].Reason)
	case w != nil && healthy(ro, &st, w, now):
		phase, reason = v1alpha1.RolloutPhaseHealthy, v1alpha1.ReasonRolloutHealthy
		message = fmt.Sprintf("%d/%d replicas of revision %s available", w.current.available, w.replicas, w.current.name)
	default:
		phase = v1alpha1.RolloutPhaseProgressing
	}
	if reason == "" {
		reason = v1alpha1.ReasonProgressing
	}
	st.Phase, st.Message = phase, message

	set := func(t string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: msg,
			ObservedGeneration: ro.Generation, LastTransitionTime: metav1.NewTime(now),
		})
	}
	progressingReason := reason
	if phase == v1alpha1.RolloutPhaseHealthy {
		progressingReason = v1alpha1.ReasonRolloutCompleted
	}
	// A Rollout that waits for a person is at rest, not reconciling (DESIGN
	// §13): kstatus then calls it Current, so `kubectl wait`, Flux and kpt
	// do not wait for it until they time out; Ready stays False.
	forPerson := phase == v1alpha1.RolloutPhasePaused && waitsForPerson(ro, &st)
	readyReason := reason
	if forPerson {
		readyReason = v1alpha1.ReasonPaused
	}
	set(v1alpha1.ConditionReady, phase == v1alpha1.RolloutPhaseHealthy, readyReason, message)
	set(v1alpha1.ConditionProgressing, phase != v1alpha1.RolloutPhaseDegraded, progressingReason, message)
	set(v1alpha1.ConditionPaused, phase == v1alpha1.RolloutPhasePaused, reason, message)
	set(v1alpha1.ConditionDegraded, phase == v1alpha1.RolloutPhaseDegraded, reason, message)
	set(v1alpha1.ConditionReconciling, phase == v1alpha1.RolloutPhaseProgressing || phase == v1alpha1.RolloutPhasePaused && !forPerson, reason, message)
	set(v1alpha1.ConditionStalled, phase == v1alpha1.RolloutPhaseDegraded, reason, message)
	if st.CurrentStepIndex == nil && ro.Spec.Strategy.Canary != nil {
		st.CurrentStepIndex = ptr.To[int32](0)
	}
	return st
}
