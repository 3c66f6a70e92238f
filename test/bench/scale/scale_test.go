//go:build bench

package scale

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
	"github.com/kubeseed/rollouts/test/kwok"
)

const (
	// phaseTimeout bounds one phase; settle is how long the controller is
	// left alone after the last Rollout is Healthy before its settled RSS,
	// CPU and requests are read (so trailing work counts).
	phaseTimeout = 20 * time.Minute
	settle       = 10 * time.Second
	// writers is how many requests the load generator has in flight.
	writers = 64
)

// BenchmarkScale is scenario A: N Rollouts (2 replicas, canary steps
// setWeight 50 and pause 1s, no traffic routing) created at once until all
// are Healthy, then all updated at once until all are Healthy on the new
// revision. Each repetition runs a fresh controller in a fresh namespace.
func BenchmarkScale(b *testing.B) { eachScale(b, scaleKind) }

// BenchmarkScaleSideBySide runs BenchmarkScaleFloor,
// BenchmarkScaleFloorRollout and BenchmarkScale in turn within each
// repetition, so that a machine whose speed drifts over a run (as a shared
// one does, by ±15 % between repetitions) slows the three alike, and adds
// each repetition's ratios to the floor. `make bench` runs this one.
func BenchmarkScaleSideBySide(b *testing.B) {
	eachScale(b, floorKind, floorRolloutKind(recordUnitWrites(b)), scaleKind)
}

// kind is one scenario eachScale runs: a name for its results, one
// repetition of both phases, and the table of a phase's repetitions.
type kind struct {
	name   string
	run    func(b *testing.B, n, rep int) (create, update phase)
	result func(string, []phase) bench.Result
}

var scaleKind = kind{"scale", scaleRun, phaseResult}

// eachScale runs BENCH_REPS repetitions of two-phase scenarios for each N,
// the kinds in turn within a repetition, and publishes each phase as
// "KIND N=n create|update", then the summary (and, with more than one
// kind, each repetition's ratios to the first).
func eachScale(b *testing.B, kinds ...kind) {
	for _, n := range scales() {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			reps := envInt("BENCH_REPS", 3)
			create, update := make([][]phase, len(kinds)), make([][]phase, len(kinds))
			for b.Loop() {
				for rep := range reps {
					for i, k := range kinds {
						c, u := k.run(b, n, rep)
						create[i], update[i] = append(create[i], c), append(update[i], u)
					}
				}
			}
			for i, k := range kinds {
				publish(b, k.result(fmt.Sprintf("%s N=%d create", k.name, n), create[i]))
				publish(b, k.result(fmt.Sprintf("%s N=%d update", k.name, n), update[i]))
			}
			if len(kinds) > 1 {
				publish(b, pairedRatios(fmt.Sprintf("ratios N=%d update", n), kinds, update))
			}
			summary(b)
		})
	}
}

// pairedRatios is each repetition's wall time and control-plane CPU of
// every kind over the first kind's in the same repetition, and their
// medians: the ratio of two phases run minutes apart, not of medians
// taken over the whole run.
func pairedRatios(name string, kinds []kind, ps [][]phase) bench.Result {
	res := bench.Result{Name: name, Columns: []string{"rep"}}
	for _, k := range kinds[1:] {
		res.Columns = append(res.Columns, k.name+" wall / "+kinds[0].name, k.name+" CPU / "+kinds[0].name)
	}
	// Each kind's ratios to the floor, one per repetition.
	type toFloor struct{ wall, cpu []float64 }
	ratios := make([]toFloor, len(kinds)-1)
	for rep := range ps[0] {
		row := []string{strconv.Itoa(rep + 1)}
		for i := range kinds[1:] {
			base, p := ps[0][rep], ps[i+1][rep]
			wall, cpu := p.wall.Seconds()/base.wall.Seconds(), p.planeCPU.Seconds()/base.planeCPU.Seconds()
			ratios[i].wall, ratios[i].cpu = append(ratios[i].wall, wall), append(ratios[i].cpu, cpu)
			row = append(row, fmt.Sprintf("%.2f×", wall), fmt.Sprintf("%.2f×", cpu))
		}
		res.Rows = append(res.Rows, row)
	}
	median := []string{"median"}
	for i, k := range kinds[1:] {
		for _, r := range []struct {
			unit   string
			values []float64
		}{{"wall", ratios[i].wall}, {"cpu", ratios[i].cpu}} {
			m := bench.Summarize(r.values).Median
			median = append(median, fmt.Sprintf("%.2f×", m))
			res.Metrics = append(res.Metrics, bench.Metric{Unit: fmt.Sprintf("%s-%s/%s", k.name, r.unit, kinds[0].name), Value: m})
		}
	}
	res.Rows = append(res.Rows, median)
	return res
}

