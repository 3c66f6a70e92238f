package rollout

import (
	"fmt"
	"slices"
	"time"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// planBlueGreen runs the blue-green strategy: the new revision comes up beside
// the active one (at previewReplicaCount, if set) behind the preview Service;
// on promotion it is scaled to full size, the active Service switches to it,
// and the previous revision is scaled down scaleDownDelaySeconds later.
func planBlueGreen(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, req requests, now time.Time, targets map[string]int32) (outcome, error) {
	bg := ro.Spec.Strategy.BlueGreen
	out, err := blueGreenSteps(ro, st, w, req, now, targets)
	st.BlueGreen.ActiveSelector = out.services[bg.ActiveService]
	if bg.PreviewService != "" {
		st.BlueGreen.PreviewSelector = out.services[bg.PreviewService]
	}
	return out, err
}

func blueGreenSteps(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, req requests, now time.Time, targets map[string]int32) (outcome, error) {
	bg := ro.Spec.Strategy.BlueGreen
	var out outcome

	if st.StableRS == w.hash {
		// Promoted (or first deploy, or back to the active template).
		st.PauseConditions = nil
		st.PromoteFull = false
		st.BlueGreen.ScaleUpPreviewCheckPoint = false
		targets[w.hash] = w.replicas
		out.services = map[string]string{bg.ActiveService: w.hash, bg.PreviewService: w.hash}
		keepDelayed(&out, w, now, targets)
		out.reason, out.message = v1alpha1.ReasonReplicaSetUpdated, "Scaling the active revision"
		return out, nil
	}

	stable := stableHash(w)
	targets[stable] = w.replicas
	out.services = map[string]string{bg.ActiveService: stable, bg.PreviewService: stable}
	if st.Abort {
		delay := ptr.Deref(bg.AbortScaleDownDelaySeconds, 30)
		targets[w.hash] = abortedSize(&out, w.current, delay, now)
		keepDelayed(&out, w, now, targets)
		out.phase, out.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonRolloutAborted
		out.message = fmt.Sprintf("Update to %s aborted: the active Service stays on %s", w.current.name, stableName(w))
		if why := failedRun(st); why != "" {
			out.message += " (" + why + ")"
		}
		return out, nil
	}

	// The update: the preview Service follows the new revision.
	out.services[bg.PreviewService] = w.hash
	size := w.replicas
	if n := bg.PreviewReplicaCount; n != nil && !st.BlueGreen.ScaleUpPreviewCheckPoint {
		size = min(*n, w.replicas)
	}
	targets[w.hash] = size
	keepDelayed(&out, w, now, targets)
	if c := w.current; c.planned || c.spec != size || c.serving() < size {
		out.reason = v1alpha1.ReasonReplicaSetUpdated
		out.message = fmt.Sprintf("Preview %s: %d/%d replicas available", w.current.name, w.current.serving(), size)
		return out, nil
	}

	if !st.BlueGreen.ScaleUpPreviewCheckPoint && !prePromotion(bg, st, w, &req, &out) {
		return abortOnFailure(ro, st, w, now, targets, out)
	}
	if !promoteNow(bg, st, req, now, &out) {
		return out, nil
	}
	if size < w.replicas || bg.PostPromotionAnalysis != nil && !st.BlueGreen.ScaleUpPreviewCheckPoint {
		// The promotion has started: scale the preview to full size before
		// it takes the traffic.
		st.BlueGreen.ScaleUpPreviewCheckPoint = true
		targets[w.hash] = w.replicas
		out.reason = v1alpha1.ReasonRolloutPromoted
		out.message = fmt.Sprintf("Promoting %s: scaling to %d replicas before the switch", w.current.name, w.replicas)
		return out, nil
	}
	if c := w.current; c.spec != w.replicas || c.serving() < w.replicas {
		out.reason = v1alpha1.ReasonRolloutPromoted
		out.message = fmt.Sprintf("Promoting %s: %d/%d replicas available", c.name, c.serving(), w.replicas)
		return out, nil
	}

	// The active Service switches to the new revision. With a
	// post-promotion analysis the previous revision stays stable, at full
	// size, until the analysis passes: a failure switches back to it.
	out.services = map[string]string{bg.ActiveService: w.hash, bg.PreviewService: w.hash}
	if st.BlueGreen.ActiveSelector != w.hash {
		out.events = append(out.events, Event{Reason: v1alpha1.ReasonRolloutPromoted, Message: fmt.Sprintf("Active Service %s switched to %s", bg.ActiveService, w.current.name)})
	}
	if !postPromotion(bg, st, w, req, &out) {
		return abortOnFailure(ro, st, w, now, targets, out)
	}

	// The new revision is stable; the previous one is kept for
	// scaleDownDelaySeconds.
	previous := w.stable
	st.StableRS = w.hash
	st.PromoteFull = false
	st.BlueGreen.ScaleUpPreviewCheckPoint = false
	removePause(st, v1alpha1.PauseReasonInconclusiveAnalysis)
	w.stable = w.current
	if previous != nil && previous != w.current {
		targets[previous.hash] = out.scaleDownLater(previous, ptr.Deref(bg.ScaleDownDelaySeconds, 30), now)
	}
	out.events = append(out.events, Event{Reason: v1alpha1.ReasonRolloutCompleted, Message: fmt.Sprintf("Revision %s promoted to stable", w.current.name)})
	out.reason, out.message = v1alpha1.ReasonRolloutCompleted, fmt.Sprintf("Switched to %s", w.current.name)
	return out, nil
}

// abortOnFailure aborts the update in this very reconcile when a
// promotion analysis failed — after a post-promotion failure the active
// Service switches straight back — and otherwise returns out as is.
func abortOnFailure(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, now time.Time, targets map[string]int32, out outcome) (outcome, error) {
	if out.abortFor == "" {
		return out, nil
	}
	abort(st, now)
	clear(targets)
	aborted, err := blueGreenSteps(ro, st, w, requests{}, now, targets)
	failed := Event{Warning: true, Reason: v1alpha1.ReasonAnalysisRunFailed, Message: out.abortFor}
	aborted.events = slices.Concat(out.events, []Event{failed}, aborted.events)
	aborted.createRuns = out.createRuns
	return aborted, err
}

// prePromotion runs the pre-promotion analysis on the ready preview and
// reports whether the promotion may go on: once the run succeeds, or when
// promote accepts an inconclusive run; promote --full skips the analysis.
// A failed run aborts the update (out carries the abort).
func prePromotion(bg *v1alpha1.BlueGreenStrategy, st *v1alpha1.RolloutStatus, w *world, req *requests, out *outcome) bool {
	if bg.PrePromotionAnalysis == nil || st.PromoteFull {
		return true
	}
	return promotionAnalysis(bg.PrePromotionAnalysis, runOfPrePromotion, "pre", &st.BlueGreen.PrePromotionAnalysisRun, st, w, req, out)
}

// postPromotion runs the post-promotion analysis once the active Service
// has switched, and reports whether the new revision may become stable.
func postPromotion(bg *v1alpha1.BlueGreenStrategy, st *v1alpha1.RolloutStatus, w *world, req requests, out *outcome) bool {
	if bg.PostPromotionAnalysis == nil || st.PromoteFull {
		return true
	}
	return promotionAnalysis(bg.PostPromotionAnalysis, runOfPostPromotion, "post", &st.BlueGreen.PostPromotionAnalysisRun, st, w, &req, out)
}

// promotionAnalysis follows a blue-green analysis: Successful lets the
// promotion go on; Failed or Error aborts the update; Inconclusive pauses
// until promote accepts it (the promote request is then used up); anything
// else waits, and a promote request meanwhile is ignored with an event, so
// nobody believes the analysis was skipped.
func promotionAnalysis(a *v1alpha1.RolloutAnalysis, kind, suffix string, slot **v1alpha1.RunStatus, st *v1alpha1.RolloutStatus, w *world, req *requests, out *outcome) bool {
	phase, err := out.follow(w, st, a, kind, runName(w.ro, st, suffix), slot)
	run := *slot
	switch {
	case err != nil:
		out.phase, out.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonInvalidSpec
		out.message = fmt.Sprintf("%s analysis: %v", kind, err)
		return false
	case phase == v1alpha1.AnalysisPhaseSuccessful:
		removePause(st, v1alpha1.PauseReasonInconclusiveAnalysis)
		return true
	case failed(phase):
		out.abortFor = runFailure(run)
		return false
	case phase == v1alpha1.AnalysisPhaseInconclusive && req.promote:
		req.promote = false
		removePause(st, v1alpha1.PauseReasonInconclusiveAnalysis)
		return true
	case phase == v1alpha1.AnalysisPhaseInconclusive:
		addPause(st, v1alpha1.PauseReasonInconclusiveAnalysis, w.now)
		out.reason = v1alpha1.ReasonInconclusiveAnalysis
		out.message = fmt.Sprintf("AnalysisRun %s is inconclusive: %s; promote to continue, abort to roll back", run.Name, run.Message)
		return false
	}
	if req.promote {
		req.promote = false
		out.events = append(out.events, Event{Reason: v1alpha1.ReasonRequestIgnored, Message: fmt.Sprintf("promote request ignored: %s analysis %s is %s; promote --full skips it", kind, run.Name, phase)})
	}
	out.waiting = true
	out.reason = v1alpha1.ReasonProgressing
	out.message = fmt.Sprintf("Waiting for %s analysis: AnalysisRun %s is %s", kind, run.Name, phase)
	return false
}

// promoteNow decides whether a ready preview is promoted in this reconcile:
// on request, once its full-size scale-up was started, or automatically
// (after autoPromotionSeconds, shown as a BlueGreenPause). Otherwise it
// records why it waits in out.
func promoteNow(bg *v1alpha1.BlueGreenStrategy, st *v1alpha1.RolloutStatus, req requests, now time.Time, out *outcome) bool {
	if req.promote || st.PromoteFull || st.BlueGreen.ScaleUpPreviewCheckPoint {
		removePause(st, v1alpha1.PauseReasonBlueGreenPause)
		return true
	}
	if !ptr.Deref(bg.AutoPromotionEnabled, true) {
		addPause(st, v1alpha1.PauseReasonBlueGreenPause, now)
		out.reason, out.message = v1alpha1.ReasonBlueGreenPause, "Preview ready: paused until promoted"
		return false
	}
	secs := ptr.Deref(bg.AutoPromotionSeconds, 0)
	if secs == 0 {
		return true
	}
	start := addPause(st, v1alpha1.PauseReasonBlueGreenPause, now)
	if left := start.Add(time.Duration(secs) * time.Second).Sub(now); left > 0 {
		out.after(left)
		out.reason, out.message = v1alpha1.ReasonBlueGreenPause, fmt.Sprintf("Preview ready: promoting automatically in %s", left.Round(time.Second))
		return false
	}
	removePause(st, v1alpha1.PauseReasonBlueGreenPause)
	return true
}

// scaleDownLater starts a scale-down delay on a ReplicaSet: the deadline
// goes into its annotation, the plan wakes up then, and until then it keeps
// its size, which is returned. The annotation has whole seconds, so the
// deadline is rounded up: routers may send the ReplicaSet's pods requests
// until they have applied the switch, and the delay is what the user
// allowed them.
func (o *outcome) scaleDownLater(rs *rsView, delaySeconds int32, now time.Time) int32 {
	deadline := now.Add(time.Duration(delaySeconds) * time.Second)
	if whole := deadline.Truncate(time.Second); whole.Before(deadline) {
		deadline = whole.Add(time.Second)
	}
	rs.scaleDownAt = &deadline
	o.annotate = append(o.annotate, AnnotationChange{Name: rs.name, Key: v1alpha1.ScaleDownDeadlineAnnotation, Value: deadline.UTC().Format(time.RFC3339)})
	o.after(deadline.Sub(now))
	return rs.spec
}

// keepDelayed holds ReplicaSets that wait out a scale-down delay at their size
// and wakes the reconciler when the first delay ends; every other ReplicaSet
// without a target goes to 0.
func keepDelayed(out *outcome, w *world, now time.Time, targets map[string]int32) {
	for _, rs := range w.others() {
		if _, set := targets[rs.hash]; set {
			continue
		}
		if rs.delayed(now) {
			targets[rs.hash] = rs.spec
			out.after(rs.scaleDownAt.Sub(now))
		}
	}
}

// abortedSize is the size of an aborted revision: kept for delaySeconds after
// the abort (0 keeps it until the next update), then 0.
func abortedSize(out *outcome, rs *rsView, delaySeconds int32, now time.Time) int32 {
	switch {
	case rs.planned:
		return 0
	case delaySeconds == 0:
		return rs.spec
	case rs.scaleDownAt == nil:
		return out.scaleDownLater(rs, delaySeconds, now)
	case rs.delayed(now):
		out.after(rs.scaleDownAt.Sub(now))
		return rs.spec
	}
	return 0
}
