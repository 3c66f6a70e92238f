//go:build e2e

package e2e

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

const (
	// trafficTick is how often each simulated pod answers a batch of requests.
	trafficTick = 100 * time.Millisecond
	// requestsPerTick is the size of that batch (100 requests/s per pod).
	requestsPerTick = 10
	// latencySpread is the standard deviation of the latency a pod
	// reports, as a share of its image's mean.
	latencySpread = 0.1
	// latencySeed seeds the latency noise.
	latencySeed = 6
)

// trafficExporter stands in for the application the simulated pods don't
// run. Every tick each Ready pod of a namespace it serves answers a batch of
// requests, a share of them with 500 as the test sets per image, and counts
// them in demo_http_requests_total{namespace, pod, pod_template_hash,
// version, code} — the series an instrumented app would expose to a
// Prometheus that adds pod labels. For images given a latency, each pod
// also reports in demo_latency_seconds{namespace, pod, pod_template_hash,
// version} a value drawn anew every tick around that mean. Series of pods
// that are gone disappear.
type trafficExporter struct {
	// addr is host:port of the /metrics endpoint.
	addr     string
	pods     cache.Cache
	requests *prometheus.CounterVec
	latency  *prometheus.GaugeVec

	mu sync.Mutex
	// errorShare is, per served namespace, the share of 500s per image.
	errorShare map[string]map[string]float64
	// meanLatency is, per served namespace, the mean latency in seconds
	// per image; images without one report no latency.
	meanLatency map[string]map[string]float64
	noise       *rand.Rand
	// live are the pods that have series, by namespace/name.
	live map[string]prometheus.Labels
}

// startTrafficExporter serves the counters on a free local port until the
// test ends; pods are read from an informer on the cluster.
func startTrafficExporter(t *testing.T) *trafficExporter {
	t.Helper()
	// The pod cache logs through controller-runtime's logger, which
	// otherwise complains that it was never set.
	ctrllog.SetLogger(logr.Discard())
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pods, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &trafficExporter{
		pods: pods,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "demo_http_requests_total",
			Help: "HTTP requests answered by the simulated pods, by answer code.",
		}, []string{"namespace", "pod", "pod_template_hash", "version", "code"}),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "demo_latency_seconds",
			Help: "Latency the simulated pods report, drawn every tick around their image's mean.",
		}, []string{"namespace", "pod", "pod_template_hash", "version"}),
		errorShare:  map[string]map[string]float64{},
		meanLatency: map[string]map[string]float64{},
		noise:       rand.New(rand.NewPCG(latencySeed, latencySeed)),
		live:        map[string]prometheus.Labels{},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.requests, e.latency)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	if _, err := pods.GetInformer(ctx, &corev1.Pod{}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = pods.Start(ctx) })
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !pods.WaitForCacheSync(syncCtx) {
		t.Fatal("pod informer of the traffic exporter did not sync")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	srv := &http.Server{
		Handler:           promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	wg.Go(func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("traffic exporter: %v", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		_ = srv.Close()
	})
	wg.Go(func() {
		tick := time.NewTicker(trafficTick)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				e.serveRequests(ctx)
			}
		}
	})
	return e
}

// serve makes the Ready pods of ns answer requests, all successfully until
// setErrorShare says otherwise, until the test ends.
func (e *trafficExporter) serve(t *testing.T, ns string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errorShare[ns] = map[string]float64{}
	e.meanLatency[ns] = map[string]float64{}
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.errorShare, ns)
		delete(e.meanLatency, ns)
	})
}

// setErrorShare makes the pods of image in ns answer this share of their
// requests with 500 from the next tick on.
func (e *trafficExporter) setErrorShare(ns, image string, share float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errorShare[ns][image] = share
}

// setLatency makes the pods of image in ns report latencies normally
// distributed around mean seconds, with a standard deviation of
// latencySpread × mean, from the next tick on.
func (e *trafficExporter) setLatency(ns, image string, mean float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.meanLatency[ns][image] = mean
}

func (e *trafficExporter) serveRequests(ctx context.Context) {
	var pods corev1.PodList
	if err := e.pods.List(ctx, &pods); err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		shares, served := e.errorShare[p.Namespace]
		if !served || !serving(p) {
			continue
		}
		key := p.Namespace + "/" + p.Name
		seen[key] = true
		image := p.Spec.Containers[0].Image
		labels := prometheus.Labels{
			"namespace":         p.Namespace,
			"pod":               p.Name,
			"pod_template_hash": p.Labels[v1alpha1.PodTemplateHashLabel],
			"version":           image,
		}
		e.live[key] = labels
		failed := int(math.Round(shares[image] * requestsPerTick))
		// Both codes get a series from the first tick, as an app that
		// initialises its counters, so a ratio of them is never empty.
		e.requests.With(withCode(labels, "500")).Add(float64(failed))
		e.requests.With(withCode(labels, "200")).Add(float64(requestsPerTick - failed))
		if mean, ok := e.meanLatency[p.Namespace][image]; ok {
			e.latency.With(labels).Set(mean * (1 + latencySpread*e.noise.NormFloat64()))
		}
	}
	for key, labels := range e.live {
		if !seen[key] {
			e.requests.DeletePartialMatch(labels)
			e.latency.Delete(labels)
			delete(e.live, key)
		}
	}
}

// serving: a Ready pod that is not being deleted gets traffic.
func serving(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || len(p.Spec.Containers) == 0 {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func withCode(labels prometheus.Labels, code string) prometheus.Labels {
	out := prometheus.Labels{"code": code}
	for k, v := range labels {
		out[k] = v
	}
	return out
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
