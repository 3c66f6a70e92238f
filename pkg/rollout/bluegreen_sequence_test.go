package rollout

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func blueGreenRollout(replicas int32, bg v1alpha1.BlueGreenStrategy) *v1alpha1.Rollout {
	ro := canaryRollout(replicas, "25%", "25%")
	bg.ActiveService, bg.PreviewService = "web-active", "web-preview"
	if bg.ScaleDownDelaySeconds == nil {
		bg.ScaleDownDelaySeconds = ptr.To[int32](5)
	}
	ro.Spec.Strategy = v1alpha1.RolloutStrategy{BlueGreen: &bg}
	return ro
}

// activeAndPreview returns the images the two Services select.
func (s *sim) activeAndPreview() [2]string {
	sel := func(name string) string {
		return s.imageOfHash(s.services[name].Spec.Selector[v1alpha1.PodTemplateHashLabel])
	}
	return [2]string{sel("web-active"), sel("web-preview")}
}

func TestSequenceBlueGreenManualPromotion(t *testing.T) {
	s := newSim(t, blueGreenRollout(3, v1alpha1.BlueGreenStrategy{AutoPromotionEnabled: ptr.To(false)}))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused with the preview ready", 20, pausedPhase)
	s.expectSizes(map[string]int32{"web:1": 3, "web:2": 3})
	if got := s.activeAndPreview(); got != [2]string{"web:1", "web:2"} {
		t.Fatalf("before promotion active/preview select %v", got)
	}
	s.wait(3)
	if got := s.activeAndPreview(); got[0] != "web:1" {
		t.Fatalf("the active Service switched without promotion: %v", got)
	}
	s.request(v1alpha1.PromoteAnnotation, "go")
	s.until("Healthy", 10, healthyPhase)
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("after promotion active/preview select %v", got)
	}
	// The previous revision is kept for scaleDownDelaySeconds (5s)...
	s.expectSizes(map[string]int32{"web:1": 3, "web:2": 3})
	s.until("previous revision scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:1"] == 0 })
	s.wait(2)
	s.golden()
}

func TestSequenceBlueGreenAutoPromotion(t *testing.T) {
	s := newSim(t, blueGreenRollout(2, v1alpha1.BlueGreenStrategy{AutoPromotionSeconds: ptr.To[int32](3)}))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("waiting to promote", 20, pausedPhase)
	s.until("switched", 10, func(st v1alpha1.RolloutStatus) bool { return st.StableRS == st.CurrentPodHash })
	s.until("previous revision scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:1"] == 0 })
	s.golden()
}

func TestSequenceBlueGreenPreviewReplicaCount(t *testing.T) {
	s := newSim(t, blueGreenRollout(4, v1alpha1.BlueGreenStrategy{AutoPromotionEnabled: ptr.To(false), PreviewReplicaCount: ptr.To[int32](1)}))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused with a one-pod preview", 20, pausedPhase)
	s.expectSizes(map[string]int32{"web:1": 4, "web:2": 1})
	s.request(v1alpha1.PromoteAnnotation, "go")
	s.until("switched", 10, func(st v1alpha1.RolloutStatus) bool { return st.StableRS == st.CurrentPodHash })
	s.expectSizes(map[string]int32{"web:1": 4, "web:2": 4})
	s.until("Healthy", 10, healthyPhase)
	s.until("previous revision scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:1"] == 0 })
	s.golden()
}

func TestSequenceBlueGreenAbort(t *testing.T) {
	s := newSim(t, blueGreenRollout(3, v1alpha1.BlueGreenStrategy{AutoPromotionEnabled: ptr.To(false), AbortScaleDownDelaySeconds: ptr.To[int32](4)}))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.request(v1alpha1.AbortAnnotation, "stop")
	s.tick()
	if got := s.activeAndPreview(); got != [2]string{"web:1", "web:1"} {
		t.Fatalf("after abort active/preview select %v", got)
	}
	s.expectSizes(map[string]int32{"web:1": 3, "web:2": 3})
	s.until("aborted revision scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:2"] == 0 })
	if s.ro.Status.Phase != v1alpha1.RolloutPhaseDegraded {
		t.Errorf("phase %s after abort, want Degraded", s.ro.Status.Phase)
	}
	s.golden()
}
