package rollout

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// requests are the one-shot requests of this reconcile.
type requests struct {
	// promote leaves the current pause or skips the current step.
	promote bool
}

// handleRequests consumes new request tokens (annotation values not yet in
// status.lastHandled). Every token is recorded, also one that has no effect;
// an event then says why it was ignored. Replaying a token does nothing.
// updating: an update is in progress (the current template is not stable).
func handleRequests(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, updating bool, now time.Time) (requests, []Event) {
	var req requests
	events := handleAbortRequests(ro, st, updating, now)
	promote := func(annotation string, last *string, kind string, do func()) {
		if !token(ro, annotation, last) {
			return
		}
		if reason := ignoredBecause(st, updating, false); reason != "" {
			events = append(events, ignored(kind, reason))
			return
		}
		do()
	}
	promote(v1alpha1.PromoteFullAnnotation, &st.LastHandled.PromoteFull, "promote-full", func() {
		st.PromoteFull = true
		st.PauseConditions = nil
		events = append(events, Event{Reason: v1alpha1.ReasonRolloutPromoted, Message: "Full promotion requested: skipping the remaining steps"})
	})
	promote(v1alpha1.PromoteAnnotation, &st.LastHandled.Promote, "promote", func() { req.promote = true })
	return req, events
}

// handleAbortRequests consumes the retry and abort tokens: the requests
// that are handled even while the spec is invalid. Retry comes first: when
// both arrive in one reconcile the abort wins, so an abort is never lost.
func handleAbortRequests(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, updating bool, now time.Time) []Event {
	var events []Event
	if token(ro, v1alpha1.RetryAnnotation, &st.LastHandled.Retry) {
		if !st.Abort {
			events = append(events, ignored("retry", "the update is not aborted"))
		} else {
			st.Abort = false
			st.AbortedAt = nil
			clearRuns(st)
			if ro.Spec.Strategy.Canary != nil {
				st.CurrentStepIndex = ptrInt32(0)
			}
			st.PauseConditions = nil
			events = append(events, Event{Reason: v1alpha1.ReasonRolloutRetried, Message: "Update retried on request: restarting from step 0"})
		}
	}
	if token(ro, v1alpha1.AbortAnnotation, &st.LastHandled.Abort) {
		if reason := ignoredBecause(st, updating, true); reason != "" {
			events = append(events, ignored("abort", reason))
		} else {
			abort(st, now)
			events = append(events, Event{Warning: true, Reason: v1alpha1.ReasonRolloutAborted, Message: "Update aborted on request: returning to the stable revision"})
		}
	}
	return events
}

// token reports whether the request annotation carries a token not handled
// yet, and records it as handled.
func token(ro *v1alpha1.Rollout, annotation string, last *string) bool {
	v, ok := ro.Annotations[annotation]
	if !ok || v == "" || v == *last {
		return false
	}
	*last = v
	return true
}

// ignoredBecause is why a request about the running update is ignored now;
// empty when it is not.
func ignoredBecause(st *v1alpha1.RolloutStatus, updating, abortedIsOK bool) string {
	switch {
	case !updating:
		return "no update is in progress"
	case st.Abort && abortedIsOK:
		return "the update is already aborted"
	case st.Abort:
		return "the update is aborted; retry it first"
	}
	return ""
}

func ignored(kind, why string) Event {
	return Event{Reason: v1alpha1.ReasonRequestIgnored, Message: fmt.Sprintf("%s request ignored: %s", kind, why)}
}

// abort marks the update aborted: pauses and promotions in flight end.
func abort(st *v1alpha1.RolloutStatus, now time.Time) {
	st.Abort = true
	st.AbortedAt = ptrTime(now)
	st.PauseConditions = nil
	st.PromoteFull = false
	st.BlueGreen.ScaleUpPreviewCheckPoint = false
}

func ptrTime(t time.Time) *metav1.Time { mt := metav1.NewTime(t); return &mt }

func ptrInt32(v int32) *int32 { return &v }