// phase is what one phase of one repetition measured.
type phase struct {
	n          int
	wall       time.Duration
	requests   map[string]float64 // by method
	cpu        time.Duration      // controller
	peak       int64              // VmHWM during the phase, bytes
	settled    int64              // VmRSS after settling, bytes
	planeCPU   time.Duration      // control plane
	plane      map[string]time.Duration
	writes     map[string]float64 // served by kube-apiserver, by resource
	logErrors  int
	firstError string
}

func (p phase) totalRequests() float64 {
	var sum float64
	for _, v := range p.requests {
		sum += v
	}
	return sum
}

func scaleRun(b *testing.B, n, rep int) (create, update phase) {
	b.Helper()
	ns := benchNamespace(b, fmt.Sprintf("scale-%d-%d", n, rep))
	ctx := context.Background()
	ctl := startController(b, fmt.Sprintf("controller-scale-%d-%d", n, rep))
	plane, err := controlPlane(cl)
	if err != nil {
		b.Fatal(err)
	}
	w := watchEvents(b, ns, &v1alpha1.Rollout{})

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("app-%05d", i)
	}
	create = measure(b, fmt.Sprintf("scale-%d-%d-create", n, rep), ctl, plane, n, func() time.Time {
		done := w.track(n, healthyOn("app:1"))
		inParallel(b, names, func(name string) error { return k8s.Create(ctx, scaleRollout(ns, name)) })
		return done.wait(b, w)
	})
	b.Logf("N=%d rep %d create: %s", n, rep, create)
	update = measure(b, fmt.Sprintf("scale-%d-%d-update", n, rep), ctl, plane, n, func() time.Time {
		done := w.track(n, healthyOn("app:2"))
		setImages(b, ns, names, 2)
		return done.wait(b, w)
	})
	b.Logf("N=%d rep %d update: %s", n, rep, update)
	if err := ctl.Stop(30 * time.Second); err != nil {
		b.Errorf("controller did not stop cleanly: %v", err)
	}
	w.stop()
	deleteNamespace(b, ns)
	return create, update
}

func (p phase) String() string {
	return fmt.Sprintf("wall %.1fs, %.1f requests/rollout %v, %.1f ms CPU/rollout, peak %d MB, settled %d MB, control plane %.1fs CPU (%s), writes/unit %s, %d log errors",
		p.wall.Seconds(), p.totalRequests()/float64(p.n), p.requests, bench.Millis(p.cpu)/float64(p.n), p.peak>>20, p.settled>>20, p.planeCPU.Seconds(), planeByName(p.plane), p.writesString(), p.logErrors)
}

// writesPerUnit is how many writes kube-apiserver served per Rollout (or
// floor unit).
func (p phase) writesPerUnit() float64 {
	var sum float64
	for _, v := range p.writes {
		sum += v
	}
	return sum / float64(p.n)
}

