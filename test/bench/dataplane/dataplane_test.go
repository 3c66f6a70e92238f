//go:build bench

// Package dataplane benchmarks the real data plane (DESIGN §15): how long a
// weight the controller writes into an HTTPRoute takes to show in the split
// of real requests through Traefik, the Gateway API implementation of the
// tests, on a local kwok cluster whose pods answer on loopback addresses
// (test/podsim).
//
// Knob (environment): BENCH_DATAPLANE_UPDATES, the canary updates (default
// 2), each of which makes len(stepWeights) weight changes.
package dataplane

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
	"github.com/kubeseed/rollouts/test/dataplane"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/loopback"
	"github.com/kubeseed/rollouts/test/testenv"
)

// How the split is measured. Traefik's weighted round robin is smooth: of
// any 100 consecutive requests, a backend of weight w gets w, give or take
// one. So the split has reached weight w at the start of the first request
// after the write from which every window of splitWindow consecutive
// requests has the canary answering w ± splitTolerance of them, for at
// least splitHold requests. At splitRate a request starts every 5 ms, the
// resolution of the measurement.
const (
	splitRate      = 200
	splitWindow    = 100
	splitTolerance = 0.02
	splitHold      = 400
)

// stepWeights are the canary's weights in each update, each step paused for
// stepPause: the route holds a weight that long, longer than the split
// takes to reach it and hold it for splitHold requests.
var stepWeights = []int{10, 25, 50, 90}

const (
	stepPause = 10 * time.Second
	replicas  = 4
	// recorded is how long a request may take to be recorded: the split is
	// read from requests that started at least this long ago.
	recorded = 500 * time.Millisecond
)

// BenchmarkDataPlaneTimeToEffect: under a steady load through Traefik, the
// controller takes a routed canary through its weights, update after
// update, and each weight it writes into the HTTPRoute is timed from the
// write — the arrival of the route's watch event at the benchmark, which
// watches the route as Traefik does — to the measured split reaching it
// ("controller write → split"). Before, the benchmark writes the weights
// of a route of its own, with nothing else changing, and times each from
// the patch ("route patched → split"): Traefik's part alone.
func BenchmarkDataPlaneTimeToEffect(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	cl, tr := startDataPlane(b)
	config, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	k8s, err := client.NewWithWatch(config, client.Options{Scheme: apis.NewScheme()})
	if err != nil {
		b.Fatal(err)
	}
	ns := "time-to-effect"
	cl.MustKubectl(b, "", "create", "namespace", ns)
	var steps []string
	for _, w := range stepWeights {
		steps = append(steps, fmt.Sprintf("{setWeight: %d}", w), fmt.Sprintf("{pause: {duration: %s}}", stepPause))
	}
	target, err := dataplane.RoutedApp(context.Background(), cl, tr, ns, kwok.RoutedCanaryRolloutYAML(replicas, "[]", "["+strings.Join(steps, ", ")+"]"))
	if err != nil {
		b.Fatal(err)
	}
	stable := waitHealthy(b, k8s, ns, "")
	waitRouted(b, target, stable, 1)
	direct := installDirect(b, cl, tr, k8s, ns)
	m := &measurement{k8s: k8s, ns: ns, route: watchRoute(b, k8s, ns, "web", "web-canary")}

	updates := envInt("BENCH_DATAPLANE_UPDATES", 2)
	for b.Loop() {
		// First, while nothing else changes: the controller's updates
		// leave pods going for a while after.
		direct.measure(b, tr)
		if m.load, err = load.Start(context.Background(), target, load.Options{Rate: splitRate}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.load.Stop() })
		for n := range updates {
			stable = m.update(b, n+1, stable)
		}
		checkLoad(b, m.load.Stop(), target, tr)
	}
	report, dir := bench.NewReport(time.Now()), filepath.Join(cl.Root, "bin", "bench")
	report.Publish(b, m.result(updates), dir, "dataplane")
	report.Publish(b, direct.result(), dir, "dataplane")
}

// checkLoad fails the benchmark on failed requests: the split they
// measure would not be the route's.
func checkLoad(b *testing.B, rs load.Results, target load.Target, tr *kwok.Traefik) {
	b.Helper()
	if err := rs.Err(10); err != nil {
		b.Errorf("through %s with Host %s: %v\ntraefik access log %s", target.URL, target.Host, err, tr.AccessLog)
	}
}

// heldShare is the canary's share (%) of the requests that held a split,
// after the first window, which may hold some of the previous split's.
func heldShare(held load.Results, canary string) string {
	return fmt.Sprintf("%.1f of %d", 100*held[splitWindow:].Share(canary), len(held)-splitWindow)
}

