//go:build bench

// Package scale benchmarks the controller binary on a local kwok cluster
// whose control plane has no client rate limits: many Rollouts created and
// updated at once (scale_test.go), the latencies of one Rollout
// (latency_test.go), and the dashboard over many Rollouts in headless
// chromium (dashboard_test.go). A load generator with its own high-QPS client times
// everything from watch events; the controller's CPU and memory come from
// /proc and its API requests from its own rest_client_requests_total.
//
// Knobs (environment): BENCH_SCALE, the Rollout counts (default
// 100,1000,5000); BENCH_REPS, repetitions of each count (default 3);
// BENCH_TRIALS, iterations of each latency scenario (default 10);
// BENCH_DASHBOARD_ROLLOUTS, the Rollouts the dashboard shows (default 1000);
// BENCH_CONTROLLER_ARGS, extra flags for the controller.
package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/test/bench"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/testenv"
)

var (
	cl     *kwok.Cluster
	config *rest.Config
	k8s    client.Client
	// report collects the results; publish rewrites bin/bench/scale.* after
	// each scenario.
	report = bench.NewReport(time.Now())
)

// podsPerNode is what a kwok node holds.
const podsPerNode = 110

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard())
	root := testenv.RepoRoot()
	name := fmt.Sprintf("bench-%d", os.Getpid())
	// During an update a Rollout of 2 replicas has 3 pods (one surge).
	rollouts := max(slices.Max(scales()), dashboardRollouts())
	nodes := max(32, (3*rollouts+podsPerNode-1)/podsPerNode+2)
	start := time.Now()
	var err error
	cl, err = kwok.Up(root, name, filepath.Join(root, "bin", "bench", name), kwok.Options{Nodes: nodes, DisableQPSLimits: true, ProfileControllerManager: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer cl.Down()
	fmt.Fprintf(os.Stderr, "bench: cluster %s with %d nodes up in %s\n", name, nodes, time.Since(start).Round(time.Second))
	ctx := context.Background()
	if _, err := cl.Kubectl(ctx, "", "apply", "--server-side", "-k", "manifests/crds"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: installing CRDs:", err)
		return 1
	}
	if _, err := cl.Kubectl(ctx, "", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	config, err = clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	// The load generator must never be what limits the run.
	config.QPS, config.Burst = 5000, 10000
	if k8s, err = client.New(config, client.Options{Scheme: apis.NewScheme()}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return m.Run()
}

// scales are the Rollout counts of the scale scenario.
func scales() []int {
	var out []int
	for _, f := range strings.Split(envOr("BENCH_SCALE", "100,1000,5000"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = []int{100}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// startController runs the controller binary as cluster-admin with its
// default settings (info logging, but plain HTTP /metrics, which the
// benchmark scrapes), plus BENCH_CONTROLLER_ARGS.
func startController(tb testing.TB, name string) *kwok.Controller {
	tb.Helper()
	args := append([]string{"--zap-log-level=info", "--metrics-secure=false"}, strings.Fields(os.Getenv("BENCH_CONTROLLER_ARGS"))...)
	ctl, err := cl.StartController(name, cl.Kubeconfig, args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ctl.Stop(30 * time.Second) })
	return ctl
}

// publish adds a result to bin/bench/scale.{json,md} (Report.Publish).
func publish(b *testing.B, res bench.Result) {
	b.Helper()
	report.Publish(b, res, filepath.Join(cl.Root, "bin", "bench"), "scale")
}
