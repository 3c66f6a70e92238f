//go:build soak

package soak

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScheduleIsSeeded(t *testing.T) {
	cfg := config{seed: 42, duration: 5 * time.Minute, rollouts: 6}
	if diff := cmp.Diff(plan(cfg), plan(cfg)); diff != "" {
		t.Fatalf("one seed, two plans:\n%s", diff)
	}
	other := cfg
	other.seed = 43
	if plan(cfg) == plan(other) {
		t.Fatal("seeds 42 and 43 make the same plan")
	}
}

// TestScheduleKeepsUpdatesUnfinished: the chaos updates can never complete
// by themselves — the stable image is always the one the schedule
// completed last — and failing releases only go to Rollouts with an
// analysis and are never completed.
func TestScheduleKeepsUpdatesUnfinished(t *testing.T) {
	cfg := config{seed: 7, duration: 20 * time.Minute, rollouts: 30}
	if got := cfg.kills(); got < 24 {
		t.Errorf("%d kills in 20 minutes, want at least 20", got)
	}
	for i, m := range newFleet(cfg) {
		s := newSchedule(m, cfg, streamSchedule+uint64(i))
		if len(s.updates) < 10 {
			t.Errorf("%s: only %d updates for 20 minutes", m.key, len(s.updates))
		}
		for _, u := range append(s.updates, s.final) {
			promotes := 0
			for _, a := range u.actions {
				if a.kind == requestPromote {
					promotes++
				}
				if a.kind == requestPromoteFull {
					t.Errorf("%s: promote --full among the random actions: %s", m.key, u)
				}
			}
			switch {
			case promotes > 1, promotes == 1 && (m.strategy == strategyBlueGreen || u.bad):
				t.Errorf("%s: an update that the random promotes could finish: %s", m.key, u)
			case u.bad && m.strategy == strategyCanary:
				t.Errorf("%s: a failing release without an analysis: %s", m.key, u)
			case u.bad && (u.ending == endComplete || u.ending == endCompleteFull):
				t.Errorf("%s: a failing release completed: %s", m.key, u)
			}
		}
	}
}