// measurement is the benchmark's run: the Rollout web of ns, the route's
// writes, the load through Traefik, and what was measured so far.
type measurement struct {
	k8s   client.Client
	ns    string
	route *routeWatch
	load  *load.Generator

	took []float64
	rows [][]string
	// transient counts the writes of other weights between two steps'.
	transient int
}

// update makes the nth update of the Rollout, from revision stable to
// image web:n+1, times each of its weights, waits until it is Healthy and
// returns its new stable revision.
func (m *measurement) update(b *testing.B, n int, stable string) string {
	b.Helper()
	setImage(b, m.k8s, m.ns, fmt.Sprintf("web:%d", n+1))
	canary := waitCanary(b, m.k8s, m.ns, stable)
	from := 0
	for _, w := range stepWeights {
		wr, between := m.route.await(b, w, time.Minute)
		d, held := timeToEffect(b, m.load, canary, wr)
		m.took = append(m.took, bench.Millis(d))
		path := []string{strconv.Itoa(from)}
		for _, o := range between {
			path = append(path, fmt.Sprintf("%d (%s)", o.weight, o.at.Format("15:04:05.000")))
			m.transient++
		}
		m.rows = append(m.rows, []string{strconv.Itoa(n), strings.Join(append(path, strconv.Itoa(w)), " → "),
			wr.at.Format("15:04:05.000"), bench.FormatValue(bench.Millis(d)), heldShare(held, canary)})
		from = w
	}
	stable = waitHealthy(b, m.k8s, m.ns, canary)
	m.route.skip()
	return stable
}

func (m *measurement) result(updates int) bench.Result {
	s := bench.Summarize(m.took)
	return bench.Result{
		Name: "weight write → measured split (BenchmarkDataPlaneTimeToEffect)",
		Note: m.note(updates),
		Metrics: []bench.Metric{
			{Unit: "time-to-effect-p50-ms", Value: s.Median},
			{Unit: "time-to-effect-min-ms", Value: s.Min},
			{Unit: "time-to-effect-max-ms", Value: s.Max},
		},
		Columns: []string{"update", "canary weight written", "at", "split reached after (ms)", "canary % of the requests after the first window"},
		Rows:    m.rows,
	}
}

// note says how the numbers were measured.
func (m *measurement) note(updates int) string {
	// A window within splitTolerance of the new weight may still hold this
	// many requests of a split 10 points away (load.Results.Settled).
	early := int(splitWindow * splitTolerance / 0.10)
	return strings.Join([]string{
		"A write is the controller's update of the HTTPRoute's canary weight, timed at the arrival of the route's watch event at the benchmark",
		"(which watches the route as Traefik does). The split has reached weight w at the first request after the write from which every window",
		fmt.Sprintf("of %d consecutive requests (at %d req/s through Traefik) has w ± %.0f %% answered by the canary, for at least %d requests.",
			splitWindow, splitRate, 100*splitTolerance, splitHold),
		fmt.Sprintf("That first window may still hold requests of the previous split (up to %d, %d ms, for a change of 10 points): a time can be that much early.",
			early, early*1000/splitRate),
		fmt.Sprintf("Traefik's providersThrottleDuration is %s: a configuration that arrives within it of the previous one", kwok.TraefikProvidersThrottle),
		"(such as the canary pods' endpoints, written just before the weight) waits for its end.",
		fmt.Sprintf("%d weight changes of %d canary updates, each weight held for %s; on the way the controller wrote %d other weights",
			len(m.took), updates, stepPause, m.transient),
		"(listed with their times), whose splits are not measured.",
	}, " ")
}