// writesString is the writes per unit, in all and by resource, most first.
func (p phase) writesString() string {
	byCount := slices.SortedFunc(maps.Keys(p.writes), func(a, b string) int {
		return cmp.Or(cmp.Compare(p.writes[b], p.writes[a]), strings.Compare(a, b))
	})
	parts := []string{bench.FormatValue(p.writesPerUnit())}
	for _, res := range byCount {
		if v := p.writes[res] / float64(p.n); v >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %s", res, bench.FormatValue(v)))
		}
	}
	return strings.Join(parts, ", ")
}

func planeByName(cpu map[string]time.Duration) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(cpu)) {
		parts = append(parts, fmt.Sprintf("%s %.1fs", name, cpu[name].Seconds()))
	}
	return strings.Join(parts, ", ")
}

// measure runs one phase: run does the writes and returns the moment the
// last Rollout was seen done. The counters are read before, and after the
// cluster has been left alone for settle (so trailing work counts). Without
// a controller (ctl nil) only the wall time and the control plane count.
// With BENCH_PROFILE set, kube-apiserver's CPU profile of the phase's first
// BENCH_PROFILE seconds goes to bin/bench/<name>.pprof (and
// kube-controller-manager's to <name>-kcm.pprof); when the controller
// serves pprof (BENCH_CONTROLLER_ARGS=--pprof-bind-address=…), its heap
// once settled goes to <name>-heap.pprof.
func measure(b *testing.B, name string, ctl *kwok.Controller, plane []int, n int, run func() time.Time) phase {
	b.Helper()
	var before controllerCounters
	if ctl != nil {
		before = readController(b, ctl, true)
	}
	plane0, err := cpuByName(plane)
	if err != nil {
		b.Fatal(err)
	}
	writes0, err := planeWrites()
	if err != nil {
		b.Fatal(err)
	}
	profiled := profile(b, name, time.Duration(envInt("BENCH_PROFILE", 0))*time.Second)
	start := time.Now()
	end := run()
	time.Sleep(settle)
	plane1, err := cpuByName(plane)
	if err != nil {
		b.Fatal(err)
	}
	writes1, err := planeWrites()
	if err != nil {
		b.Fatal(err)
	}
	profiled()
	p := phase{n: n, wall: end.Sub(start), requests: map[string]float64{}, plane: map[string]time.Duration{}, writes: map[string]float64{}}
	for name, t := range plane1 {
		p.plane[name] = t - plane0[name]
		p.planeCPU += t - plane0[name]
	}
	for res, v := range writes1 {
		if d := v - writes0[res]; d > 0 {
			p.writes[res] = d
		}
	}
	if ctl == nil {
		return p
	}
	after := readController(b, ctl, false)
	controllerHeap(b, name)
	p.cpu, p.peak, p.settled = after.cpu-before.cpu, after.peak, after.rss
	for method, v := range after.requests {
		if d := v - before.requests[method]; d > 0 {
			p.requests[method] = d
		}
	}
	p.logErrors, _, p.firstError = logErrors(ctl, before.logAt)
	if p.logErrors > 0 {
		b.Errorf("the controller logged %d errors; the first: %s", p.logErrors, p.firstError)
	}
	return p
}

// controllerCounters is what is read off the controller around a phase.
type controllerCounters struct {
	cpu       time.Duration
	requests  map[string]float64
	rss, peak int64
	logAt     int64
}

// readController reads the controller's counters; at the start of a phase
// (start) its peak RSS is reset first.
func readController(b *testing.B, ctl *kwok.Controller, start bool) controllerCounters {
	b.Helper()
	pid := ctl.Cmd.Process.Pid
	var c controllerCounters
	var errs [4]error
	if start {
		errs[0] = resetPeak(pid)
		_, c.logAt, _ = logErrors(ctl, 0)
	} else {
		c.rss, c.peak, errs[0] = memory(pid)
		errs[3] = ctl.Exited()
	}
	c.cpu, errs[1] = cpuTime(pid)
	c.requests, errs[2] = apiRequests(ctl)
	if err := firstErr(errs[:]...); err != nil {
		b.Fatal(err)
	}
	return c
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// scaleRollout is the Rollout of the scale scenario.
func scaleRollout(ns, name string) *v1alpha1.Rollout {
	labels := map[string]string{"app": name}
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
				Steps: []v1alpha1.CanaryStep{
					{SetWeight: ptr.To[int32](50)},
					{Pause: &v1alpha1.RolloutPause{Duration: ptr.To(intstr.FromString("1s"))}},
				},
			}},
		},
	}
}

