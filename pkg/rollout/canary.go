package rollout

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// planCanary runs the canary strategy without traffic routing: replica counts
// approximate each step's weight. It fills targets (desired replicas by hash),
// updates the step state in st, and points the stable Service at the stable
// revision and the canary Service at the current one while an update runs.
func planCanary(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, req requests, now time.Time, targets map[string]int32) (outcome, error) {
	out, err := canarySteps(ro, st, w, req, now, targets)
	if err != nil {
		return outcome{}, err
	}
	c := ro.Spec.Strategy.Canary
	canaryHash := st.CurrentPodHash
	// After an abort the canary Service goes back to the stable pods once
	// the canary takes no more traffic (at once, but for dynamicStableScale).
	stillServing := st.Canary.Weights != nil && st.Canary.Weights.Canary.Weight > 0
	if st.Abort && !stillServing || st.StableRS == st.CurrentPodHash {
		canaryHash = st.StableRS
	}
	out.services = map[string]string{c.StableService: st.StableRS, c.CanaryService: canaryHash}
	return out, nil
}

func canarySteps(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, req requests, now time.Time, targets map[string]int32) (outcome, error) {
	c := ro.Spec.Strategy.Canary
	steps := c.Steps
	sh, err := stepsHash(steps)
	if err != nil {
		return outcome{}, err
	}
	if st.CurrentStepHash != sh {
		if st.CurrentStepHash != "" && st.StableRS != w.hash {
			// The steps changed during an update: start them over.
			st.CurrentStepIndex = ptr.To[int32](0)
			st.PauseConditions = nil
		}
		st.CurrentStepHash = sh
	}

	if st.StableRS == w.hash {
		// Fully promoted (or first deploy, or back to the stable template).
		st.CurrentStepIndex = ptr.To(int32(len(steps)))
		st.PauseConditions = nil
		st.PromoteFull = false
		st.Canary.Weights = canaryWeights(st, w, 0)
		targets[w.hash] = w.replicas
		out := outcome{reason: v1alpha1.ReasonReplicaSetUpdated, message: "Scaling the stable revision"}
		if oldPods(w) {
			// Just promoted: say so until the old pods are gone, as the
			// reconcile that promoted did.
			out.reason, out.message = v1alpha1.ReasonRolloutCompleted, promotedMessage
		}
		keepDelayed(&out, w, now, targets)
		return out, nil
	}

	applied := int32(0)
	if st.Canary.Weights != nil {
		applied = st.Canary.Weights.Canary.Weight
	}
	if st.Abort {
		targets[stableHash(w)] = w.replicas
		targets[w.hash] = 0
		traffic := int32(0)
		if w.dynamic {
			// The stable was scaled down with the traffic: it takes the
			// traffic back only as fast as its pods come back (and the
			// canary keeps no more than its own pods can serve).
			traffic = min(applied, w.maxWeight-stableServable(w), servable(w, steps, int(ptr.Deref(st.CurrentStepIndex, 0))))
		}
		st.Canary.Weights = canaryWeights(st, w, traffic)
		out := outcome{
			phase:   v1alpha1.RolloutPhaseDegraded,
			reason:  v1alpha1.ReasonRolloutAborted,
			message: fmt.Sprintf("Update to %s aborted: all replicas back on the stable revision %s", w.current.name, stableName(w)),
		}
		if why := failedRun(st); why != "" {
			out.message += " (" + why + ")"
		}
		switch {
		case traffic > 0:
			targets[w.hash] = w.current.spec
		case w.routed:
			// Traffic is back on the stable; the canary pods may linger
			// for abortScaleDownDelaySeconds.
			targets[w.hash] = abortedSize(&out, w.current, ptr.Deref(c.AbortScaleDownDelaySeconds, 30), now)
		default:
			// Without a router the canary pods take traffic as long as
			// they exist: they go at once, not at the pace of the
			// availability floor.
			out.dropNow = w.hash
		}
		keepDelayed(&out, w, now, targets)
		return out, nil
	}

	if stepsPassed(ro, st, w, sh) {
		// Passed before, by a reconcile whose status waits (tailOnly): the
		// ReplicaSet says so, also to a controller that restarted since.
		st.CurrentStepIndex = ptr.To(int32(len(steps)))
	}
	if st.PromoteFull {
		st.CurrentStepIndex = ptr.To(int32(len(steps)))
	}
	var bg stepResult
	hold := backgroundAnalysis(c, st, w, req, &bg)
	out := runSteps(steps, st, w, req, now, hold)
	out.createRuns = append(bg.createRuns, out.createRuns...)
	out.keepRuns = append(bg.keepRuns, out.keepRuns...)
	if out.abortFor == "" {
		out.abortFor = bg.abortFor
	}
	if bg.phase == v1alpha1.RolloutPhaseDegraded {
		out.phase, out.reason, out.message = bg.phase, bg.reason, bg.message
	}
	if out.abortFor != "" {
		// A failed analysis aborts in the reconcile that sees it.
		abort(st, now)
		aborted, err := canarySteps(ro, st, w, requests{}, now, targets)
		failed := Event{Warning: true, Reason: v1alpha1.ReasonAnalysisRunFailed, Message: out.abortFor}
		aborted.events = slices.Concat(out.events, []Event{failed}, aborted.events)
		return aborted, err
	}
	idx := int(ptr.Deref(st.CurrentStepIndex, 0))
	// Traffic follows the last setWeight step passed. A step completes only
	// once its canary pods are available, but promote can skip it and pods
	// can fail: traffic never exceeds what the available canary pods serve.
	traffic := weightBefore(steps, idx)
	if w.routed {
		limit := servable(w, steps, idx)
		if w.current.stale {
			// A scale the ReplicaSet controller has not seen yet: its
			// pods serve what they served before it (a scale-up), or are
			// already off the routes (traffic goes first when it falls)
			// — but no more than the pods its status counts serve at the
			// Rollout's size now, which may have grown meanwhile (found
			// by FuzzPlanner).
			pods := w.current.available
			if w.endpoints != nil {
				pods = min(pods, *w.endpoints)
			}
			limit = max(limit, min(carried(ro.Status.Canary.Weights, w.hash), servableBy(w, steps, idx, pods)))
		}
		traffic = min(traffic, limit)
	}
	if idx < len(steps) || hold != "" {
		canary, stable := w.split(out.weight)
		if n, ok := canaryScale(steps, idx, w); ok {
			canary = n
		}
		if w.dynamic {
			stable = dynamicStable(w, min(applied, traffic))
		}
		targets[w.hash] = canary
		targets[stableHash(w)] = stable
		st.Canary.Weights = canaryWeights(st, w, traffic)
		for _, d := range out.extra {
			st.Canary.Weights.Additional = append(st.Canary.Weights.Additional, d)
			st.Canary.Weights.Stable.Weight = max(st.Canary.Weights.Stable.Weight-d.Weight, 0)
		}
		keepDelayed(&out.outcome, w, now, targets)
		return out.outcome, nil
	}
	done := promoteCanary(c, st, w, out.outcome, traffic, applied, now, targets)
	if !w.routed && !stepsPassed(ro, st, w, sh) {
		// The steps are done as of this reconcile, and the status that says
		// so may wait: the canary's scale-up records it (tailOnly).
		done.stepsDone = sh
	}
	return done, nil
}

