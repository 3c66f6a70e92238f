package rollout

import (
	"fmt"
	"testing"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// FuzzPlanner drives the planner through random rollouts: random replica
// counts, limits and steps, random user actions between ticks, and pods that
// sometimes fail to become available. The simulator checks the surge and
// availability invariants after every tick; the planner must never fail or
// panic, and an abort must end with every replica on the stable revision.
// With an odd replica count the Rollout has ephemeral metadata, which every
// pod of the canary and the stable must carry after every tick.
func FuzzPlanner(f *testing.F) {
	f.Add([]byte{10, 1, 0, 3, 20, 0, 50, 1, 0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{3, 0, 1, 2, 25, 0, 1, 0, 6, 6, 6, 2, 2, 2, 2})
	f.Add([]byte{1, 2, 2, 1, 99, 4, 4, 4, 4, 4, 4})
	f.Add([]byte{20, 5, 5, 4, 10, 40, 70, 0, 5, 5, 1, 1, 3, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		replicas := int32(next() % 21)
		surges := []string{"0", "1", "3", "25%", "50%"}
		unavails := []string{"0", "1", "2", "25%", "100%"}
		surge, unavail := surges[next()%5], unavails[next()%5]
		if (surge == "0") && (unavail == "0") {
			unavail = "1"
		}
		var steps []v1alpha1.CanaryStep
		for range int(next() % 5) {
			if b := next(); b%3 == 0 {
				steps = append(steps, pause(""))
			} else {
				steps = append(steps, setWeight(int32(b%101)))
			}
		}
		ro := canaryRollout(replicas, surge, unavail, steps...)
		if b := next(); b%2 == 0 {
			ro = routedRollout(replicas, steps...)
			ro.Spec.Strategy.Canary.DynamicStableScale = b%4 == 0
		}
		withMetadata := replicas%2 == 1
		if withMetadata {
			ro.Spec.Strategy.Canary.CanaryMetadata, ro.Spec.Strategy.Canary.StableMetadata = canaryMeta, stableMeta
		}
		s := newSim(t, ro)
		s.flaky = func() bool { return next()%7 == 0 }
		s.endpointsLag = int(replicas % 3)
		s.rsLag = replicas%5 >= 3
		image := 1
		aborted := false
		for i := 0; len(data) > 0 && i < 200; i++ {
			switch next() % 10 {
			case 0:
				image++
				s.setImage(fmt.Sprintf("web:%d", image))
				aborted = false
			case 1:
				s.request(v1alpha1.PromoteAnnotation, fmt.Sprint(i))
			case 2:
				s.request(v1alpha1.AbortAnnotation, fmt.Sprint(i))
				aborted = s.ro.Status.StableRS != s.ro.Status.CurrentPodHash
			case 3:
				s.request(v1alpha1.RetryAnnotation, fmt.Sprint(i))
				aborted = false
			case 4:
				s.request(v1alpha1.PromoteFullAnnotation, fmt.Sprint(i))
			case 5:
				s.scale(int32(next() % 21))
			default:
				s.tick()
				if withMetadata {
					s.checkMetadata()
				}
			}
		}
		if aborted {
			s.flaky = nil
			s.until("settled on stable after abort", 200, func(v1alpha1.RolloutStatus) bool {
				return s.stableSettled()
			})
		}
	})
}