// imagePatch is a merge patch that gives a Rollout image app:n.
const imagePatch = `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:%d"}]}}}}`

// setImages gives the Rollouts names image app:n, writers at a time.
func setImages(b *testing.B, ns string, names []string, n int) {
	b.Helper()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, imagePatch, n))
	inParallel(b, names, func(name string) error {
		return k8s.Patch(context.Background(), &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, patch)
	})
}

// inParallel calls fn for every name with writers calls in flight.
func inParallel(b *testing.B, names []string, fn func(string) error) {
	b.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range writers {
		wg.Go(func() {
			for name := range work {
				if err := fn(name); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// healthyOn is the end of a phase for one Rollout: Healthy on its latest
// spec, with the revision running image stable.
func healthyOn(image string) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		return healthy(ro) && ro.Spec.Template.Spec.Containers[0].Image == image
	}
}

// benchNamespace creates a namespace, deleted (and waited for) when the
// benchmark ends unless it is gone before.
func benchNamespace(b *testing.B, ns string) string {
	b.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deleteNamespace(b, ns) })
	return ns
}

// deleteNamespace deletes the namespace and waits until it is gone, so what
// runs next starts on an empty cluster: a controller would otherwise
// reconcile the dying namespace's Rollouts and count those requests too.
func deleteNamespace(b *testing.B, ns string) {
	b.Helper()
	ctx := context.Background()
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := k8s.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(phaseTimeout)
	for time.Now().Before(deadline) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(time.Second)
	}
	b.Fatalf("namespace %s still there after %s", ns, phaseTimeout)
}

// phaseResult summarises the repetitions of one phase.
func phaseResult(name string, ps []phase) bench.Result {
	res := bench.Result{
		Name:    name,
		Columns: []string{"rep", "wall s", "requests/rollout", "requests by method", "CPU ms/rollout", "peak RSS MB", "settled RSS MB", "control plane CPU s", "by process", "control plane writes/rollout", "log errors"},
	}
	var wall, req, cpu, peak, settled, plane, writes, errs []float64
	for i, p := range ps {
		n := float64(p.n)
		wall, req, cpu = append(wall, p.wall.Seconds()), append(req, p.totalRequests()/n), append(cpu, bench.Millis(p.cpu)/n)
		peak, settled, plane = append(peak, float64(p.peak>>20)), append(settled, float64(p.settled>>20)), append(plane, p.planeCPU.Seconds())
		errs, writes = append(errs, float64(p.logErrors)), append(writes, p.writesPerUnit())
		res.Rows = append(res.Rows, []string{
			strconv.Itoa(i + 1), bench.FormatValue(wall[i]), bench.FormatValue(req[i]), byMethod(p.requests, n),
			bench.FormatValue(cpu[i]), bench.FormatValue(peak[i]), bench.FormatValue(settled[i]), bench.FormatValue(plane[i]), planeByName(p.plane), p.writesString(), strconv.Itoa(p.logErrors),
		})
	}
	for _, m := range []struct {
		unit string
		xs   []float64
	}{{"wall-s", wall}, {"requests/rollout", req}, {"cpu-ms/rollout", cpu}, {"peak-rss-MB", peak}, {"settled-rss-MB", settled}, {"plane-cpu-s", plane}, {"plane-writes/unit", writes}} {
		res.Metrics = append(res.Metrics, spread(m.unit, m.xs)...)
	}
	res.Metrics = append(res.Metrics, bench.Metric{Unit: "log-errors", Value: bench.Summarize(errs).Max}, bench.Metric{Unit: "reps", Value: float64(len(ps))})
	return res
}

