package rollout

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
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
			[]scaleTarget{{0, 0, 5}, {10, 10, 5}}, []int32{2, 10}},
		{"no surge: scale down first, within unavailability", 10, limits{0, 1},
			[]scaleTarget{{0, 0, 2}, {10, 10, 8}}, []int32{0, 9}},
		{"no surge: the freed slot is used next time", 10, limits{0, 1},
			[]scaleTarget{{0, 0, 2}, {9, 9, 8}}, []int32{1, 9}},
		{"available canary lets the stable shrink", 10, limits{0, 1},
			[]scaleTarget{{1, 1, 2}, {9, 9, 8}}, []int32{1, 8}},
		{"unavailable pods are removed for free", 10, limits{0, 1},
			[]scaleTarget{{2, 2, 2}, {8, 3, 0}}, []int32{2, 3}},
		{"an unhealthy stable never blocks the canary", 4, limits{0, 1},
			[]scaleTarget{{0, 0, 4}, {4, 0, 0}}, []int32{0, 0}},
		{"the last ReplicaSets go down first", 10, limits{0, 2},
			[]scaleTarget{{5, 5, 5}, {4, 4, 2}, {3, 3, 0}}, []int32{5, 3, 0}},
		{"over replicas+surge nothing scales up, the excess goes", 10, limits{1, 0},
			[]scaleTarget{{0, 0, 5}, {12, 12, 10}}, []int32{0, 10}},
		{"availability already below the floor is not made worse", 10, limits{0, 2},
			[]scaleTarget{{5, 2, 10}, {5, 5, 0}}, []int32{5, 5}},
		{"nothing to do", 4, limits{1, 1},
			[]scaleTarget{{2, 2, 2}, {2, 2, 2}}, []int32{2, 2}},
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
