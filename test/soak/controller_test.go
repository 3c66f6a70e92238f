//go:build soak

package soak

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
)

// supervisor runs bin/rollouts through the API proxy, with the e2e
// controller's flags (kwok.ControllerArgs), SIGKILLs it at the
// moments of the kill plan and starts it again at once. It also restarts a
// controller that exited by itself (counted: with the faults, losing the
// leader Lease is one way), and reports one that panicked.
type supervisor struct {
	cl         *kwok.Cluster
	kubeconfig string
	tally      *tally

	mu      sync.Mutex
	ctl     *kwok.Controller
	started int
	killed  bool // the current process was killed by the soak
	panics  []string
}

func (s *supervisor) start() error {
	s.mu.Lock()
	s.started++
	name := fmt.Sprintf("controller-%03d", s.started)
	s.mu.Unlock()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var ctl *kwok.Controller
		if ctl, err = s.cl.StartController(name, s.kubeconfig, kwok.ControllerArgs()...); err == nil {
			s.mu.Lock()
			s.ctl, s.killed = ctl, false
			s.mu.Unlock()
			return nil
		}
		name = fmt.Sprintf("%s-retry%d", name, attempt+1)
	}
	return err
}

// kill SIGKILLs the running controller.
func (s *supervisor) kill() {
	s.mu.Lock()
	ctl := s.ctl
	s.killed = true
	s.mu.Unlock()
	_ = ctl.Kill()
	s.tally.inc(faultKills)
}

// run carries out the kill plan (offsets from start) and watches for exits
// of its own, until the plan is done and ctx has ended. The controller is
// running when it returns.
func (s *supervisor) run(ctx context.Context, start time.Time, plan []time.Duration, logf func(string, ...any)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Once the schedule is over, the rest of the plan is still carried
	// out: every planned kill happens while the faults are on.
	done := ctx.Done()
	for len(plan) > 0 || done != nil {
		var next <-chan time.Time
		if len(plan) > 0 {
			next = time.After(time.Until(start.Add(plan[0])))
		}
		select {
		case <-next:
			plan = plan[1:]
			s.kill()
			s.restart(logf)
		case <-tick.C:
			s.checkExit(logf)
		case <-done:
			done = nil
		}
	}
}

func (s *supervisor) restart(logf func(string, ...any)) {
	for {
		err := s.start()
		if err == nil {
			return
		}
		logf("controller did not start: %v", err)
		time.Sleep(5 * time.Second)
	}
}

// checkExit restarts a controller that exited without being killed.
func (s *supervisor) checkExit(logf func(string, ...any)) {
	s.mu.Lock()
	ctl, killed := s.ctl, s.killed
	s.mu.Unlock()
	if killed || ctl.Exited() == nil {
		return
	}
	s.tally.inc(faultSelfExits)
	log := ctl.Log()
	if i := strings.Index(log, "panic:"); i >= 0 {
		s.mu.Lock()
		s.panics = append(s.panics, fmt.Sprintf("%s: %s", ctl.LogPath, firstLines(log[i:], 20)))
		s.mu.Unlock()
	}
	logf("controller exited by itself (%v); log %s; restarting", ctl.Exited(), ctl.LogPath)
	s.restart(logf)
}

func (s *supervisor) stop() {
	s.mu.Lock()
	ctl := s.ctl
	s.mu.Unlock()
	if ctl != nil {
		if err := ctl.Stop(40 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "soak: controller did not stop cleanly: %v\n", err)
		}
	}
}

// killPlan is when the controller is killed: cfg.kills() moments, one
// drawn uniformly in each of as many equal slices of the duration, so that
// the kills are random but spread over the whole run.
func killPlan(cfg config) []time.Duration {
	r := cfg.rng(streamKills)
	n := cfg.kills()
	slot := cfg.duration / time.Duration(n)
	plan := make([]time.Duration, n)
	for i := range plan {
		plan[i] = time.Duration(i)*slot + uniform(r, 0, slot)
	}
	return plan
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
