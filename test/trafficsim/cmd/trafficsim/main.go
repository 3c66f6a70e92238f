// Command trafficsim makes the pods of a cluster whose nodes run no
// containers (kwok) answer simulated requests, and serves the counts on
// /metrics for a Prometheus to scrape, so that analysis has something to
// measure. See package trafficsim for the series; make demo runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/test/trafficsim"
)

const usage = `Usage: trafficsim [flags]

Every Ready pod answers 100 requests a second; rules make the pods of some
images fail a share of them or report a latency. The first rule whose tag
pattern matches an image's tag applies; other images answer every request.

  trafficsim --listen 127.0.0.1:18092 --rule '*bad*:errors=30%' --rule '*:errors=1%'

Flags:
`

func main() {
	var (
		kubeconfig string
		listen     string
		profile    trafficsim.Rules
	)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig (default: $KUBECONFIG, then ~/.kube/config).")
	flag.StringVar(&listen, "listen", "127.0.0.1:9464", "host:port of the /metrics endpoint.")
	flag.Func("rule", "A `RULE`, PATTERN:errors=SHARE,latency=DURATION, for the images whose tag matches PATTERN, e.g. '*bad*:errors=30%' (repeatable; the first match applies).", func(s string) error {
		r, err := trafficsim.ParseRule(s)
		if err != nil {
			return err
		}
		profile.Rules = append(profile.Rules, r)
		return nil
	})
	flag.Func("namespace", "Serve only this `NAMESPACE` (repeatable; default: all).", func(s string) error {
		profile.Namespaces = append(profile.Namespaces, s)
		return nil
	})
	flag.Usage = func() {
		_, _ = fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	if err := run(kubeconfig, listen, profile); err != nil {
		fmt.Fprintln(os.Stderr, "trafficsim:", err)
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM.
func run(kubeconfig, listen string, profile trafficsim.Rules) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return err
	}
	// The pod cache logs through controller-runtime's logger; its errors
	// (an unreachable API server) show as a failed sync here.
	ctrllog.SetLogger(logr.Discard())
	sim, err := trafficsim.New(cfg, profile)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		sim.Wait()
	}()
	if err := sim.Start(ctx); err != nil {
		_ = l.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "trafficsim: serving http://%s/metrics for pods of %s; rules: %s\n",
		l.Addr(), namespaces(profile.Namespaces), describe(profile.Rules))
	return sim.Serve(ctx, l)
}

func namespaces(ns []string) string {
	if len(ns) == 0 {
		return "all namespaces"
	}
	return strings.Join(ns, ", ")
}

func describe(rules []trafficsim.Rule) string {
	if len(rules) == 0 {
		return "none (every request succeeds)"
	}
	var parts []string
	for _, r := range rules {
		parts = append(parts, fmt.Sprintf("%s → %g %% errors", r.Tag, 100*r.ErrorShare))
		if r.MeanLatency > 0 {
			parts[len(parts)-1] += fmt.Sprintf(", %gs latency", r.MeanLatency)
		}
	}
	return strings.Join(parts, "; ")
}
