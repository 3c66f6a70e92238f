//go:build soak

package soak

import (
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"
)

// A schedule is what happens to one Rollout: updates (new images), each
// followed by a few requests at random moments and an ending. It is drawn
// from the seed alone, before the run; which of its updates fit into the
// duration depends on how fast the cluster goes.
type schedule struct {
	// updates are released one after the other while the run lasts.
	updates []update
	// final is released once the duration is over; its outcome is the
	// Rollout's expected end state.
	final update
}

type update struct {
	// think is the pause before the update.
	think time.Duration
	// bad releases fail their analysis (verdictBad); only Rollouts with an
	// analysis get them.
	bad bool
	// actions are requests made while the update runs, at random moments:
	// they may come before the controller has seen the update, in the
	// middle of a step or of an analysis, and the CLI may refuse them.
	actions []action
	// cycles (final update only): how often the update is aborted and
	// retried (a bad one: retried) before its ending.
	cycles int
	ending ending
}

type action struct {
	after time.Duration
	kind  request
}

// request is a request the CLI makes.
type request string

const (
	requestPromote     request = "promote"
	requestPromoteFull request = "promote-full"
	requestAbort       request = "abort"
	requestRetry       request = "retry"
)

// ending is how an update ends.
type ending string

const (
	// endSupersede: the next update comes at once, over the unfinished one.
	endSupersede ending = "supersede"
	// endComplete: promoted to the end, Healthy on the new image.
	endComplete ending = "complete"
	// endCompleteFull: promote --full, Healthy on the new image.
	endCompleteFull ending = "complete-full"
	// endAbort: aborted (a bad release: by its analysis), Degraded.
	endAbort ending = "abort"
	// endRollback: the template goes back to the stable image, Healthy.
	endRollback ending = "rollback"
)

// newSchedule draws the schedule of one Rollout. The intermediate updates
// carry the chaos: requests at random moments, superseding updates,
// rollbacks. Their requests are bounded so that an update can never be
// completed by accident — at most one promote, and the canaries end with
// two indefinite pauses; blue-green gets no promote, as one would complete
// it — so the stable image is always the one the schedule completed last.
// The final update is orderly: each request waits for the state it needs,
// so its outcome, and the number of analysis runs it makes, are known.
func newSchedule(m *member, cfg config, stream uint64) schedule {
	r := cfg.rng(stream)
	analysed := m.strategy != strategyCanary
	var s schedule
	// Enough updates for the run even if the cluster were fast: an update
	// takes at least ~15 s.
	for planned := time.Duration(0); planned < cfg.duration && len(s.updates) < 200; {
		u := update{think: uniform(r, 3*time.Second, 25*time.Second), bad: analysed && r.Float64() < 0.2}
		promotes := 0
		for range r.IntN(4) {
			a := action{after: uniform(r, 0, 8*time.Second)}
			switch k := r.IntN(3); {
			case k == 0 && !u.bad && m.strategy != strategyBlueGreen && promotes == 0:
				a.kind, promotes = requestPromote, 1
			case k <= 1:
				a.kind = requestAbort
			default:
				a.kind = requestRetry
			}
			u.actions = append(u.actions, a)
			planned += a.after
		}
		u.ending = pick(r, []ending{endSupersede, endComplete, endAbort, endRollback}, []float64{0.3, 0.35, 0.2, 0.15})
		if u.bad && u.ending == endComplete {
			// Completing a failing release would race promote --full
			// against its analysis.
			u.ending = endAbort
		}
		s.updates = append(s.updates, u)
		planned += u.think + 15*time.Second
	}
	f := update{think: uniform(r, 1*time.Second, 5*time.Second), bad: analysed && r.Float64() < 0.25, cycles: r.IntN(2)}
	if f.bad {
		f.ending = pick(r, []ending{endAbort, endRollback}, []float64{0.7, 0.3})
	} else {
		f.ending = pick(r, []ending{endComplete, endCompleteFull, endAbort, endRollback}, []float64{0.3, 0.2, 0.3, 0.2})
	}
	s.final = f
	return s
}

// plan renders everything a seed decides before the run; the soak writes
// it to bin/soak/plan.txt, so two runs of one seed can be compared.
func plan(cfg config) string {
	out := fmt.Sprintf("kills %v\n", killPlan(cfg))
	for i, m := range newFleet(cfg) {
		s := newSchedule(m, cfg, streamSchedule+uint64(i))
		preview := "-"
		if m.previewReplicas != nil {
			preview = fmt.Sprint(*m.previewReplicas)
		}
		out += fmt.Sprintf("%s %s replicas=%d surge=%s unavailable=%s weight=%d minPods=%d preview=%s\n",
			m.key, m.strategy, m.replicas, m.maxSurge.String(), m.maxUnavailable.String(), m.maxWeight, m.minPods, preview)
		for _, u := range s.updates {
			out += "  " + u.String() + "\n"
		}
		out += "  final: " + s.final.String() + "\n"
	}
	return out
}

func pick[T any](r *mrand.Rand, items []T, weights []float64) T {
	x := r.Float64()
	for i, w := range weights {
		if x < w {
			return items[i]
		}
		x -= w
	}
	return items[len(items)-1]
}

func (u update) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %s", u.think.Round(time.Second))
	if u.bad {
		b.WriteString(", failing analysis")
	}
	for _, a := range u.actions {
		fmt.Fprintf(&b, ", %s after %s", a.kind, a.after.Round(100*time.Millisecond))
	}
	if u.cycles > 0 {
		fmt.Fprintf(&b, ", %d abort/retry cycle(s)", u.cycles)
	}
	fmt.Fprintf(&b, ", then %s", u.ending)
	return b.String()
}
