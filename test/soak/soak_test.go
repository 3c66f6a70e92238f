//go:build soak

// Package soak is a seeded chaos soak of the controller binary (make soak):
// a fleet of Rollouts on a local kwok cluster — canaries without routing,
// canaries routed through Gateway API with a web analysis step, blue-greens
// with a Prometheus pre-promotion analysis — each driven through updates,
// promotes, aborts, retries and rollbacks drawn from a seed, while the
// controller is SIGKILLed and restarted, its API connection goes through a
// proxy that drops watches, refuses writes, delays requests and cuts
// connections, and the metric endpoints go away for windows. A watcher with
// its own connection checks the invariants of DESIGN.md at every event; at
// the end every Rollout must be in the state its schedule implies.
//
// Knobs (environment): SOAK_SEED, SOAK_DURATION (default 20m),
// SOAK_ROLLOUTS (default 50), SOAK_WRITE_FAULTS (share of the controller's
// writes refused, default 0.05), SOAK_DELAY_SHARE (share of its other
// requests delayed, default 0.1), SOAK_WATCH_LIFE (mean life of a watch,
// default 30s), SOAK_CUT_EVERY (mean time between connection cuts, default
// 45s), SOAK_SETTLE (bound of the end-state wait, default 5m).
package soak

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/dataplane"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/loopback"
	"github.com/kubeseed/rollouts/test/testenv"
)

// podsPerNode is what a kwok node holds; a Rollout of the fleet has at
// most 5 replicas in up to 3 ReplicaSets at a time.
const podsPerNode = 110

