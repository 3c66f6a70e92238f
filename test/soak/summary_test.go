//go:build soak

package soak

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything the summary says about a run.
type report struct {
	cfg        config
	elapsed    time.Duration
	tally      *tally
	violations []violation
	problems   []string // end state, and schedules that stopped
	panics     []string
}

func (r report) passed() bool {
	return len(r.violations) == 0 && len(r.problems) == 0 && len(r.panics) == 0
}

// markdown renders the summary written to bin/soak/summary.md.
func (r report) markdown() string {
	var b strings.Builder
	counts, names := r.tally.snapshot()
	result := "PASS"
	if !r.passed() {
		result = "FAIL"
	}
	fmt.Fprintf(&b, "# Chaos soak: %s\n\n", result)
	fmt.Fprintf(&b, "Seed %d, duration %s, %d Rollouts; wall time %s.\n\nReplay: `%s`\n\n", r.cfg.seed, r.cfg.duration, r.cfg.rollouts, r.elapsed.Round(time.Second), r.cfg.replay())
	fmt.Fprintf(&b, "Faults: %.0f%% of the controller's writes refused, %.0f%% of its other requests delayed up to %s, watches dropped after %s on average, connections cut every %s on average.\n\n",
		100*r.cfg.writeFaults, 100*r.cfg.delayShare, r.cfg.maxDelay, r.cfg.watchLife, r.cfg.cutEvery)

	b.WriteString("## Faults\n\n| fault | count |\n|---|---:|\n")
	for _, name := range faultOrder {
		fmt.Fprintf(&b, "| %s | %d |\n", name, counts[name])
	}
	b.WriteString("\n## Invariant checks\n\n| invariant | checks | exempt | violating checks | violations |\n|---|---:|---:|---:|---:|\n")
	for _, inv := range invariantOrder {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", inv, counts["checks: "+inv], counts["checks exempt: "+inv], counts["violating checks: "+inv], counts["violations: "+inv])
	}
	b.WriteString("\n## Schedule\n\n| | count |\n|---|---:|\n")
	for _, name := range names {
		if rest, ok := strings.CutPrefix(name, "schedule: "); ok {
			fmt.Fprintf(&b, "| %s | %d |\n", rest, counts[name])
		}
	}
	var other []string
	for _, name := range names {
		if !strings.HasPrefix(name, "schedule: ") && !strings.HasPrefix(name, "checks") && !strings.HasPrefix(name, "violat") && !slices.Contains(faultOrder, name) {
			other = append(other, fmt.Sprintf("| %s | %d |", name, counts[name]))
		}
	}
	if len(other) > 0 {
		b.WriteString("\n## Other counts\n\n| | count |\n|---|---:|\n" + strings.Join(other, "\n") + "\n")
	}

	// The first ones of each invariant: one kind that fails often must not
	// hide the rare others.
	const perInvariant = 10
	fmt.Fprintf(&b, "\n## Violations (%d)\n\n", len(r.violations))
	shown := map[string]int{}
	for i, v := range r.violations {
		if shown[v.invariant]++; shown[v.invariant] > perInvariant {
			continue
		}
		fmt.Fprintf(&b, "### %d. %s: %s at %s\n\n%s\n\n```\n%s```\n\n", i+1, v.rollout, v.invariant, v.at.Format(time.RFC3339Nano), v.message, v.observed)
	}
	for _, inv := range slices.Sorted(maps.Keys(shown)) {
		if n := shown[inv]; n > perInvariant {
			fmt.Fprintf(&b, "… and %d more of %s.\n\n", n-perInvariant, inv)
		}
	}
	fmt.Fprintf(&b, "## End state (%d problems)\n\n", len(r.problems))
	for _, p := range r.problems {
		fmt.Fprintf(&b, "- %s\n", p)
	}
	if len(r.panics) > 0 {
		b.WriteString("\n## Controller panics\n\n")
		for _, p := range r.panics {
			fmt.Fprintf(&b, "```\n%s\n```\n", p)
		}
	}
	return b.String()
}

func (r report) write(dir string) (string, error) {
	path := filepath.Join(dir, "summary.md")
	return path, os.WriteFile(path, []byte(r.markdown()), 0o644)
}
