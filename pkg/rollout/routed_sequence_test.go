package rollout

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func routedRollout(replicas int32, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	ro := canaryRollout(replicas, "25%", "0", steps...)
	c := ro.Spec.Strategy.Canary
	c.TrafficRouting = &v1alpha1.TrafficRouting{MaxTrafficWeight: 100, GatewayAPI: &v1alpha1.GatewayAPITrafficRouting{HTTPRoutes: []v1alpha1.GatewayAPIRoute{{Name: "web"}}}}
	c.ScaleDownDelaySeconds = ptr.To[int32](3)
	c.AbortScaleDownDelaySeconds = ptr.To[int32](3)
	return ro
}

func TestSequenceRoutedCanary(t *testing.T) {
	s := newSim(t, routedRollout(10, setWeight(20), pause(""), setWeight(50), pause("2s")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at 20%", 20, pausedAt(1))
	if s.weight != 20 {
		t.Fatalf("traffic %d at the first pause, want 20", s.weight)
	}
	// The stable stays at full size; the canary has ceil(20% × 10) pods.
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 2})
	s.request(v1alpha1.PromoteAnnotation, "p")
	s.until("Healthy", 40, healthyPhase)
	if s.weight != 0 || s.ro.Status.StableRS != s.ro.Status.CurrentPodHash {
		t.Fatalf("after completion traffic %d, stable %s, current %s", s.weight, s.ro.Status.StableRS, s.ro.Status.CurrentPodHash)
	}
	// Healthy while the previous stable waits out scaleDownDelaySeconds.
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 10})
	s.until("previous stable scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:1"] == 0 })
	s.golden()
}

func TestSequenceRoutedAbort(t *testing.T) {
	s := newSim(t, routedRollout(4, setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.request(v1alpha1.AbortAnnotation, "a")
	p := s.tick()
	if p.TrafficWeight == nil || *p.TrafficWeight != 0 {
		t.Fatalf("the reconcile that saw the abort set traffic %v, want 0", p.TrafficWeight)
	}
	s.expectServices("web:1", "web:1")
	// The canary is kept for abortScaleDownDelaySeconds, then scaled down.
	s.expectSizes(map[string]int32{"web:1": 4, "web:2": 2})
	s.until("canary scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:2"] == 0 })
	s.golden()
}

func TestRoutedSplit(t *testing.T) {
	rows := []struct {
		replicas, max, minPods, weight int32
		canary, stable                 int32
	}{
		{10, 100, 1, 20, 2, 10},
		{10, 100, 1, 25, 3, 10},
		{10, 100, 1, 1, 1, 10},
		{10, 100, 3, 10, 3, 10},
		{10, 100, 1, 0, 0, 10},
		{10, 100, 1, 100, 10, 10},
		{3, 1000, 1, 500, 2, 3},
		{0, 100, 1, 50, 0, 0},
	}
	for _, r := range rows {
		w := &world{replicas: r.replicas, routed: true, maxWeight: r.max, minPods: r.minPods}
		c, s := w.split(r.weight)
		if c != r.canary || s != r.stable {
			t.Errorf("split(%d) of %d replicas (max %d, minPods %d) = %d/%d, want %d/%d", r.weight, r.replicas, r.max, r.minPods, c, s, r.canary, r.stable)
		}
	}
}

func TestSequenceSetCanaryScale(t *testing.T) {
	s := newSim(t, routedRollout(10,
		v1alpha1.CanaryStep{SetCanaryScale: &v1alpha1.SetCanaryScale{Replicas: ptr.To[int32](1)}},
		setWeight(30), pause(""),
		v1alpha1.CanaryStep{SetCanaryScale: &v1alpha1.SetCanaryScale{Weight: ptr.To[int32](50)}},
		pause(""),
		v1alpha1.CanaryStep{SetCanaryScale: &v1alpha1.SetCanaryScale{MatchTrafficWeight: true}},
		pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at step 2", 20, pausedAt(2))
	// One canary pod, yet 30 % of the traffic: the size is decoupled.
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 1})
	if s.weight != 30 {
		t.Fatalf("traffic %d, want 30", s.weight)
	}
	s.request(v1alpha1.PromoteAnnotation, "1")
	s.until("paused at step 4", 20, pausedAt(4))
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 5})
	s.request(v1alpha1.PromoteAnnotation, "2")
	s.until("paused at step 6", 20, pausedAt(6))
	s.expectSizes(map[string]int32{"web:1": 10, "web:2": 3})
	s.golden()
}

