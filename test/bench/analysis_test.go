//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

const (
	// batchTimeout bounds a whole batch; 500 runs of 5 measurements a
	// second apart need a little over 4s when the reconciler keeps up.
	batchTimeout = 5 * time.Minute
	// creators create a batch's runs in parallel.
	creators = 16
	// analysisController is the name the AnalysisRun controller has in
	// controller-runtime's metrics (its kind, lower case).
	analysisController = "analysisrun"
)

// throughputScenario is a batch of AnalysisRuns created at once, each with
// one web metric measured count times, a second apart, by a reconciler with
// that many workers.
type throughputScenario struct {
	runs    int
	count   int32
	workers int
}

// BenchmarkAnalysisThroughput measures the AnalysisRun reconciler under many
// concurrent runs: each iteration creates a batch of runs (no Rollout) whose
// metric asks one HTTP server, and times until a watch has seen every run
// Successful. Besides the rate of measurements and of reconciles it reports
// how late measurements were taken: the first one after its run's creation
// request, the others after the moment they were due (the previous one's
// finishedAt plus the interval).
func BenchmarkAnalysisThroughput(b *testing.B) {
	for _, sc := range []throughputScenario{{runs: 500, count: 5, workers: defaultWorkers}, {runs: 500, count: 5, workers: 40}} {
		b.Run(fmt.Sprintf("runs=%d,workers=%d", sc.runs, sc.workers), func(b *testing.B) { benchmarkThroughput(b, sc) })
	}
}

