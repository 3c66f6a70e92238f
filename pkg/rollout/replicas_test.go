package rollout

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func ios(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

// TestCanarySplit pins the replica math of setWeight without traffic routing.
// The first rows are the anchors of DESIGN.md §3.3.
func TestCanarySplit(t *testing.T) {
	rows := []struct {
		replicas                 int32
		maxSurge, maxUnavailable string
		weight                   int32
		canary, stable           int32
	}{
		// Anchors.
		{10, "0", "1", 15, 2, 8},
		{10, "0", "1", 14, 1, 9},
		{3, "0", "1", 25, 1, 2},
		{10, "1", "0", 25, 3, 8},
		// Edges of the weight range.
		{10, "25%", "25%", 0, 0, 10},
		{10, "25%", "25%", 100, 10, 0},
		{10, "25%", "25%", 1, 1, 10}, // 1/11 is closer to 1% than 1/10
		{10, "0", "1", 1, 1, 9},
		{10, "0", "1", 99, 9, 1},
		{10, "25%", "25%", 99, 10, 1},
		{2, "0", "1", 1, 1, 1},
		{2, "0", "1", 99, 1, 1},
		// Surge allows a total of replicas+1 when that is closer.
		{10, "25%", "25%", 50, 5, 5},
		{3, "1", "0", 50, 2, 2},
		{3, "0", "1", 50, 2, 1},
		{4, "25%", "25%", 20, 1, 4},
		{4, "0", "1", 20, 1, 3},
		{5, "25%", "25%", 20, 1, 4},
		{5, "25%", "25%", 30, 2, 4},
		{5, "0", "1", 30, 2, 3},
		{10, "25%", "25%", 33, 3, 7},
		{10, "0", "1", 35, 4, 6},
		{10, "0", "1", 75, 8, 2},
		{10, "3", "0", 75, 8, 3},
		{100, "25%", "25%", 1, 1, 99},
		{100, "25%", "25%", 37, 37, 63},
		{7, "0", "2", 60, 4, 3},
		{7, "1", "0", 60, 5, 3},
		// One replica: with surge there is room for both, without it the
		// larger canary wins the tie; a small weight rounds to no canary.
		{1, "1", "0", 50, 1, 1},
		{1, "0", "25%", 50, 1, 0},
		{1, "0", "25%", 49, 0, 1},
		{1, "25%", "25%", 10, 0, 1},
		// No replicas, nothing to split.
		{0, "25%", "25%", 50, 0, 0},
	}
	for _, r := range rows {
		t.Run(fmt.Sprintf("%d replicas surge %s unavailable %s weight %d", r.replicas, r.maxSurge, r.maxUnavailable, r.weight), func(t *testing.T) {
			l, err := resolveLimits(r.replicas, ios(r.maxSurge), ios(r.maxUnavailable))
			if err != nil {
				t.Fatal(err)
			}
			c, s := canarySplit(r.replicas, r.weight, l.surge)
			if c != r.canary || s != r.stable {
				t.Errorf("got %d canary / %d stable, want %d / %d", c, s, r.canary, r.stable)
			}
			if c+s > r.replicas+l.surge {
				t.Errorf("total %d exceeds replicas+surge %d", c+s, r.replicas+l.surge)
			}
		})
	}
}

func TestResolveLimits(t *testing.T) {
	rows := []struct {
		replicas                 int32
		maxSurge, maxUnavailable *intstr.IntOrString
		want                     limits
	}{
		{10, nil, nil, limits{3, 2}},
		{10, ios("25%"), ios("25%"), limits{3, 2}},
		{1, ios("25%"), ios("25%"), limits{1, 0}},
		{1, ios("0"), ios("25%"), limits{0, 1}},
		{3, ios("0"), ios("0%"), limits{0, 1}},
		{10, ios("100%"), ios("0"), limits{10, 0}},
		{4, ios("1"), ios("10"), limits{1, 4}},
		{0, ios("25%"), ios("25%"), limits{0, 0}},
		// Found by FuzzReplicaMath: replicas+surge wrapped around int32 and
		// left no room to scale up, so no pod was ever created.
		{7, ios("2147483647"), ios("0"), limits{2147483640, 0}},
		{10, ios("100000000000%"), ios("0"), limits{2147483637, 0}},
		// And maxUnavailable was capped at replicas after a conversion to
		// int32 that could make it negative.
		{10, ios("0"), ios("30000000000%"), limits{0, 10}},
	}
	for _, r := range rows {
		got, err := resolveLimits(r.replicas, r.maxSurge, r.maxUnavailable)
		if err != nil {
			t.Fatal(err)
		}
		if got != r.want {
			t.Errorf("resolveLimits(%d, %v, %v) = %+v, want %+v", r.replicas, r.maxSurge, r.maxUnavailable, got, r.want)
		}
	}
	if _, err := resolveLimits(10, ios("lots"), nil); err == nil {
		t.Error("a malformed maxSurge was accepted")
	}
}

func TestRollingStep(t *testing.T) {
	rows := []struct {
		name     string
		replicas int32
		l        limits
		rss      []scaleTarget
		want     []int32
	}{
		{"surge room goes to the first ReplicaSet", 10, limits{2, 0},
			[]scaleTarget{{0, 0, 5, false}, {10, 10, 5, false}}, []int32{2, 10}},
		{"no surge: scale down first, within unavailability", 10, limits{0, 1},
			[]scaleTarget{{0, 0, 2, false}, {10, 10, 8, false}}, []int32{0, 9}},
		{"no surge: the freed slot is used next time", 10, limits{0, 1},
			[]scaleTarget{{0, 0, 2, false}, {9, 9, 8, false}}, []int32{1, 9}},
		{"available canary lets the stable shrink", 10, limits{0, 1},
			[]scaleTarget{{1, 1, 2, false}, {9, 9, 8, false}}, []int32{1, 8}},
		{"unavailable pods are removed for free", 10, limits{0, 1},
			[]scaleTarget{{2, 2, 2, false}, {8, 3, 0, false}}, []int32{2, 3}},
		{"an unhealthy stable never blocks the canary", 4, limits{0, 1},
			[]scaleTarget{{0, 0, 4, false}, {4, 0, 0, false}}, []int32{0, 0}},
		{"the last ReplicaSets go down first", 10, limits{0, 2},
			[]scaleTarget{{5, 5, 5, false}, {4, 4, 2, false}, {3, 3, 0, false}}, []int32{5, 3, 0}},
		{"over replicas+surge nothing scales up, the excess goes", 10, limits{1, 0},
			[]scaleTarget{{0, 0, 5, false}, {12, 12, 10, false}}, []int32{0, 10}},
		{"availability already below the floor is not made worse", 10, limits{0, 2},
			[]scaleTarget{{5, 2, 10, false}, {5, 5, 0, false}}, []int32{5, 5}},
		{"nothing to do", 4, limits{1, 1},
			[]scaleTarget{{2, 2, 2, false}, {2, 2, 2, false}}, []int32{2, 2}},
		// Found by the soak: a ReplicaSet scaled to 0 and back whose status
		// still counts the going pods must not pay for the stable's
		// scale-down, nor may a stale one's pods be removed for free.
		{"a stale status adds nothing to what is available", 5, limits{1, 1},
			[]scaleTarget{{2, 2, 2, true}, {5, 5, 3, false}}, []int32{2, 4}},
		{"a stale ReplicaSet's pods are not removed for free", 5, limits{1, 1},
			[]scaleTarget{{5, 0, 5, false}, {3, 0, 0, true}}, []int32{5, 3}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := rollingStep(r.replicas, r.l, r.rss)
			if diff := cmp.Diff(r.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzReplicaMath checks the replica math against the rules of DESIGN.md
// §3.3 for any replica count, limits, weight and ReplicaSets:
//   - resolveLimits: an admissible maxSurge / maxUnavailable (a count ≥ 0 or
//     a percent) resolves to surge rounded up and unavailability rounded
//     down, the latter at most replicas and 1 when both would be 0; a
//     negative count is an error; replicas+surge never overflows;
//   - canarySplit: the total is replicas, or replicas+1 only with surge; with
//     at least two pods and 1 ≤ weight ≤ 99 neither side is 0; no achievable
//     split is closer to the weight, ties go to the larger canary; the canary
//     share never shrinks as the weight grows;
//   - rollingStep: every ReplicaSet moves toward its target and never past
//     it; scale-ups never take the total above replicas+surge; the pods that
//     are surely available never drop below replicas-unavailable (or below
//     what is available now); a step stops short only at a limit; and
//     driving the canary split to its end with pods that become available
//     makes progress on every step.
func FuzzReplicaMath(f *testing.F) {
	// replicas, maxSurge (percent?, value), maxUnavailable (percent?, value),
	// weight, then (spec, available, target) triples of ReplicaSets.
	f.Add(uint16(10), false, int64(0), false, int64(1), int16(15), []byte{0, 0, 5, 10, 10, 5})
	f.Add(uint16(10), false, int64(1), false, int64(0), int16(25), []byte{3, 1, 3, 8, 8, 8})
	f.Add(uint16(3), true, int64(25), true, int64(25), int16(50), []byte{1, 0, 2, 3, 3, 1, 2, 2, 0})
	f.Add(uint16(1), true, int64(0), true, int64(0), int16(99), []byte{0, 0, 1, 1, 0, 0})
	f.Add(uint16(100), true, int64(150), true, int64(100), int16(1), []byte{50, 20, 90, 60, 60, 10, 7, 3, 0})
	f.Add(uint16(0), false, int64(-1), true, int64(-25), int16(101), []byte{})
	f.Fuzz(func(t *testing.T, r uint16, surgePct bool, surgeV int64, unavailPct bool, unavailV int64, w int16, state []byte) {
		// canarySplit takes time linear in replicas: sizes up to 2047 keep
		// the fuzzer fast.
		replicas, weight := int32(r%2048), int32(w)
		maxSurge, surgeExact := fuzzIntOrPercent(surgePct, surgeV, int64(replicas), true)
		maxUnavail, unavailExact := fuzzIntOrPercent(unavailPct, unavailV, int64(replicas), false)
		l, err := resolveLimits(replicas, maxSurge, maxUnavail)
		negativeCount := maxSurge.Type == intstr.Int && maxSurge.IntVal < 0 || maxUnavail.Type == intstr.Int && maxUnavail.IntVal < 0
		switch {
		case negativeCount && err == nil:
			t.Fatalf("maxSurge %s, maxUnavailable %s: accepted, want an error", maxSurge, maxUnavail)
		case err != nil && surgeExact >= 0 && unavailExact >= 0:
			t.Fatalf("%d replicas, maxSurge %s, maxUnavailable %s: %v", replicas, maxSurge, maxUnavail, err)
		case err != nil:
			// Negative (which admission refuses), or a percent too large
			// for the arithmetic.
			return
		}
		if l.surge < 0 || l.unavailable < 0 || l.unavailable > replicas || int64(replicas)+int64(l.surge) > math.MaxInt32 {
			t.Fatalf("%d replicas, maxSurge %s, maxUnavailable %s: limits %+v", replicas, maxSurge, maxUnavail, l)
		}
		if surgeExact >= 0 && unavailExact >= 0 {
			want := limits{
				surge:       int32(min(surgeExact, math.MaxInt32-int64(replicas))),
				unavailable: int32(min(unavailExact, int64(replicas))),
			}
			if want.surge == 0 && want.unavailable == 0 {
				want.unavailable = min(1, replicas)
			}
			if l != want {
				t.Fatalf("%d replicas, maxSurge %s, maxUnavailable %s: limits %+v, want %+v", replicas, maxSurge, maxUnavail, l, want)
			}
		}

		canary, stable := checkCanarySplit(t, replicas, weight, l.surge)
		rss := fuzzReplicaSets(state, replicas)
		checkRollingStep(t, replicas, l, rss)
		// The planner's use: the canary first, then the stable, then old
		// ReplicaSets, driven to the split as pods become available (up to
		// 256 replicas, where that takes at most a few thousand steps).
		if len(rss) >= 2 && replicas <= 256 {
			rss[0].target, rss[1].target = canary, stable
			for i := 2; i < len(rss); i++ {
				rss[i].target = 0
			}
			converge(t, replicas, l, rss)
		}
	})
}

// fuzzIntOrPercent is maxSurge or maxUnavailable as a count (the int32 the
// API holds) or a percent, and its exact value for replicas, rounded up or
// down; -1 when it is negative or a percent beyond 10^12, which no spec
// means and the float arithmetic of intstr does not resolve exactly.
func fuzzIntOrPercent(percent bool, v, replicas int64, up bool) (*intstr.IntOrString, int64) {
	if !percent {
		n := int32(v)
		if n < 0 {
			return ptr.To(intstr.FromInt32(n)), -1
		}
		return ptr.To(intstr.FromInt32(n)), int64(n)
	}
	s := intstr.FromString(fmt.Sprintf("%d%%", v))
	if v < 0 || v > 1e12 {
		return &s, -1
	}
	scaled := v * replicas / 100
	if up && v*replicas%100 != 0 {
		scaled++
	}
	return &s, scaled
}

// checkCanarySplit checks one split and the split of the next weight.
func checkCanarySplit(t *testing.T, replicas, weight, surge int32) (int32, int32) {
	t.Helper()
	c, s := canarySplit(replicas, weight, surge)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%d replicas, weight %d, surge %d: %d canary / %d stable: %s", replicas, weight, surge, c, s, fmt.Sprintf(format, args...))
	}
	switch {
	case c < 0 || s < 0:
		fail("a negative side")
	case replicas <= 0 && c+s != 0:
		fail("pods for no replicas")
	case replicas <= 0:
		return c, s
	case weight <= 0 && (c != 0 || s != replicas), weight >= 100 && (c != replicas || s != 0):
		fail("want everything on one side")
	case c+s != replicas && (c+s != replicas+1 || surge == 0):
		fail("total %d", c+s)
	case replicas >= 2 && weight >= 1 && weight <= 99 && (c == 0 || s == 0):
		fail("an empty side")
	}
	if weight <= 0 || weight >= 100 {
		return c, s
	}
	// Every other achievable split: the neighbours of c in its own total,
	// and the two closest in the other total.
	totals := []int32{replicas}
	if surge > 0 {
		totals = append(totals, replicas+1)
	}
	for _, tt := range totals {
		ideal := int32(int64(weight) * int64(tt) / 100)
		for _, oc := range []int32{c - 1, c + 1, ideal, ideal + 1} {
			lo, hi := int32(0), tt
			if tt >= 2 {
				lo, hi = 1, tt-1
			}
			if oc < lo || oc > hi || (oc == c && tt == c+s) {
				continue
			}
			switch compareSplitError(weight, oc, tt, c, c+s) {
			case -1:
				fail("%d of %d is closer", oc, tt)
			case 0:
				if oc > c {
					fail("%d of %d is as close and larger", oc, tt)
				}
			}
		}
	}
	if nc, ns := canarySplit(replicas, weight+1, surge); int64(nc)*int64(c+s) < int64(c)*int64(nc+ns) {
		fail("weight %d gives %d / %d, a smaller share", weight+1, nc, ns)
	}
	return c, s
}

// compareSplitError compares how far a canary of c1 out of t1 and one of c2
// out of t2 are from weight percent, exactly: -1 when the first is closer.
func compareSplitError(weight, c1, t1, c2, t2 int32) int {
	e1 := abs64(100*int64(c1)-int64(weight)*int64(t1)) * int64(t2)
	e2 := abs64(100*int64(c2)-int64(weight)*int64(t2)) * int64(t1)
	switch {
	case e1 < e2:
		return -1
	case e1 > e2:
		return 1
	}
	return 0
}

// fuzzReplicaSets reads up to four ReplicaSets as (spec, available, target)
// byte triples, scaled so that they stay near the replica count.
func fuzzReplicaSets(state []byte, replicas int32) []scaleTarget {
	scale := max(replicas/64, 1)
	var rss []scaleTarget
	for len(state) >= 3 && len(rss) < 4 {
		rss = append(rss, scaleTarget{spec: int32(state[0]) * scale, available: int32(state[1]) * scale, target: int32(state[2]) * scale})
		state = state[3:]
	}
	return rss
}

// checkRollingStep checks one step of rollingStep and returns it.
func checkRollingStep(t *testing.T, replicas int32, l limits, rss []scaleTarget) []int32 {
	t.Helper()
	next := rollingStep(replicas, l, rss)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%d replicas, limits %+v, %+v → %v: %s", replicas, l, rss, next, fmt.Sprintf(format, args...))
	}
	if len(next) != len(rss) {
		fail("%d sizes for %d ReplicaSets", len(next), len(rss))
	}
	var specTotal, availBefore, availAfter, ups int32
	upWanted, downLeft := false, false
	for i, rs := range rss {
		n := next[i]
		if n < min(rs.spec, rs.target) || n > max(rs.spec, rs.target) {
			fail("ReplicaSet %d went away from its target", i)
		}
		specTotal += rs.spec
		ups += max(n-rs.spec, 0)
		upWanted = upWanted || n < rs.target
		avail := min(rs.available, rs.spec)
		availBefore += avail
		// Pods that are not available go first.
		availAfter += min(avail, n)
		if n > rs.target {
			downLeft = true
			if avail < n {
				fail("ReplicaSet %d stopped short of its target but kept pods that are not available", i)
			}
		}
	}
	room := replicas + l.surge - specTotal
	floor := min(replicas-l.unavailable, availBefore)
	switch {
	case ups > 0 && specTotal+ups > replicas+l.surge:
		fail("scaled up to %d pods, more than replicas+surge", specTotal+ups)
	case upWanted && ups < room:
		fail("stopped short of a target with room for %d more", room-ups)
	case availAfter < floor:
		fail("%d pods surely available, fewer than %d", availAfter, floor)
	case downLeft && availAfter > floor:
		fail("stopped short of a target with %d pods to spare", availAfter-floor)
	}
	return next
}

// converge drives rss to their targets, every pod becoming available after
// each step, and checks every step on the way: states the planner meets,
// which random ones seldom are. The targets sum to between
// replicas-unavailable and replicas+surge, so every step must move at least
// one pod.
func converge(t *testing.T, replicas int32, l limits, rss []scaleTarget) {
	t.Helper()
	// The first step may wait for pods that are not available yet.
	next := checkRollingStep(t, replicas, l, rss)
	for {
		done := true
		for i := range rss {
			rss[i].spec, rss[i].available = next[i], next[i]
			done = done && rss[i].spec == rss[i].target
		}
		if done {
			return
		}
		next = checkRollingStep(t, replicas, l, rss)
		stuck := true
		for i := range rss {
			stuck = stuck && next[i] == rss[i].spec
		}
		if stuck {
			t.Fatalf("%d replicas, limits %+v: stuck at %+v", replicas, l, rss)
		}
	}
}
