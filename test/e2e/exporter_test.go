//go:build e2e

package e2e

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/test/testenv"
	"github.com/kubeseed/rollouts/test/trafficsim"
)

// trafficExporter is the traffic simulator (test/trafficsim) the tests
// share: it stands in for the application the simulated pods don't run,
// serving each test's namespace with the error shares and latencies the
// test sets per image, on a free local port (addr, host:port).
type trafficExporter struct {
	addr  string
	table *trafficsim.Table
}

// startTrafficExporter runs the simulator on the cluster until the test
// ends.
func startTrafficExporter(t *testing.T) *trafficExporter {
	t.Helper()
	// The pod cache logs through controller-runtime's logger, which
	// otherwise complains that it was never set.
	ctrllog.SetLogger(logr.Discard())
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	table := &trafficsim.Table{}
	sim, err := trafficsim.New(cfg, table)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sim.Wait()
	})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := sim.Serve(ctx, l); err != nil {
			t.Errorf("traffic exporter: %v", err)
		}
	})
	return &trafficExporter{addr: l.Addr().String(), table: table}
}

// serve makes the Ready pods of ns answer requests, all successfully until
// setErrorShare says otherwise, until the test ends.
func (e *trafficExporter) serve(t *testing.T, ns string) {
	e.table.Serve(ns)
	t.Cleanup(func() { e.table.Forget(ns) })
}

// setErrorShare makes the pods of image in ns answer this share of their
// requests with 500 from the next tick on.
func (e *trafficExporter) setErrorShare(ns, image string, share float64) {
	e.table.SetErrorShare(ns, image, share)
}

// setLatency makes the pods of image in ns report latencies normally
// distributed around mean seconds from the next tick on.
func (e *trafficExporter) setLatency(ns, image string, mean float64) {
	e.table.SetLatency(ns, image, mean)
}

// trafficCase is a subtest that needs the traffic exporter and a Prometheus
// scraping it (its address is the third argument).
type trafficCase struct {
	name string
	run  func(t *testing.T, exp *trafficExporter, prometheus string)
}

// withTraffic starts one exporter and one Prometheus for the cases and runs
// them as parallel subtests; series carry each case's namespace.
func withTraffic(t *testing.T, cases ...trafficCase) {
	t.Helper()
	exp := startTrafficExporter(t)
	prom := testenv.StartPrometheus(t, exp.addr)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, exp, prom)
		})
	}
}