// stepsPassed reports whether the canary ReplicaSet of a Rollout without
// traffic routing records the steps sh as all done (StepsDoneAnnotation)
// for the update the status in force describes: the same revision and
// steps, not aborted, not paused at a step. A mark no longer true is
// removed (staleStepsMark).
func stepsPassed(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, sh string) bool {
	in := &ro.Status
	return !w.routed && w.current.stepsDone == sh && in.CurrentPodHash == w.hash && in.CurrentStepHash == sh &&
		!in.Abort && !st.Abort && len(in.PauseConditions) == 0 && len(st.PauseConditions) == 0
}

// dynamicStable is the stable size under dynamicStableScale: what the
// traffic left on it (maxTrafficWeight − weight) needs, at least
// minPodsPerReplicaSet while it takes any.
func dynamicStable(w *world, weight int32) int32 {
	if weight >= w.maxWeight {
		return 0
	}
	n := w.replicas - int32(int64(weight)*int64(w.replicas)/int64(w.maxWeight))
	return min(max(n, w.minPods), w.replicas)
}

// stableServable is the largest weight the available stable pods serve.
func stableServable(w *world) int32 {
	if w.stable == nil || w.replicas == 0 {
		return w.maxWeight
	}
	return int32(min(int64(w.maxWeight), int64(w.stable.serving())*int64(w.maxWeight)/int64(w.replicas)))
}