func TestSoak(t *testing.T) {
	ctrllog.SetLogger(logr.Discard())
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d; replay with: %s", cfg.seed, cfg.replay())
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration+45*time.Minute)
	defer cancel()
	// make soak runs go test without -timeout, as the duration varies: this
	// is the same last resort, a crash with every goroutine's stack.
	watchdog := time.AfterFunc(cfg.duration+time.Hour, func() { panic(fmt.Sprintf("soak: still running after %s (seed %d)", cfg.duration+time.Hour, cfg.seed)) })
	defer watchdog.Stop()

	root := testenv.RepoRoot()
	out := filepath.Join(root, "bin", "soak")
	// The logs of the last run only.
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d; replay with: %s (logs in %s)", cfg.seed, cfg.replay(), out)
		}
	})
	fleet := newFleet(cfg)
	if err := os.WriteFile(filepath.Join(out, "plan.txt"), []byte(plan(cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := max(3, (cfg.rollouts*15+podsPerNode-1)/podsPerNode+1)
	// The pod simulator serves the cluster's pods on their addresses:
	// this process's block, which no test running beside may take.
	block, err := loopback.ClaimFree()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kwok.Up(root, "soak", filepath.Join(out, "cluster"), kwok.Options{Nodes: nodes, DisableQPSLimits: true, Loopback: block})
	if err != nil {
		block.Release()
		t.Fatal(err)
	}
	defer cl.Down()
	// The cluster runs no EndpointSlice controller (its pods' IPs are
	// loopback addresses): the pod simulator publishes the Services'
	// endpoints, which the controller reads before it gives a canary
	// traffic, and answers on every pod's address.
	pods, err := dataplane.StartPods(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		pods.Stop()
		if err := pods.Err(); err != nil {
			t.Errorf("pod simulator (log %s): %v", pods.LogPath, err)
		}
	}()
	crds, err := testenv.RouterCRDPaths()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Install(ctx, crds...); err != nil {
		t.Fatal(err)
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	restCfg.Dial, restCfg.QPS, restCfg.Burst = dialLoopback, 500, 1000
	admin, err := client.New(restCfg, client.Options{Scheme: apis.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	tl := newTally()
	w := newWatcher(fleet, tl)
	if err := w.start(ctx, rest.CopyConfig(restCfg)); err != nil {
		t.Fatal(err)
	}

	// The metric endpoints, each behind a gate the outages close.
	promURL, err := url.Parse(testenv.StartPrometheus(t))
	if err != nil {
		t.Fatal(err)
	}
	promGate, err := newGate(promURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	webAddr, stopWeb, err := webMetric(tl)
	if err != nil {
		t.Fatal(err)
	}
	defer stopWeb()
	webGate, err := newGate(webAddr)
	if err != nil {
		t.Fatal(err)
	}

	// The controller, through the fault proxy, as its ServiceAccount.
	proxy, err := newAPIProxy(cfg, tl, cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.close()
	token, err := cl.Token(kwok.ControllerNamespace, kwok.ControllerServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(out, "cluster", "kubeconfig-controller-via-proxy")
	if err := proxy.kubeconfig(kubeconfig, token); err != nil {
		t.Fatal(err)
	}
	sup := &supervisor{cl: cl, kubeconfig: kubeconfig, tally: tl}
	if err := sup.start(); err != nil {
		t.Fatal(err)
	}
	defer sup.stop()

	if err := createFleet(ctx, admin, fleet, webGate.url(), promGate.url()); err != nil {
		t.Fatal(err)
	}
	if err := allHealthy(ctx, w, fleet, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Rollouts Healthy on %d nodes after %s; chaos for %s", len(fleet), nodes, time.Since(began).Round(time.Second), cfg.duration)

	// The schedule and the faults.
	cli := &cliRunner{kubeconfig: cl.Kubeconfig}
	drivers := make([]*driver, len(fleet))
	for i, m := range fleet {
		drivers[i] = newDriver(m, newSchedule(m, cfg, streamSchedule+uint64(i)), w, cli, admin, tl, t.Logf)
	}
	start := time.Now()
	chaos, stopChaos := context.WithCancel(ctx)
	proxy.arm(true)
	var faults sync.WaitGroup
	faults.Add(3)
	go func() { defer faults.Done(); sup.run(chaos, start, killPlan(cfg), t.Logf) }()
	go func() {
		defer faults.Done()
		promGate.outages(chaos, cfg, streamPrometheusOutages, tl, faultPromWindows)
	}()
	go func() { defer faults.Done(); webGate.outages(chaos, cfg, streamWebOutages, tl, faultWebWindows) }()
	go progress(chaos, t, tl, start)
	var play sync.WaitGroup
	for _, d := range drivers {
		play.Add(1)
		go func() { defer play.Done(); d.play(ctx, start.Add(cfg.duration)) }()
	}
	play.Wait()
	stopChaos()
	faults.Wait()
	proxy.arm(false)
	t.Logf("schedule done after %s; faults off; settling (up to %s)", time.Since(start).Round(time.Second), cfg.settle)

	problems := settle(ctx, drivers, w, admin, cfg.settle)
	w.flush()
	tl.add(faultMeasureErrors, w.measurementErrors())
	w.mu.Lock()
	violations := slices.Clone(w.violations)
	w.mu.Unlock()
	sup.mu.Lock()
	panics := slices.Clone(sup.panics)
	sup.mu.Unlock()
	rep := report{cfg: cfg, elapsed: time.Since(began), tally: tl, violations: violations, problems: problems, panics: panics}
	path, err := rep.write(out)
	if err != nil {
		t.Error(err)
	}
	t.Logf("summary in %s:\n%s", path, rep.markdown())
	if kills := tl.get(faultKills); kills < cfg.kills() {
		t.Errorf("the controller was killed %d times, the plan says %d", kills, cfg.kills())
	}
	if !rep.passed() {
		t.Errorf("%d invariant violations, %d end-state problems, %d controller panics (seed %d; replay: %s)", len(violations), len(problems), len(panics), cfg.seed, cfg.replay())
	}
}

// allHealthy waits for the first deploy of every Rollout.
func allHealthy(ctx context.Context, w *watcher, fleet []*member, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(context.Context) (bool, error) {
		for _, m := range fleet {
			ro := w.rollout(m.key)
			if ro == nil || ro.Status.Phase != v1alpha1.RolloutPhaseHealthy || ro.Status.StableRS == "" {
				last = fmt.Sprintf("%s: %s", m.key, summarize(ro))
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the fleet's first deploy: %w; last: %s", err, last)
	}
	return nil
}

// progress logs a line of counts every half minute.
func progress(ctx context.Context, t *testing.T, tl *tally, start time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
		t.Logf("%s: %d updates, %d kills, %d dropped watches, %d refused writes, %d cut connections, %d metric outages, %d checks, %d violations",
			time.Since(start).Round(time.Second), tl.get("schedule: updates"), tl.get(faultKills), tl.get(faultDroppedWatches),
			tl.get(fault409)+tl.get(fault500)+tl.get(fault503), tl.get(faultCuts), tl.get(faultPromWindows)+tl.get(faultWebWindows),
			tl.get("checks: "+invSurge)+tl.get("checks: "+invAvailability)+tl.get("checks: "+invWeight)+tl.get("checks: "+invPromotion)+tl.get("checks: "+invReplicaSets),
			violationsTotal(tl))
	}
}

func violationsTotal(tl *tally) int {
	n := 0
	for _, inv := range invariantOrder {
		n += tl.get("violations: " + inv)
	}
	return n
}
