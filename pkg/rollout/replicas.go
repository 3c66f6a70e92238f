package rollout

import (
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// limits are maxSurge and maxUnavailable resolved against the replica count.
type limits struct {
	surge, unavailable int32
}

// resolveLimits turns maxSurge (rounded up) and maxUnavailable (rounded down)
// into pod counts. When both come out as 0 — say 25% of 1 replica for
// maxUnavailable and 0 for maxSurge — maxUnavailable counts as 1, or no pod
// could ever be replaced. A surge so large that replicas+surge would
// overflow an int32 (maxSurge: 2147483647, or a huge percent) means no limit
// and is clamped: wrapped around, it would leave no room to scale up.
func resolveLimits(replicas int32, maxSurge, maxUnavailable *intstr.IntOrString) (limits, error) {
	def := intstr.FromString("25%")
	if maxSurge == nil {
		maxSurge = &def
	}
	if maxUnavailable == nil {
		maxUnavailable = &def
	}
	surge, err := intstr.GetScaledValueFromIntOrPercent(maxSurge, int(replicas), true)
	if err != nil {
		return limits{}, fmt.Errorf("maxSurge: %w", err)
	}
	unavailable, err := intstr.GetScaledValueFromIntOrPercent(maxUnavailable, int(replicas), false)
	if err != nil {
		return limits{}, fmt.Errorf("maxUnavailable: %w", err)
	}
	if surge < 0 || unavailable < 0 {
		return limits{}, fmt.Errorf("maxSurge %s and maxUnavailable %s must not be negative", maxSurge.String(), maxUnavailable.String())
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	surge = min(surge, math.MaxInt32-int(replicas))
	unavailable = min(unavailable, int(replicas))
	return limits{surge: int32(surge), unavailable: int32(unavailable)}, nil
}

// canarySplit returns the canary and stable sizes whose canary share best
// approximates weight percent. The total is replicas, or replicas+1 when
// surge allows it; ties go to the larger canary. With at least two pods and
// a weight strictly between 0 and 100 neither side is empty.
func canarySplit(replicas, weight, surge int32) (canary, stable int32) {
	switch {
	case replicas <= 0:
		return 0, 0
	case weight <= 0:
		return 0, replicas
	case weight >= 100:
		return replicas, 0
	}
	totals := []int32{replicas}
	if surge > 0 {
		totals = append(totals, replicas+1)
	}
	// The error of c canary pods out of t is |100c - weight*t| / (100t);
	// compare errors as fractions with cross-multiplication to stay exact.
	bestC, bestT := int32(-1), int32(1)
	var bestNum, bestDen int64
	for _, t := range totals {
		lo, hi := int32(0), t
		if t >= 2 {
			lo, hi = 1, t-1
		}
		for c := lo; c <= hi; c++ {
			num := abs64(100*int64(c) - int64(weight)*int64(t))
			den := 100 * int64(t)
			better := bestC < 0 || num*bestDen < bestNum*den ||
				(num*bestDen == bestNum*den && c > bestC)
			if better {
				bestC, bestT, bestNum, bestDen = c, t, num, den
			}
		}
	}
	return bestC, bestT - bestC
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// scaleTarget is one ReplicaSet as the rolling step sees it.
type scaleTarget struct {
	// spec and available are observed; target is where the plan wants spec.
	spec, available, target int32
	// stale: the status predates the last scale, so its count is not to be
	// trusted either way: its pods add nothing to what is available, and
	// removing them is never free.
	stale bool
}

// rollingStep moves every ReplicaSet's spec toward its target by as much as
// the limits allow right now, and returns the new spec values in the same
// order. The caller orders the slice by priority: scale-ups go to the first
// ReplicaSets first, scale-downs hit the last ones first.
//
// Scale-ups never take the spec total above replicas+surge. Scale-downs never
// take the pods that are surely available below replicas-unavailable (or
// below what is available now, if that is already lower); pods that are not
// available are removed first and cost nothing, which is why an unhealthy
// stable never blocks a healthy canary.
func rollingStep(replicas int32, l limits, rss []scaleTarget) []int32 {
	next := make([]int32, len(rss))
	var total, available int32
	for i, rs := range rss {
		next[i] = rs.spec
		total += rs.spec
		if !rs.stale {
			available += min(rs.available, rs.spec)
		}
	}

	room := replicas + l.surge - total
	for i, rs := range rss {
		if rs.target > rs.spec && room > 0 {
			up := min(rs.target-rs.spec, room)
			next[i] += up
			room -= up
		}
	}

	floor := min(replicas-l.unavailable, available)
	budget := available - floor
	for i := len(rss) - 1; i >= 0; i-- {
		rs := rss[i]
		if rs.target >= rs.spec {
			continue
		}
		down := rs.spec - rs.target
		unavailable := rs.spec - min(rs.available, rs.spec)
		if rs.stale {
			unavailable = 0
		}
		free := min(down, unavailable)
		costly := min(down-free, budget)
		next[i] -= free + costly
		budget -= costly
	}
	return next
}
