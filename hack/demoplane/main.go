// Command demoplane is the data plane of make demo (hack/demo.sh): the pod
// simulator (test/podsim), which makes every Running pod of the demo's kwok
// cluster answer HTTP on its loopback IP; Traefik (test/kwok.StartTraefik)
// with a Gateway of class traefik on a fixed port; and a steady load
// (test/load) through that Gateway to the demo's host. Every few seconds it
// logs which images answered the requests and how many failed, until
// SIGINT or SIGTERM.
//
// Its pods' addresses must be its own (test/loopback), so it claims a
// loopback block before the cluster exists, writes the block's number to
// --block-file for the cluster to be started on it (cluster.sh's
// LOOPBACK_BLOCK), and waits for --kubeconfig to appear: the demo writes it
// once the cluster is up. It holds the block until it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kubeseed/rollouts/test/dataplane"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/loopback"
	"github.com/kubeseed/rollouts/test/podsim"
)

const usage = `Usage: demoplane --kubeconfig FILE --block-file FILE [flags]

Serves the pods of the demo cluster, runs Traefik and sends a steady load
through it until SIGINT or SIGTERM. Logs to stdout; Traefik, its access log
(failed requests only) and the pod simulator log to files in --state.

Flags:
`

type options struct {
	root, state, kubeconfig, blockFile string
	web, metrics, api                  int
	namespace, gateway, host           string
	rate                               float64
	every, wait                        time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "The repository: Traefik and kubectl are in `DIR`/bin.")
	flag.StringVar(&o.state, "state", "bin/demo", "`DIR` of the logs.")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "The cluster-admin kubeconfig `FILE` of the cluster, waited for.")
	flag.StringVar(&o.blockFile, "block-file", "", "Where to write the `N` of the claimed loopback block 127.N.0.0/16.")
	flag.IntVar(&o.web, "traefik-port", 18092, "Traefik's entrypoint web on 127.0.0.1, the Gateway's listener.")
	flag.IntVar(&o.metrics, "traefik-metrics-port", 18094, "Traefik's Prometheus metrics (/metrics) on 127.0.0.1.")
	flag.IntVar(&o.api, "traefik-api-port", 18095, "Traefik's /ping and API on 127.0.0.1.")
	flag.StringVar(&o.namespace, "namespace", "default", "`NAMESPACE` of the Gateway.")
	flag.StringVar(&o.gateway, "gateway", "edge", "`NAME` of the Gateway of class traefik.")
	flag.StringVar(&o.host, "host", "web.example", "The Host header of the load's requests.")
	flag.Float64Var(&o.rate, "rate", 40, "Requests per second.")
	flag.DurationVar(&o.every, "every", 5*time.Second, "How often to log the split.")
	flag.DurationVar(&o.wait, "wait", 5*time.Minute, "How long to wait for --kubeconfig.")
	flag.Usage = func() {
		_, _ = fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || o.kubeconfig == "" || o.blockFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(log.Ltime)
	log.SetOutput(os.Stdout)
	if err := run(o); err != nil {
		log.Print("demoplane: ", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM, or until a part of the data plane
// fails.
func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	block, err := loopback.ClaimFree()
	if err != nil {
		return err
	}
	defer block.Release()
	if err := os.WriteFile(o.blockFile, fmt.Appendf(nil, "%d\n", block.N), 0o600); err != nil {
		return err
	}
	log.Printf("Claimed the loopback block %s; waiting for the cluster's kubeconfig %s", block.Prefix(), o.kubeconfig)
	if err := waitForFile(ctx, o.kubeconfig, o.wait); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	cl, err := kwok.Attach(o.root, "demo", o.kubeconfig, o.state, block)
	if err != nil {
		return err
	}

	pods, err := dataplane.StartPods(cl)
	if err != nil {
		return err
	}
	defer pods.Stop()
	tr, err := cl.StartTraefikWith("traefik", kwok.TraefikOptions{
		WebPort: o.web, MetricsPort: o.metrics, APIPort: o.api,
		// The demo runs for as long as its user likes: only failed
		// requests are worth a line each.
		AccessLogStatusCodes: "400-599",
	})
	if err != nil {
		return err
	}
	// make demo-down stops a Traefik its demoplane left behind by this.
	pidFile := filepath.Join(o.state, "traefik.pid")
	defer func() {
		_ = tr.Stop(10 * time.Second)
		_ = os.Remove(pidFile)
	}()
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n", tr.Cmd.Process.Pid), 0o600); err != nil {
		return err
	}
	if err := gateway(ctx, cl, tr, o); err != nil {
		return err
	}
	g, err := load.Start(ctx, load.Target{URL: tr.Web + "/", Host: o.host}, load.Options{Rate: o.rate})
	if err != nil {
		return err
	}
	defer g.Stop()
	log.Printf("Data plane ready: Traefik on %s (metrics %s, log %s), Gateway %s/%s, %g requests/s with Host %s",
		tr.Web, tr.Metrics, tr.LogPath, o.namespace, o.gateway, o.rate, o.host)
	return report(ctx, o.every, g, tr, pods.Simulator)
}

// waitForFile waits until path exists, for at most timeout or until ctx
// ends.
func waitForFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// gateway creates the Gateway and waits until Traefik has programmed it.
func gateway(ctx context.Context, cl *kwok.Cluster, tr *kwok.Traefik, o options) error {
	if _, err := cl.Kubectl(ctx, tr.GatewayYAML(o.gateway), "-n", o.namespace, "apply", "--server-side", "-f", "-"); err != nil {
		return err
	}
	if _, err := cl.Kubectl(ctx, "", "-n", o.namespace, "wait", "--for=condition=Programmed", "gateway/"+o.gateway, "--timeout=60s"); err != nil {
		return fmt.Errorf("%w\ntraefik log %s:\n%s", err, tr.LogPath, tr.Log())
	}
	return nil
}

// report logs the split of the load every period until ctx ends; it fails
// when Traefik exits, and logs each new problem of the pod simulator (a
// pod it refused to serve).
func report(ctx context.Context, every time.Duration, g *load.Generator, tr *kwok.Traefik, pods *podsim.Simulator) error {
	t := time.NewTicker(every)
	defer t.Stop()
	reported := ""
	for {
		select {
		case <-ctx.Done():
			log.Print("Stopping")
			return nil
		case <-t.C:
		}
		log.Print(split(every, g.Take()))
		if err := tr.Exited(); err != nil {
			return fmt.Errorf("%w; log %s", err, tr.LogPath)
		}
		if err := pods.Err(); err != nil && err.Error() != reported {
			reported = err.Error()
			log.Printf("pod simulator: %v", err)
		}
	}
}
