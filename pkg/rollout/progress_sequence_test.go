package rollout

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// stuckUpdate is a canary of 4 (setWeight 50, then a pause until promoted)
// with a progress deadline of deadline seconds, Healthy on web:1, updated to
// web:2, whose pods never become available.
func stuckUpdate(t *testing.T, deadline int32, abort bool) *sim {
	ro := canaryRollout(4, "1", "0", setWeight(50), pause(""))
	ro.Spec.ProgressDeadlineSeconds = ptr.To(deadline)
	ro.Spec.ProgressDeadlineAbort = abort
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.breakImage("web:2")
	s.setImage("web:2")
	return s
}

func TestSequenceProgressDeadline(t *testing.T) {
	s := stuckUpdate(t, 5, false)
	s.until("deadline exceeded", 20, func(st v1alpha1.RolloutStatus) bool {
		return st.Phase == v1alpha1.RolloutPhaseDegraded
	})
	if reason := conditionReason(s.ro.Status, v1alpha1.ConditionProgressing); reason != v1alpha1.ReasonProgressDeadlineExceeded {
		t.Fatalf("Progressing reason %q, want %s", reason, v1alpha1.ReasonProgressDeadlineExceeded)
	}
	if s.ro.Status.Abort {
		t.Fatal("aborted without progressDeadlineAbort")
	}
	// Still Degraded later; the stable keeps serving.
	s.wait(3)
	s.expectSizes(map[string]int32{"web:1": 4, "web:2": 1})
	// A fixed revision makes progress again.
	s.setImage("web:3")
	s.until("paused on web:3", 20, pausedPhase)
	s.request(v1alpha1.PromoteAnnotation, "p")
	s.until("Healthy", 20, healthyPhase)
	s.golden()
}

func TestSequenceProgressDeadlineAbort(t *testing.T) {
	s := stuckUpdate(t, 5, true)
	s.until("aborted and back on stable", 30, func(st v1alpha1.RolloutStatus) bool {
		return st.Abort && s.stableSettled()
	})
	if reason := conditionReason(s.ro.Status, v1alpha1.ConditionDegraded); reason != v1alpha1.ReasonRolloutAborted {
		t.Errorf("Degraded reason %q, want %s", reason, v1alpha1.ReasonRolloutAborted)
	}
	s.golden()
}

func TestSequencePauseDoesNotCountAgainstTheDeadline(t *testing.T) {
	ro := canaryRollout(2, "1", "0", setWeight(50), pause(""))
	ro.Spec.ProgressDeadlineSeconds = ptr.To[int32](3)
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.wait(10)
	if s.ro.Status.Phase != v1alpha1.RolloutPhasePaused {
		t.Fatalf("a long pause hit the progress deadline: %s %s", s.ro.Status.Phase, s.ro.Status.Message)
	}
}

func TestSequenceBadStableDoesNotBlockCanary(t *testing.T) {
	s := newSim(t, canaryRollout(4, "0", "1", setWeight(50), pause("2s")))
	s.until("Healthy", 10, healthyPhase)
	s.breakImage("web:1")
	s.wait(2)
	s.setImage("web:2")
	s.until("Healthy on web:2", 30, healthyPhase)
	s.expectSizes(map[string]int32{"web:2": 4})
	s.golden()
}

func conditionReason(st v1alpha1.RolloutStatus, typ string) string {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Reason
		}
	}
	return ""
}