// promoteCanary finishes an update whose steps are done: the current revision
// is scaled to full size and becomes the stable one. Without traffic routing
// that happens once it alone keeps the availability floor, so the stable
// Service always selects enough available pods. With traffic routing it first
// takes all the traffic, then the stable Service switches to it, the weight
// goes back to 0 (now on the new stable), and the previous stable is kept for
// scaleDownDelaySeconds.
func promoteCanary(c *v1alpha1.CanaryStrategy, st *v1alpha1.RolloutStatus, w *world, out outcome, traffic, applied int32, now time.Time, targets map[string]int32) outcome {
	targets[w.hash] = w.replicas
	need := max(w.replicas-w.limits.unavailable, min(w.replicas, 1))
	if w.routed {
		targets[stableHash(w)] = w.replicas
		if w.dynamic {
			targets[stableHash(w)] = dynamicStable(w, min(applied, traffic))
		}
		need = w.replicas
	}
	ready := w.current.serving() >= need
	if w.routed {
		if ready && w.canaryRoutable() < need {
			st.Canary.Weights = canaryWeights(st, w, traffic)
			out.reason = v1alpha1.ReasonRolloutPromoted
			out.message = fmt.Sprintf("Promoting %s: all traffic waits for the endpoints: %s", w.current.name, w.endpointsWanted(need))
			out.requeueAfter = endpointsRetry
			return out
		}
		if ready && st.Canary.Weights.Canary.Weight < w.maxWeight {
			st.Canary.Weights = canaryWeights(st, w, w.maxWeight)
			out.reason = v1alpha1.ReasonRolloutPromoted
			out.message = fmt.Sprintf("Promoting %s: all traffic to the new revision", w.current.name)
			return out
		}
	}
	if !ready {
		st.Canary.Weights = canaryWeights(st, w, traffic)
		out.reason = v1alpha1.ReasonRolloutPromoted
		out.message = fmt.Sprintf("Promoting %s: waiting for %d available replicas (%d now)", w.current.name, need, w.current.serving())
		return out
	}
	previous := w.stable
	st.StableRS = w.hash
	st.PromoteFull = false
	st.Canary.Weights = canaryWeights(st, w, 0)
	w.stable = w.current
	if w.routed && previous != nil && previous != w.current {
		targets[previous.hash] = out.scaleDownLater(previous, ptr.Deref(c.ScaleDownDelaySeconds, 30), now)
	}
	out.events = append(out.events, Event{Reason: v1alpha1.ReasonRolloutCompleted, Message: fmt.Sprintf("Revision %s promoted to stable", w.current.name)})
	out.reason, out.message = v1alpha1.ReasonRolloutCompleted, promotedMessage
	return out
}

const promotedMessage = "Promoted: scaling down the previous revision"

// oldPods reports whether ReplicaSets other than the current one still have
// pods, or are asked to.
func oldPods(w *world) bool {
	for _, rs := range w.all {
		if rs.hash != w.hash && (rs.spec > 0 || rs.current > 0) {
			return true
		}
	}
	return false
}

