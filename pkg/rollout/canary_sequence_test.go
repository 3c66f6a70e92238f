package rollout

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

var (
	healthyPhase = phaseIs(v1alpha1.RolloutPhaseHealthy)
	pausedPhase  = phaseIs(v1alpha1.RolloutPhasePaused)
)

func TestSequenceFirstDeploy(t *testing.T) {
	s := newSim(t, canaryRollout(5, "25%", "25%", setWeight(20), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.expectSizes(map[string]int32{"web:1": 5})
	s.expectServices("web:1", "web:1")
	s.golden()
}

func TestSequenceCanaryToHealthy(t *testing.T) {
	s := newSim(t, canaryRollout(10, "1", "0", setWeight(20), pause("3s"), setWeight(60), pause("2"), setWeight(80)))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.until("at the first pause", 20, pausedAt(1))
	s.expectSizes(map[string]int32{"web:2": 2, "web:1": 8})
	s.expectServices("web:1", "web:2")
	s.until("Healthy", 60, healthyPhase)
	s.expectSizes(map[string]int32{"web:2": 10})
	s.expectServices("web:2", "web:2")
	s.golden()
}

func TestSequencePauseAndPromote(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "25%", setWeight(25), pause(""), setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at step 1", 20, pausedAt(1))
	s.wait(5)
	if s.ro.Status.Phase != v1alpha1.RolloutPhasePaused {
		t.Fatalf("an indefinite pause ended by itself: %s", s.ro.Status.Phase)
	}
	s.request(v1alpha1.PromoteAnnotation, "t1")
	s.until("paused at step 3", 20, pausedAt(3))
	s.expectSizes(map[string]int32{"web:2": 2, "web:1": 2})
	s.wait(2) // the same token again does nothing
	if s.ro.Status.Phase != v1alpha1.RolloutPhasePaused {
		t.Fatalf("a replayed promote token acted again")
	}
	s.request(v1alpha1.PromoteAnnotation, "t2")
	s.until("Healthy", 20, healthyPhase)
	s.expectSizes(map[string]int32{"web:2": 4})
	s.golden()
}

func TestSequencePromoteFull(t *testing.T) {
	s := newSim(t, canaryRollout(6, "25%", "25%", setWeight(10), pause(""), setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.request(v1alpha1.PromoteFullAnnotation, "now")
	s.until("Healthy", 20, healthyPhase)
	s.expectSizes(map[string]int32{"web:2": 6})
	s.golden()
}

func TestSequenceAbortThenRetry(t *testing.T) {
	s := newSim(t, canaryRollout(10, "0", "1", setWeight(20), pause(""), setWeight(60), pause("")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.until("paused at step 1", 30, pausedAt(1))
	s.request(v1alpha1.AbortAnnotation, "a1")
	s.until("all back on stable", 30, func(st v1alpha1.RolloutStatus) bool {
		return st.Phase == v1alpha1.RolloutPhaseDegraded && s.settledOn("web:1", 10)
	})
	s.expectServices("web:1", "web:1")
	if !s.ro.Status.Abort {
		t.Error("status.abort is not set")
	}
	s.request(v1alpha1.RetryAnnotation, "r1")
	s.until("paused at step 1 again", 30, pausedAt(1))
	s.expectSizes(map[string]int32{"web:2": 2, "web:1": 8})
	s.request(v1alpha1.PromoteFullAnnotation, "f1")
	s.until("Healthy", 40, healthyPhase)
	s.golden()
}

func TestSequenceAbortMidwayWithSurge(t *testing.T) {
	s := newSim(t, canaryRollout(10, "3", "0", setWeight(50), pause("")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.tick()
	s.tick()
	s.request(v1alpha1.AbortAnnotation, "a1")
	s.until("aborted and settled", 30, func(st v1alpha1.RolloutStatus) bool {
		return st.Phase == v1alpha1.RolloutPhaseDegraded && s.settledOn("web:1", 10)
	})
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 0})
	s.golden()
}

func TestSequenceSupersedingUpdate(t *testing.T) {
	s := newSim(t, canaryRollout(10, "25%", "25%", setWeight(30), pause("")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.setImage("web:3")
	s.until("paused on web:3", 20, func(st v1alpha1.RolloutStatus) bool {
		return st.Phase == v1alpha1.RolloutPhasePaused && s.sizes()["web:2"] == 0
	})
	s.expectSizes(map[string]int32{"web:3": 3, "web:1": 7, "web:2": 0})
	s.request(v1alpha1.PromoteAnnotation, "p1")
	s.until("Healthy", 30, healthyPhase)
	s.expectSizes(map[string]int32{"web:3": 10})
	s.golden()
}

func TestSequenceRollbackToStable(t *testing.T) {
	s := newSim(t, canaryRollout(8, "25%", "25%", setWeight(50), pause("")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.setImage("web:1")
	s.until("Healthy", 20, healthyPhase)
	s.expectSizes(map[string]int32{"web:1": 8})
	s.expectServices("web:1", "web:1")
	s.golden()
}

func TestSequenceScaleMidUpdate(t *testing.T) {
	s := newSim(t, canaryRollout(10, "25%", "25%", setWeight(20), pause(""), setWeight(50), pause("")))
	s.until("Healthy", 15, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.scale(20)
	s.until("scaled up at the pause", 20, func(v1alpha1.RolloutStatus) bool {
		return s.sizes()["web:2"]+s.sizes()["web:1"] == 20 && s.ro.Status.AvailableReplicas == 20
	})
	s.expectSizes(map[string]int32{"web:2": 4, "web:1": 16})
	s.scale(5)
	s.until("scaled down at the pause", 20, func(v1alpha1.RolloutStatus) bool {
		return s.ro.Status.Replicas == 5
	})
	s.expectSizes(map[string]int32{"web:2": 1, "web:1": 4})
	s.request(v1alpha1.PromoteFullAnnotation, "f")
	s.until("Healthy", 20, healthyPhase)
	s.expectSizes(map[string]int32{"web:2": 5})
	s.golden()
}

func TestSequenceRollbackWindow(t *testing.T) {
	ro := canaryRollout(4, "25%", "25%", setWeight(50), pause(""))
	ro.Spec.RollbackWindow = &v1alpha1.RollbackWindow{Revisions: 1}
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.request(v1alpha1.PromoteAnnotation, "p")
	s.until("Healthy on web:2", 20, healthyPhase)
	// Back to web:1, the previous revision: no steps.
	s.setImage("web:1")
	s.until("Healthy on web:1", 20, healthyPhase)
	s.expectSizes(map[string]int32{"web:1": 4})
	// Forward to web:3, a new revision: steps again.
	s.setImage("web:3")
	s.until("paused on web:3", 20, pausedPhase)
	s.golden()
}

func TestSequencePausedSpecFreezes(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "25%", setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.ro.Spec.Paused = true
	s.setImage("web:2")
	s.wait(4)
	if s.ro.Status.Phase != v1alpha1.RolloutPhasePaused {
		t.Fatalf("phase %s with spec.paused, want Paused", s.ro.Status.Phase)
	}
	s.expectSizes(map[string]int32{"web:1": 4})
	s.ro.Spec.Paused = false
	s.say("user: resume")
	s.until("at the pause step", 20, pausedAt(1))
	s.expectSizes(map[string]int32{"web:1": 2, "web:2": 2})
	s.golden()
}

func TestSequenceAdoptionAndHistoryLimit(t *testing.T) {
	s := newSim(t, canaryRollout(2, "1", "0"))
	s.until("Healthy", 10, healthyPhase)
	// An orphan of the current template (say, left by a deleted Rollout of
	// the same name) is adopted rather than duplicated.
	for _, rs := range s.rss {
		rs.OwnerReferences = nil
	}
	p := s.tick()
	if len(p.Adopt) != 1 || p.Create != nil {
		t.Fatalf("adopt %v, create %v; want one adoption and no creation", p.Adopt, p.Create)
	}
	// Five more revisions with revisionHistoryLimit 2: the oldest idle
	// ReplicaSets are deleted.
	for i := 2; i <= 6; i++ {
		s.setImage(fmt.Sprintf("web:%d", i))
		s.until("Healthy", 20, healthyPhase)
	}
	s.wait(2)
	if n := len(s.rss); n != 3 {
		t.Errorf("%d ReplicaSets kept, want 3 (current + 2 history)", n)
	}
	s.golden()
}

// TestSequenceUndoToDefaultedTemplate puts a ReplicaSet's template back into
// the Rollout, as `kubectl rollouts undo` does. The API server has defaulted
// that template and the controller has added anti-affinity to it, so its hash
// is not the ReplicaSet's: the Rollout must still go back to that ReplicaSet
// rather than create a copy of it.
func TestSequenceUndoToDefaultedTemplate(t *testing.T) {
	ro := canaryRollout(4, "25%", "25%", setWeight(50), pause(""))
	ro.Spec.Strategy.Canary.AntiAffinity = &v1alpha1.AntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1alpha1.RequiredAntiAffinity{}}
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	undo := func(image string) {
		for _, rs := range s.rss {
			for i := range rs.Spec.Template.Spec.Containers {
				c := &rs.Spec.Template.Spec.Containers[i]
				c.TerminationMessagePath, c.ImagePullPolicy = corev1.TerminationMessagePathDefault, corev1.PullIfNotPresent
			}
			if rs.Spec.Template.Spec.Containers[0].Image == image {
				s.ro.Spec.Template = RevisionTemplate(&rs.Spec.Template)
			}
		}
		s.ro.Generation++
		s.say("user: undo to %s", image)
	}
	undo("web:1")
	s.until("Healthy on web:1", 10, healthyPhase)
	s.expectSizes(map[string]int32{"web:1": 4})
	undo("web:2")
	s.until("paused on web:2", 10, pausedPhase)
	if len(s.rss) != 2 {
		t.Errorf("%d ReplicaSets after undo, want the 2 revisions", len(s.rss))
	}
	s.golden()
}