func TestSequenceDynamicStableScale(t *testing.T) {
	ro := routedRollout(10, setWeight(20), pause(""), setWeight(60), pause(""))
	ro.Spec.Strategy.Canary.DynamicStableScale = true
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at 20 with the stable shrunk", 20, func(st v1alpha1.RolloutStatus) bool {
		return st.Phase == v1alpha1.RolloutPhasePaused && s.sizes()["web:1"] == 8
	})
	s.request(v1alpha1.PromoteAnnotation, "p")
	s.until("paused at 60 with the stable shrunk", 20, func(st v1alpha1.RolloutStatus) bool {
		return ptr.Deref(st.CurrentStepIndex, 0) == 3 && s.sizes()["web:1"] == 4
	})
	s.expectSizes(map[string]int32{"web:1": 4, "web:2": 6})
	// Abort: traffic returns to the stable only as its pods come back.
	s.request(v1alpha1.AbortAnnotation, "a")
	p := s.tick()
	if p.TrafficWeight == nil || *p.TrafficWeight == 0 {
		t.Fatalf("traffic %v sent back at once to a stable with 4 of 10 pods", p.TrafficWeight)
	}
	s.until("traffic back on a full stable", 20, func(v1alpha1.RolloutStatus) bool { return s.weight == 0 && s.sizes()["web:1"] == 10 })
	s.until("canary scaled down", 20, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:2"] == 0 })
	s.golden()
}

// TestSequenceRoutedWaitsForEndpoints: the EndpointSlices list available
// pods two ticks late, so each weight waits for them (tick checks that no
// raise outruns them) and the step says why; an abort does not wait.
func TestSequenceRoutedWaitsForEndpoints(t *testing.T) {
	s := newSim(t, routedRollout(4, setWeight(25), setWeight(50), pause(""), setWeight(100), pause("1s")))
	s.endpointsLag = 2
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("waiting for endpoints", 10, func(st v1alpha1.RolloutStatus) bool {
		return strings.Contains(st.Message, "waits for the canary's endpoints: 0 of 1 pods")
	})
	if s.weight != 0 {
		t.Fatalf("traffic %d before the canary's pod is listed ready", s.weight)
	}
	s.until("paused at 50", 20, pausedAt(2))
	if s.weight != 50 {
		t.Fatalf("traffic %d at the pause, want 50", s.weight)
	}
	s.request(v1alpha1.PromoteAnnotation, "p")
	s.until("Healthy", 40, healthyPhase)
	s.setImage("web:3")
	s.until("paused at 50", 20, pausedAt(2))
	reads := s.endpointReads
	s.request(v1alpha1.AbortAnnotation, "a")
	p := s.tick()
	if p.TrafficWeight == nil || *p.TrafficWeight != 0 || s.endpointReads != reads {
		t.Fatalf("the abort set traffic %v after %d endpoint reads, want 0 at once without reading", p.TrafficWeight, s.endpointReads-reads)
	}
	s.golden()
}

// TestSequenceRoutedScaleSeenLate: the ReplicaSet controller sees each
// scale a tick late, so after the canary is scaled up the plan reads a
// status older than its spec. Its pods still serve: the weight holds
// (found by the data-plane tests: 20 → 0 → 60 around each scale-up) and
// only rises, until the promotion hands the traffic to the new stable.
func TestSequenceRoutedScaleSeenLate(t *testing.T) {
	s := newSim(t, routedRollout(10, setWeight(20), pause("2s"), setWeight(50), pause("2s")))
	s.rsLag = true
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	for i := 0; ; i++ {
		if i == 40 {
			t.Fatalf("not promoted after 40 ticks: %s", s.ro.Status.Message)
		}
		before := s.weight
		s.tick()
		if s.ro.Status.StableRS == s.ro.Status.CurrentPodHash {
			break
		}
		if s.weight < before {
			t.Fatalf("at %s the canary weight fell %d → %d during the update (%s)", s.now.Sub(s.start), before, s.weight, s.ro.Status.Message)
		}
	}
	s.golden()
}