// stepResult is where the steps stopped and at which weight.
type stepResult struct {
	outcome
	weight int32
}

// runSteps advances through the steps as far as the world allows now: a
// setWeight step completes once the ReplicaSets have its sizes, a pause once
// promoted or its duration has passed. It stops at the first step that must
// wait, and doesn't move while hold says why it must not (unless promoted).
func runSteps(steps []v1alpha1.CanaryStep, st *v1alpha1.RolloutStatus, w *world, req requests, now time.Time, hold string) stepResult {
	var res stepResult
	idx := int(ptr.Deref(st.CurrentStepIndex, 0))
	res.weight = weightBefore(steps, idx)
	// Steps that waited on someone (a promotion, an analysis, an
	// experiment) are announced by an event; the others (weights reached,
	// timed pauses elapsed) show in the status only, so an update makes a
	// few events, not one per step.
	complete := func(kind v1alpha1.StepKind, why string, announce bool) {
		if announce {
			res.events = append(res.events, Event{Reason: v1alpha1.ReasonStepCompleted, Message: fmt.Sprintf("Step %d/%d (%s) completed%s", idx+1, len(steps), kind, why)})
		}
		idx++
		st.CurrentStepIndex = ptr.To(int32(idx))
	}
	if hold != "" && !req.promote {
		// The background analysis holds the update where it is.
		res.reason, res.message = v1alpha1.ReasonInconclusiveAnalysis, hold
		return res
	}
	for idx < len(steps) {
		step := steps[idx]
		kind, err := step.Kind()
		if err != nil {
			res.reason, res.message = v1alpha1.ReasonInvalidSpec, fmt.Sprintf("step %d: %v", idx, err)
			return res
		}
		if req.promote {
			// Promote leaves the current step, whatever it is.
			req.promote = false
			removePause(st, v1alpha1.PauseReasonCanaryPauseStep)
			removePause(st, v1alpha1.PauseReasonInconclusiveAnalysis)
			removePause(st, v1alpha1.PauseReasonInconclusiveExperiment)
			if kind == v1alpha1.StepSetWeight {
				res.weight = *step.SetWeight
			}
			complete(kind, ": promoted", true)
			continue
		}
		switch kind {
		case v1alpha1.StepSetWeight:
			res.weight = *step.SetWeight
			canary, stable := w.split(res.weight)
			if n, ok := canaryScale(steps, idx, w); ok {
				canary = n
			}
			if !atSizes(w, canary, stable) {
				res.reason = v1alpha1.ReasonReplicaSetUpdated
				res.message = fmt.Sprintf("Step %d/%d: scaling to weight %d (%d canary / %d stable)", idx+1, len(steps), res.weight, canary, stable)
				return res
			}
			if w.routed && servable(w, steps, idx) < res.weight {
				res.reason = v1alpha1.ReasonReplicaSetUpdated
				res.message = fmt.Sprintf("Step %d/%d: weight %d waits for the canary's endpoints: %s", idx+1, len(steps), res.weight, w.endpointsWanted(canary))
				res.requeueAfter = endpointsRetry
				return res
			}
			complete(kind, fmt.Sprintf(": weight %d", res.weight), false)
		case v1alpha1.StepPause:
			start := addPause(st, v1alpha1.PauseReasonCanaryPauseStep, w.pauseStart(idx, now))
			if step.Pause.Duration == nil {
				res.reason = v1alpha1.ReasonCanaryPauseStep
				res.message = fmt.Sprintf("Step %d/%d: paused until promoted", idx+1, len(steps))
				return res
			}
			d, err := v1alpha1.ParseSecondsOrDuration(*step.Pause.Duration)
			if err != nil {
				res.reason, res.message = v1alpha1.ReasonInvalidSpec, fmt.Sprintf("step %d: %v", idx, err)
				return res
			}
			if left := start.Add(d).Sub(now); left > 0 {
				res.reason = v1alpha1.ReasonCanaryPauseStep
				res.message = fmt.Sprintf("Step %d/%d: paused for %s", idx+1, len(steps), d)
				res.requeueAfter = left
				return res
			}
			removePause(st, v1alpha1.PauseReasonCanaryPauseStep)
			complete(kind, fmt.Sprintf(": paused %s", d), false)
		case v1alpha1.StepSetHeaderRoute, v1alpha1.StepSetMirrorRoute:
			// The routers apply the routes of the steps done so far; the
			// step itself is done once it is passed.
			complete(kind, "", false)
		case v1alpha1.StepSetCanaryScale:
			// The size applies from the next step on (canaryScale).
			complete(kind, "", false)
		case v1alpha1.StepAnalysis:
			done, stop := analysisStep(step.Analysis, st, w, idx, &res)
			if stop {
				return res
			}
			if done {
				complete(kind, ": analysis passed", true)
			}
		case v1alpha1.StepExperiment:
			done, stop := experimentStep(step.Experiment, st, w, idx, &res)
			if stop {
				return res
			}
			if done {
				complete(kind, ": experiment succeeded", true)
			}
		default:
			res.reason, res.message = v1alpha1.ReasonInvalidSpec, fmt.Sprintf("step %d: unknown kind %q", idx, kind)
			return res
		}
	}
	return res
}

