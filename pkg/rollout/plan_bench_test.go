package rollout

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Micro-benchmarks of the planner and of the replica math (make bench runs
// them with -benchmem). A planner benchmark drives a sim to a state, checks
// that the plan there is what the state calls for, then times plan on that
// Input alone: plan leaves its Input unchanged, so one Input serves every
// iteration.

func benchPlan(b *testing.B, s *sim, check func(Plan) bool) {
	b.Helper()
	in := s.input()
	p, err := plan(in)
	if err != nil || !check(p) {
		b.Fatalf("the state is not what the benchmark times (err %v): %+v", err, p.Status)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := plan(in); err != nil {
			b.Fatal(err)
		}
	}
}

// idle: the plan changes nothing, as when a resync finds a Rollout at rest.
func idle(p Plan) bool {
	return p.Create == nil && len(p.Scale) == 0 && len(p.Services) == 0 && len(p.Events) == 0
}

// BenchmarkPlanSteadyState: a Healthy canary of 10 replicas.
func BenchmarkPlanSteadyState(b *testing.B) {
	s := newSim(b, canaryRollout(10, "25%", "25%", setWeight(20), pause(""), setWeight(50), pause("")))
	s.until("Healthy", 20, healthyPhase)
	benchPlan(b, s, func(p Plan) bool { return idle(p) && p.Status.Phase == v1alpha1.RolloutPhaseHealthy })
}

// BenchmarkPlanMidUpdate: the same canary updated, as the update starts (the
// plan creates the new ReplicaSet) and while it waits at a pause.
func BenchmarkPlanMidUpdate(b *testing.B) {
	b.Run("start", func(b *testing.B) {
		s := newSim(b, canaryRollout(10, "25%", "25%", setWeight(20), pause(""), setWeight(50), pause("")))
		s.until("Healthy", 20, healthyPhase)
		s.setImage("web:2")
		benchPlan(b, s, func(p Plan) bool { return p.Create != nil })
	})
	b.Run("paused", func(b *testing.B) {
		s := newSim(b, canaryRollout(10, "25%", "25%", setWeight(20), pause(""), setWeight(50), pause("")))
		s.until("Healthy", 20, healthyPhase)
		s.setImage("web:2")
		s.until("paused", 20, pausedAt(1))
		benchPlan(b, s, func(p Plan) bool { return idle(p) && p.Status.Phase == v1alpha1.RolloutPhasePaused })
	})
}

// BenchmarkPlanBlueGreen: a blue-green update waiting for promotion, the
// preview fully up.
func BenchmarkPlanBlueGreen(b *testing.B) {
	s := newSim(b, blueGreenRollout(10, v1alpha1.BlueGreenStrategy{AutoPromotionEnabled: ptr.To(false)}))
	s.until("Healthy", 20, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	s.wait(3)
	benchPlan(b, s, func(p Plan) bool { return idle(p) && p.Status.Phase == v1alpha1.RolloutPhasePaused })
}

// BenchmarkReplicaMath: the limits, the canary split and one rolling step,
// over the rows of TestCanarySplit's kind, at growing sizes.
func BenchmarkReplicaMath(b *testing.B) {
	for _, replicas := range []int32{3, 10, 100, 1000} {
		surge, unavailable := intstr.FromString("25%"), intstr.FromInt32(1)
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := resolveLimits(replicas, &surge, &unavailable)
				if err != nil {
					b.Fatal(err)
				}
				for _, weight := range []int32{1, 20, 50, 99} {
					canary, stable := canarySplit(replicas, weight, l.surge)
					rollingStep(replicas, l, []scaleTarget{
						{spec: canary / 2, available: canary / 2, target: canary},
						{spec: replicas, available: replicas, target: stable},
					})
				}
			}
		})
	}
}
