//go:build soak

package soak

import (
	"slices"
	"sync"
)

// tally counts things by name; every fault injector, the schedule and the
// invariant watcher count into one, which the summary prints.
type tally struct {
	mu     sync.Mutex
	counts map[string]int
}

func newTally() *tally { return &tally{counts: map[string]int{}} }

func (t *tally) add(name string, n int) {
	t.mu.Lock()
	t.counts[name] += n
	t.mu.Unlock()
}

func (t *tally) inc(name string) { t.add(name, 1) }

func (t *tally) get(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[name]
}

// snapshot returns the counts and their names, sorted.
func (t *tally) snapshot() (map[string]int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.counts))
	names := make([]string, 0, len(t.counts))
	for k, v := range t.counts {
		out[k] = v
		names = append(names, k)
	}
	slices.Sort(names)
	return out, names
}

// Names of the fault counters, as the summary prints them.
const (
	faultKills          = "controller kills (SIGKILL)"
	faultSelfExits      = "controller exits not caused by the soak"
	faultDroppedWatches = "dropped watches"
	fault409            = "writes answered 409 Conflict"
	fault500            = "writes answered 500 InternalError"
	fault503            = "writes answered 503 ServiceUnavailable"
	faultCuts           = "cut connections"
	faultDelayed        = "delayed requests"
	faultPromWindows    = "prometheus unreachable windows"
	faultWebWindows     = "web metric unreachable windows"
	faultMetricCuts     = "metric connections cut at a window's start"
	faultMeasureErrors  = "analysis measurements in Error (metric unreachable)"
	countProxied        = "requests through the API proxy"
	countMeasurements   = "web metric answers"
)

// faultOrder is the order of the fault table of the summary.
var faultOrder = []string{
	faultKills, faultSelfExits, faultDroppedWatches, fault409, fault500, fault503,
	faultCuts, faultDelayed, faultPromWindows, faultWebWindows, faultMetricCuts, faultMeasureErrors,
	countProxied, countMeasurements,
}