// servable is the largest weight the available canary pods can serve: the
// inverse of split. Under setCanaryScale the user sized the canary apart from
// its weight, and any available pod serves any weight.
func servable(w *world, steps []v1alpha1.CanaryStep, idx int) int32 {
	return servableBy(w, steps, idx, w.canaryRoutable())
}

// servableBy is the largest weight avail canary pods can serve.
func servableBy(w *world, steps []v1alpha1.CanaryStep, idx int, avail int32) int32 {
	if _, ok := canaryScale(steps, idx, w); ok {
		if avail > 0 {
			return w.maxWeight
		}
		return 0
	}
	if avail < w.minPods || w.replicas == 0 {
		return 0
	}
	return int32(min(int64(w.maxWeight), int64(avail)*int64(w.maxWeight)/int64(w.replicas)))
}

// analysisStep runs a canary analysis step: it creates the step's
// AnalysisRun, then follows it. Successful completes the step; Failed or
// Error asks for an abort; Inconclusive pauses until promoted.
func analysisStep(a *v1alpha1.RolloutAnalysis, st *v1alpha1.RolloutStatus, w *world, idx int, res *stepResult) (done, stop bool) {
	slot := &st.Canary.CurrentStepAnalysisRun
	phase, err := res.follow(w, st, a, runOfStep, runName(w.ro, st, strconv.Itoa(idx)), slot)
	if err != nil {
		res.phase, res.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonInvalidSpec
		res.message = fmt.Sprintf("Step %d (analysis): %v", idx+1, err)
		return false, true
	}
	run := *slot
	switch {
	case phase == v1alpha1.AnalysisPhaseSuccessful:
		removePause(st, v1alpha1.PauseReasonInconclusiveAnalysis)
		return true, false
	case failed(phase):
		res.abortFor = runFailure(run)
		return false, true
	case phase == v1alpha1.AnalysisPhaseInconclusive:
		addPause(st, v1alpha1.PauseReasonInconclusiveAnalysis, w.now)
		res.reason = v1alpha1.ReasonInconclusiveAnalysis
		res.message = fmt.Sprintf("AnalysisRun %s is inconclusive: %s; promote to continue, abort to roll back", run.Name, run.Message)
		return false, true
	}
	res.reason, res.waiting = v1alpha1.ReasonProgressing, true
	res.message = fmt.Sprintf("Step %d/%d (analysis): AnalysisRun %s is %s", idx+1, len(w.ro.Spec.Strategy.Canary.Steps), run.Name, phase)
	return false, true
}