func benchmarkThroughput(b *testing.B, sc throughputScenario) {
	env.StartManager(b, func(mgr manager.Manager, opts controller.Options) error {
		opts.MaxConcurrentReconciles = sc.workers
		return (&analysis.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
	srv := NewVerdictServer(b)
	var batches []batchSample
	for b.Loop() {
		b.StopTimer()
		ns := env.Namespace(b)
		w := newBatchWatch(sc.runs)
		c := newCache(b, ns)
		on(b, c, &v1alpha1.AnalysisRun{}, w.observe)
		stopCache := startCache(b, c)
		connections, recs := srv.Connections.Load(), reconciles(b, analysisController)
		b.StartTimer()

		start := time.Now()
		created := createRuns(b, ns, sc, srv.URL)
		createdAll := time.Now()
		end := w.await(b)
		b.StopTimer()

		after := reconciles(b, analysisController)
		s := batchSample{
			wall:        end.Sub(start),
			create:      createdAll.Sub(start),
			reconciles:  sum(after) - sum(recs),
			errors:      after["error"] - recs["error"],
			connections: srv.Connections.Load() - connections,
		}
		runs := batchRuns(b, ns, sc)
		for i := range runs {
			s.requests += int64(len(srv.RequestsOf(runKey(ns, runs[i].Name))))
		}
		s.firstMeasure, s.lag = measurementDelays(b, runs, sc, created)
		if want := int64(sc.runs) * int64(sc.count); s.requests != want {
			b.Errorf("batch %d: the server answered %d requests, want %d (runs × count)%s",
				len(batches)+1, s.requests, want, extraRequests(srv, runs, sc.count))
		}
		if s.reconciles == 0 {
			b.Errorf("no reconciles counted for controller %q in controller-runtime's metrics", analysisController)
		}
		if s.errors > 0 {
			b.Errorf("batch %d: %.0f reconciles returned an error", len(batches)+1, s.errors)
		}
		batches = append(batches, s)
		// The web provider may leave its connections open; close them so
		// batches don't pile up open files in this process. A watch left
		// running slows the API server down for the batches after it.
		srv.CloseClientConnections()
		stopCache()
		b.StartTimer()
	}
	// A stale reconcile may measure a run again after its batch ended.
	if total, want := srv.Requests.Load(), int64(len(batches))*int64(sc.runs)*int64(sc.count); total != want {
		over := srv.AskedMoreThan(int(sc.count))
		b.Errorf("the server answered %d requests in all, want %d: %d runs asked more than %d times, e.g. %v",
			total, want, len(over), sc.count, over[:min(len(over), 5)])
	}
	publish(b, throughputResult(b.Name(), sc, batches))
}

// batchSample is what one batch measured.
type batchSample struct {
	wall, create          time.Duration
	reconciles, errors    float64
	requests, connections int64
	// firstMeasure and lag are in milliseconds, one per measurement.
	firstMeasure, lag []float64
}

func throughputResult(name string, sc throughputScenario, batches []batchSample) Result {
	res := Result{
		Name: name,
		Columns: []string{"batch", "wall s", "create s", "measurements/s", "reconciles/s",
			"reconcile errors", "first measurement p50/p99 ms", "lag p50/p99 ms", "requests", "connections"},
	}
	measurements := float64(sc.runs) * float64(sc.count)
	var wall, perSec, recPerSec, recPerMeas, errs, firstP50, firstP99, lagP50, lagP99, lagMax, requests, connections []float64
	for i, s := range batches {
		secs := s.wall.Seconds()
		first, lag := Summarize(s.firstMeasure), Summarize(s.lag)
		wall = append(wall, secs)
		perSec = append(perSec, measurements/secs)
		recPerSec = append(recPerSec, s.reconciles/secs)
		recPerMeas = append(recPerMeas, s.reconciles/measurements)
		errs = append(errs, s.errors)
		firstP50, firstP99 = append(firstP50, first.Median), append(firstP99, first.P99)
		lagP50, lagP99, lagMax = append(lagP50, lag.Median), append(lagP99, lag.P99), append(lagMax, lag.Max)
		requests, connections = append(requests, float64(s.requests)), append(connections, float64(s.connections))
		res.Rows = append(res.Rows, []string{
			strconv.Itoa(i + 1), FormatValue(secs), FormatValue(s.create.Seconds()),
			FormatValue(measurements / secs), FormatValue(s.reconciles / secs), FormatValue(s.errors),
			FormatValue(first.Median) + " / " + FormatValue(first.P99), FormatValue(lag.Median) + " / " + FormatValue(lag.P99),
			strconv.FormatInt(s.requests, 10), strconv.FormatInt(s.connections, 10),
		})
	}
	median := func(xs []float64) float64 { return Summarize(xs).Median }
	res.Metrics = []Metric{
		{"runs", float64(sc.runs)},
		{"wall-s", median(wall)},
		{"measurements/s", median(perSec)},
		{"reconciles/s", median(recPerSec)},
		{"reconciles/measurement", median(recPerMeas)},
		{"reconcile-errors/batch", median(errs)},
		{"first-measure-p50-ms", median(firstP50)},
		{"first-measure-p99-ms", median(firstP99)},
		{"lag-p50-ms", median(lagP50)},
		{"lag-p99-ms", median(lagP99)},
		{"lag-max-ms", median(lagMax)},
		{"requests/batch", median(requests)},
		{"connections/batch", median(connections)},
	}
	return res
}

// createRuns creates the batch's runs in parallel and returns when each
// creation request was sent, by run name.
func createRuns(b *testing.B, ns string, sc throughputScenario, endpoint string) map[string]time.Time {
	b.Helper()
	names := make([]string, sc.runs)
	sent := make([]time.Time, sc.runs)
	errs := make([]error, sc.runs)
	next := make(chan int)
	var wg sync.WaitGroup
	for range creators {
		wg.Go(func() {
			for i := range next {
				names[i] = fmt.Sprintf("run-%04d", i)
				run := &v1alpha1.AnalysisRun{
					ObjectMeta: metav1.ObjectMeta{Name: names[i], Namespace: ns},
					Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{
						VerdictMetric(endpoint+"/?run="+url.QueryEscape(runKey(ns, names[i])), ptr.To(sc.count)),
					}},
				}
				sent[i] = time.Now()
				errs[i] = env.Client.Create(context.Background(), run)
			}
		})
	}
	for i := range sc.runs {
		next <- i
	}
	close(next)
	wg.Wait()
	created := make(map[string]time.Time, sc.runs)
	for i, err := range errs {
		if err != nil {
			b.Fatalf("creating %s: %v", names[i], err)
		}
		created[names[i]] = sent[i]
	}
	return created
}

// batchRuns reads the batch's runs from the API server.
func batchRuns(b *testing.B, ns string, sc throughputScenario) []v1alpha1.AnalysisRun {
	b.Helper()
	var runs v1alpha1.AnalysisRunList
	if err := env.Client.List(context.Background(), &runs, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	if len(runs.Items) != sc.runs {
		b.Fatalf("%d runs in %s, want %d", len(runs.Items), ns, sc.runs)
	}
	return runs.Items
}

// measurementDelays checks that every run of the batch ended Successful
// after exactly count measurements, and returns how long after its
// creation request each run was first measured, and how late each later
// measurement started after it was due, in milliseconds.
func measurementDelays(b *testing.B, runs []v1alpha1.AnalysisRun, sc throughputScenario, created map[string]time.Time) (first, lag []float64) {
	b.Helper()
	metric := VerdictMetric("", nil)
	interval, err := metric.Interval.Parse()
	if err != nil {
		b.Fatal(err)
	}
	var bad []string
	for i := range runs {
		run := &runs[i]
		mrs := run.Status.MetricResults
		if run.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || len(mrs) != 1 || mrs[0].Successful != sc.count || len(mrs[0].Measurements) != int(sc.count) {
			bad = append(bad, fmt.Sprintf("%s: %s %+v", run.Name, run.Status.Phase, mrs))
			continue
		}
		ms := mrs[0].Measurements
		first = append(first, Millis(ms[0].StartedAt.Sub(created[run.Name])))
		for k := 1; k < len(ms); k++ {
			due := ms[k-1].FinishedAt.Add(interval)
			lag = append(lag, Millis(ms[k].StartedAt.Sub(due)))
		}
	}
	if len(bad) > 0 {
		b.Fatalf("%d of %d runs did not measure %d successes, e.g. %s", len(bad), sc.runs, sc.count, bad[0])
	}
	return first, lag
}

// extraRequests describes the runs the server answered more than count
// times: when each request came, and the measurements the run recorded.
func extraRequests(srv *VerdictServer, runs []v1alpha1.AnalysisRun, count int32) string {
	const shown = 3
	var out string
	extra := 0
	for i := range runs {
		run := &runs[i]
		reqs := srv.RequestsOf(runKey(run.Namespace, run.Name))
		if len(reqs) <= int(count) {
			continue
		}
		if extra++; extra > shown {
			continue
		}
		out += fmt.Sprintf("\n  %s: %d requests at", run.Name, len(reqs))
		for _, at := range reqs {
			out += " " + at.Format(clockFormat)
		}
		out += "; measurements started at"
		for _, mr := range run.Status.MetricResults {
			for _, m := range mr.Measurements {
				if m.StartedAt != nil {
					out += " " + m.StartedAt.Format(clockFormat)
				}
			}
		}
	}
	return fmt.Sprintf("; %d runs were asked more than %d times%s", extra, count, out)
}

func sum(counts map[string]float64) float64 {
	var n float64
	for _, c := range counts {
		n += c
	}
	return n
}

// runKey names a run in the requests to the verdict server.
func runKey(ns, name string) string { return ns + "/" + name }

// clockFormat shows the time of day to the millisecond.
const clockFormat = "15:04:05.000"

// batchWatch follows a batch's runs until all are Successful or one ends
// otherwise.
type batchWatch struct {
	runs             int
	finished, broken *Mark

	mu         sync.Mutex
	successful map[string]bool
	brokenRun  string
}

func newBatchWatch(runs int) *batchWatch {
	return &batchWatch{runs: runs, finished: NewMark(), broken: NewMark(), successful: map[string]bool{}}
}

func (w *batchWatch) observe(run *v1alpha1.AnalysisRun, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch phase := run.Status.Phase; {
	case phase == v1alpha1.AnalysisPhaseSuccessful:
		w.successful[run.Name] = true
		if len(w.successful) == w.runs {
			w.finished.Set(at)
		}
	case phase.Completed():
		if w.brokenRun == "" {
			w.brokenRun = fmt.Sprintf("%s ended %s: %s", run.Name, phase, run.Status.Message)
		}
		w.broken.Set(at)
	}
}

// await returns when the last run was seen Successful, or fails the
// benchmark.
func (w *batchWatch) await(b *testing.B) time.Time {
	b.Helper()
	select {
	case <-w.finished.done:
		return w.finished.at
	case <-w.broken.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		b.Fatalf("a run did not succeed: %s", w.brokenRun)
	case <-time.After(batchTimeout):
		w.mu.Lock()
		defer w.mu.Unlock()
		b.Fatalf("%d of %d runs Successful after %s", len(w.successful), w.runs, batchTimeout)
	}
	return time.Time{}
}