// spread is the median, minimum and maximum of samples, as metrics.
func spread(unit string, xs []float64) []bench.Metric {
	s := bench.Summarize(xs)
	return []bench.Metric{{Unit: unit, Value: s.Median}, {Unit: unit + "-min", Value: s.Min}, {Unit: unit + "-max", Value: s.Max}}
}

func byMethod(requests map[string]float64, n float64) string {
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(requests)) {
		parts = append(parts, fmt.Sprintf("%s %s", m, bench.FormatValue(requests[m]/n)))
	}
	return strings.Join(parts, ", ")
}

// summary adds (or replaces) the table of medians of every scale phase
// measured so far: the controller's figures beside the floor's for the same
// N and phase, and the ratios the scale targets are set in.
func summary(b *testing.B) {
	b.Helper()
	type row struct{ floor, writes, scale map[string]float64 }
	rows := map[string]*row{}
	var keys []string
	for _, r := range report.Results {
		kind, key, _ := strings.Cut(r.Name, " ")
		if kind != "scale" && kind != "floor" && kind != "floor-rollout" || !strings.HasPrefix(key, "N=") {
			continue
		}
		if rows[key] == nil {
			rows[key] = &row{}
			keys = append(keys, key)
		}
		v := map[string]float64{}
		for _, m := range r.Metrics {
			v[m.Unit] = m.Value
		}
		switch kind {
		case "floor":
			rows[key].floor = v
		case "floor-rollout":
			rows[key].writes = v
		default:
			rows[key].scale = v
		}
	}
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(phaseN(a), phaseN(b)) })
	res := bench.Result{
		Name: "scale summary (medians)",
		Columns: []string{"phase", "floor wall s", "floor + Rollout writes wall s", "wall s", "wall / floor", "floor + Rollout writes / floor",
			"floor control plane CPU s", "floor + Rollout writes CPU s", "control plane CPU s", "CPU / floor", "floor + Rollout writes CPU / floor",
			"floor writes/unit", "writes/rollout", "API requests per rollout", "controller CPU ms per rollout", "peak RSS MB", "settled RSS MB",
			"reps (floor, floor + Rollout writes, controller)"},
	}
	for _, key := range keys {
		f, w, c := rows[key].floor, rows[key].writes, rows[key].scale
		res.Rows = append(res.Rows, []string{key,
			value(f, "wall-s"), value(w, "wall-s"), value(c, "wall-s"), ratio(c, f, "wall-s"), ratio(w, f, "wall-s"),
			value(f, "plane-cpu-s"), value(w, "plane-cpu-s"), value(c, "plane-cpu-s"), ratio(c, f, "plane-cpu-s"), ratio(w, f, "plane-cpu-s"),
			value(f, "plane-writes/unit"), value(c, "plane-writes/unit"), value(c, "requests/rollout"), value(c, "cpu-ms/rollout"),
			value(c, "peak-rss-MB"), value(c, "settled-rss-MB"), value(f, "reps") + ", " + value(w, "reps") + ", " + value(c, "reps")})
	}
	publish(b, res)
}

// phaseN is the N of a phase named "N=1000 update".
func phaseN(key string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(key)[0], "N="))
	return n
}

// value is a median of a summary row, "–" when not measured.
func value(v map[string]float64, unit string) string {
	x, ok := v[unit]
	if !ok {
		return "–"
	}
	return bench.FormatValue(x)
}

// ratio is a controller's median over the floor's.
func ratio(c, f map[string]float64, unit string) string {
	if c[unit] == 0 || f[unit] == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", c[unit]/f[unit])
}