// timeToEffect waits until the split of the requests sent after the write
// has reached its weight and held it for splitHold requests, and returns
// when it reached it, after the write, and the requests that held it. The
// route holds the weight for stepPause at least, so the requests of that
// time are the ones to read; a split that has not reached the weight
// within them fails the benchmark.
func timeToEffect(b *testing.B, gen *load.Generator, canary string, wr write) (time.Duration, load.Results) {
	b.Helper()
	share := float64(wr.weight) / 100
	end := wr.at.Add(stepPause)
	var rs load.Results
	for {
		seen := time.Now().Add(-recorded)
		rs = gen.Results().Between(wr.at, minTime(seen, end))
		if i, ok := rs.Settled(canary, share, splitTolerance, splitWindow); ok && len(rs)-i >= splitHold {
			return rs[i].Start.Sub(wr.at), rs[i:]
		}
		if !seen.Before(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var shares []string
	for i := 0; i+splitWindow <= len(rs); i += splitWindow {
		shares = append(shares, fmt.Sprintf("%.0f", 100*rs[i:i+splitWindow].Share(canary)))
	}
	b.Fatalf("weight %d written at %s: the canary %s did not answer %d ± %.0f %% of every %d requests for %d requests within %s; "+
		"its share (%%) of each %d requests since: %s",
		wr.weight, wr.at.Format("15:04:05.000"), canary, wr.weight, 100*splitTolerance, splitWindow, splitHold, stepPause,
		splitWindow, strings.Join(shares, " "))
	return 0, nil
}

// waitRouted waits until Traefik sends share of the route's requests to
// the pods of revision and the rest to other pods (none fails):
// Traefik learns of the pods' endpoints apart from the route, and up to
// its throttle later.
func waitRouted(b *testing.B, target load.Target, revision string, share float64) {
	b.Helper()
	var last load.Results
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		last, err = load.Send(ctx, target, load.Options{Rate: splitRate}, splitWindow)
		return err == nil && len(last.Failures()) == 0 && math.Abs(last.Share(revision)-share) <= splitTolerance, err
	})
	if err != nil {
		b.Fatalf("%.0f %% of the route's requests do not reach revision %s: %v; the last %d went to %v, %v",
			100*share, revision, err, splitWindow, last.ByRevision(), last.Err(3))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// startDataPlane brings up a kwok cluster whose pods answer on addresses of
// a loopback block of this process, the Rollout and Gateway API CRDs, the
// pod simulator, Traefik and the controller; everything stops when the
// benchmark ends, and what went wrong with the pod simulator or Traefik
// fails it.
func startDataPlane(b *testing.B) (*kwok.Cluster, *kwok.Traefik) {
	b.Helper()
	root := testenv.RepoRoot()
	block, err := loopback.ClaimFree()
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("dataplane-%d", os.Getpid())
	cl, err := kwok.Up(root, name, filepath.Join(root, "bin", "bench", name), kwok.Options{Nodes: 2, Loopback: block})
	if err != nil {
		block.Release()
		b.Fatal(err)
	}
	b.Cleanup(cl.Down)
	crds, err := testenv.RouterCRDPaths()
	if err != nil {
		b.Fatal(err)
	}
	if err := cl.Install(context.Background(), crds...); err != nil {
		b.Fatal(err)
	}
	pods, err := dataplane.StartPods(cl)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		pods.Stop()
		if err := pods.Err(); err != nil {
			b.Errorf("pod simulator (log %s): %v", pods.LogPath, err)
		}
	})
	tr, err := cl.StartTraefik("traefik")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := tr.Exited(); err != nil {
			b.Errorf("%v; log %s", err, tr.LogPath)
			return
		}
		_ = tr.Stop(10 * time.Second)
	})
	ctl, err := cl.StartController("controller", cl.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ctl.Stop(30 * time.Second) })
	return cl, tr
}

// setImage updates the Rollout web to image.
func setImage(b *testing.B, k8s client.Client, ns, image string) {
	b.Helper()
	ro := &v1alpha1.Rollout{}
	ro.Namespace, ro.Name = ns, "web"
	jsonPatch(b, k8s, ro, fmt.Sprintf(`[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": %q}]`, image))
}

// jsonPatch applies a JSON patch to obj and returns when the API server
// has taken it.
func jsonPatch(b *testing.B, k8s client.Client, obj client.Object, ops string) time.Time {
	b.Helper()
	if err := k8s.Patch(context.Background(), obj, client.RawPatch(types.JSONPatchType, []byte(ops))); err != nil {
		b.Fatal(err)
	}
	return time.Now()
}

// waitCanary waits until the Rollout web has a current revision other
// than stable and returns it.
func waitCanary(b *testing.B, k8s client.Client, ns, stable string) string {
	b.Helper()
	var canary string
	pollRollout(b, k8s, ns, "a new revision", func(ro *v1alpha1.Rollout) bool {
		canary = ro.Status.CurrentPodHash
		return canary != "" && canary != stable
	})
	return canary
}

// waitHealthy waits until the Rollout web is Healthy on a stable revision
// (revision, unless empty) and returns it.
func waitHealthy(b *testing.B, k8s client.Client, ns, revision string) string {
	b.Helper()
	var stable string
	pollRollout(b, k8s, ns, "Healthy", func(ro *v1alpha1.Rollout) bool {
		stable = ro.Status.StableRS
		return ro.Status.Phase == v1alpha1.RolloutPhaseHealthy && stable != "" && stable == ro.Status.CurrentPodHash &&
			(revision == "" || stable == revision)
	})
	return stable
}

func pollRollout(b *testing.B, k8s client.Client, ns, what string, cond func(*v1alpha1.Rollout) bool) {
	b.Helper()
	var ro v1alpha1.Rollout
	var read error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		read = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &ro)
		return read == nil && cond(&ro), nil
	})
	if err != nil {
		b.Fatalf("Rollout %s/web not %s: %v (last read: %v); status %+v", ns, what, err, read, ro.Status)
	}
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}
