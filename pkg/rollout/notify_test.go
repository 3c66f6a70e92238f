package rollout

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// The transitions a release makes, in order, as notifications see them
// (trigger and step: the steps completed for on-rollout-step-completed,
// the current step for the others).
func TestTransitionsOfCanaryPauseAndPromote(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "25%", setWeight(25), pause(""), setWeight(50), pause("2s")))
	s.until("Healthy", 10, healthyPhase)
	if len(s.notified) != 0 {
		t.Fatalf("the first revision notified %v", s.notified)
	}
	s.setImage("web:2")
	s.until("paused at step 1", 20, pausedAt(1))
	s.request(v1alpha1.PromoteAnnotation, "t1")
	s.until("Healthy on web:2", 30, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
	expectNotified(t, s, []string{
		"on-rollout-updated 0",
		"on-rollout-step-completed 1",
		"on-rollout-paused 1",
		"on-rollout-promoted 1",
		"on-rollout-step-completed 2",
		"on-rollout-step-completed 3",
		"on-rollout-paused 3",
		"on-rollout-step-completed 4",
		"on-rollout-completed 4",
	})

	s.setImage("web:3")
	s.until("paused at step 1", 20, pausedAt(1))
	s.request(v1alpha1.AbortAnnotation, "a1")
	s.until("Degraded", 20, phaseIs(v1alpha1.RolloutPhaseDegraded))
	s.request(v1alpha1.RetryAnnotation, "r1")
	s.until("paused at step 1", 20, pausedAt(1))
	s.request(v1alpha1.PromoteFullAnnotation, "f1")
	s.until("Healthy on web:3", 30, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
	expectNotified(t, s, []string{
		"on-rollout-updated 0",
		"on-rollout-step-completed 1",
		"on-rollout-paused 1",
		"on-rollout-aborted 1",
		"on-rollout-degraded 1",
		"on-rollout-step-completed 1",
		"on-rollout-paused 1",
		"on-rollout-promoted 1",
		"on-rollout-completed 4",
	})
}

func TestTransitionsOfFailingAnalysis(t *testing.T) {
	s := newSim(t, backgroundRollout(1, setWeight(25), pause(""), setWeight(50), pause("5s"))).withTemplate("errors")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at step 1", 20, pausedAt(1))
	s.tick()
	s.finishRun(runOfBackground, v1alpha1.AnalysisPhaseFailed)
	s.until("Degraded", 20, phaseIs(v1alpha1.RolloutPhaseDegraded))
	run := s.ro.Status.Canary.CurrentBackgroundAnalysisRun.Name
	expectNotified(t, s, []string{
		"on-rollout-updated 0",
		"on-rollout-step-completed 1",
		"on-rollout-paused 1",
		"on-analysis-run-failed 1 " + run,
		"on-rollout-aborted 1",
		"on-rollout-degraded 1",
	})
}

func TestTransitionsOfInconclusivePrePromotion(t *testing.T) {
	s := newSim(t, blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PrePromotionAnalysis: analysisOf("smoke")})).withTemplate("smoke")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("pre-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.BlueGreen.PrePromotionAnalysisRun != nil })
	s.finishRun(runOfPrePromotion, v1alpha1.AnalysisPhaseInconclusive)
	s.until("paused", 10, phaseIs(v1alpha1.RolloutPhasePaused))
	run := s.ro.Status.BlueGreen.PrePromotionAnalysisRun.Name
	s.request(v1alpha1.PromoteAnnotation, "go")
	s.until("Healthy on web:2", 20, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
	expectNotified(t, s, []string{
		"on-rollout-updated -1",
		"on-analysis-run-inconclusive -1 " + run,
		"on-rollout-paused -1",
		"on-rollout-promoted -1",
		"on-rollout-completed -1",
	})
}

// expectNotified compares and resets what s notified.
func expectNotified(t *testing.T, s *sim, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, s.notified); diff != "" {
		t.Errorf("notified (-want +got):\n%s", diff)
	}
	s.notified = nil
}