// backgroundAnalysis runs the canary's background analysis from
// startingStep on. Its run lasts for the rest of the update (plan
// terminates it once the update is promoted). Failed or Error asks for an
// abort; Inconclusive returns why the steps hold, until a promote accepts
// the result — the analysis then starts over with a new run.
func backgroundAnalysis(c *v1alpha1.CanaryStrategy, st *v1alpha1.RolloutStatus, w *world, req requests, out *stepResult) (hold string) {
	idx := ptr.Deref(st.CurrentStepIndex, 0)
	if c.Analysis == nil || idx < ptr.Deref(c.Analysis.StartingStep, 0) {
		return ""
	}
	slot := &st.Canary.CurrentBackgroundAnalysisRun
	name := runName(w.ro, st, "bg")
	if cur := *slot; cur != nil {
		name = cur.Name
		if cur.Phase == v1alpha1.AnalysisPhaseInconclusive && req.promote {
			name = runName(w.ro, st, "bg-p"+shortHash(st.LastHandled.Promote))
		}
	}
	phase, err := out.follow(w, st, &c.Analysis.RolloutAnalysis, runOfBackground, name, slot)
	switch {
	case err != nil:
		out.phase, out.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonInvalidSpec
		out.message = fmt.Sprintf("Background analysis: %v", err)
		return out.message
	case failed(phase):
		out.abortFor = runFailure(*slot)
	case phase == v1alpha1.AnalysisPhaseInconclusive:
		addPause(st, v1alpha1.PauseReasonInconclusiveAnalysis, w.now)
		return fmt.Sprintf("Background AnalysisRun %s is inconclusive: %s; promote to continue, abort to roll back", name, (*slot).Message)
	}
	return ""
}

// canaryScale is the canary size set by the last setCanaryScale step before
// idx, unless that step returned to matching the traffic weight. With traffic
// routing the canary size and its traffic share are then independent.
func canaryScale(steps []v1alpha1.CanaryStep, idx int, w *world) (int32, bool) {
	for i := min(idx, len(steps)) - 1; i >= 0; i-- {
		cs := steps[i].SetCanaryScale
		switch {
		case cs == nil:
			continue
		case cs.Replicas != nil:
			return min(*cs.Replicas, w.replicas), true
		case cs.Weight != nil:
			return int32((int64(*cs.Weight)*int64(w.replicas) + 99) / 100), true
		}
		return 0, false
	}
	return 0, false
}

// weightBefore is the weight set by the last setWeight step before idx.
func weightBefore(steps []v1alpha1.CanaryStep, idx int) int32 {
	for i := min(idx, len(steps)) - 1; i >= 0; i-- {
		if steps[i].SetWeight != nil {
			return *steps[i].SetWeight
		}
	}
	return 0
}

// atSizes reports whether the canary and stable ReplicaSets have reached the
// given sizes with every canary pod available and no leftover pods.
func atSizes(w *world, canary, stable int32) bool {
	c := w.current
	if c.planned || c.spec != canary || c.serving() < canary {
		return false
	}
	if w.stable != nil && w.stable != c && !w.dynamic && (w.stable.spec != stable || w.stable.current > stable) {
		return false
	}
	return w.oldPods() == 0
}

// canaryWeights is the weight split the status reports: the router weights
// with traffic routing, the replica-share weight without.
func canaryWeights(st *v1alpha1.RolloutStatus, w *world, weight int32) *v1alpha1.TrafficWeights {
	total := int32(100)
	if w.routed {
		total = w.maxWeight
	}
	return &v1alpha1.TrafficWeights{
		Canary: v1alpha1.WeightDestination{Weight: weight, PodTemplateHash: st.CurrentPodHash},
		Stable: v1alpha1.WeightDestination{Weight: total - weight, PodTemplateHash: st.StableRS},
	}
}

func stableName(w *world) string {
	if w.stable == nil {
		return "(none)"
	}
	return w.stable.name
}
