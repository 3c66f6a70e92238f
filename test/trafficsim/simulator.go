// Package trafficsim stands in for the application that pods on simulated
// (kwok) nodes don't run. Every tick each Ready pod that a Profile serves
// answers a batch of requests, a share of them with 500, and counts them
// the way an instrumented app, scraped by a Prometheus that adds pod
// labels, would expose them:
//
//	demo_http_requests_total{namespace, pod, pod_template_hash, version, code}
//	demo_latency_seconds{namespace, pod, pod_template_hash, version}
//
// version is the image of the pod's first container. The latency gauge is
// drawn anew every tick around the image's mean, for images given one.
// Series of pods that are gone, or no longer served, disappear.
//
// The end-to-end tests drive a Table at run time; the demo runs
// cmd/trafficsim with Rules from its flags.
package trafficsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

const (
	// tick is how often each served pod answers a batch of requests.
	tick = 100 * time.Millisecond
	// requestsPerTick is the size of that batch (100 requests/s per pod).
	requestsPerTick = 10
	// latencySpread is the standard deviation of the latency a pod
	// reports, as a share of its image's mean.
	latencySpread = 0.1
	// latencySeed seeds the latency noise, so runs are reproducible.
	latencySeed = 6
	// syncTimeout bounds the wait for the first list of pods.
	syncTimeout = 30 * time.Second
)

// Simulator answers requests for the pods of a cluster and exposes the
// counts. Create it with New, then Start it and Serve its metrics.
type Simulator struct {
	pods     cache.Cache
	profile  Profile
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.GaugeVec
	wg       sync.WaitGroup

	mu    sync.Mutex
	noise *rand.Rand
	// live are the pods that have series.
	live map[types.NamespacedName]*podSeries
}

// podSeries is what the simulator remembers of a served pod.
type podSeries struct {
	labels prometheus.Labels
	// owed carries the fraction of a failed request over to the next
	// tick, so that shares below 1/requestsPerTick still fail some.
	owed float64
}

// New returns a simulator reading pods through cfg, whose traffic the
// profile decides. The pod informer logs through controller-runtime's
// logger: callers set it (log.SetLogger) to keep it quiet.
func New(cfg *rest.Config, profile Profile) (*Simulator, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	pods, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("pod cache: %w", err)
	}
	s := newSimulator(profile)
	s.pods = pods
	return s, nil
}

// newSimulator has the simulator's metrics, without the pod cache.
func newSimulator(profile Profile) *Simulator {
	s := &Simulator{
		profile:  profile,
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "demo_http_requests_total",
			Help: "HTTP requests answered by the simulated pods, by answer code.",
		}, []string{"namespace", "pod", "pod_template_hash", "version", "code"}),
		latency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "demo_latency_seconds",
			Help: "Latency the simulated pods report, drawn every tick around their image's mean.",
		}, []string{"namespace", "pod", "pod_template_hash", "version"}),
		noise: rand.New(rand.NewPCG(latencySeed, latencySeed)),
		live:  map[types.NamespacedName]*podSeries{},
	}
	s.registry.MustRegister(s.requests, s.latency)
	return s
}

// Start watches the cluster's pods and, once the informer has synced,
// makes them answer requests every 100 ms until ctx ends. When it returns
// an error, cancel ctx and Wait all the same.
func (s *Simulator) Start(ctx context.Context) error {
	if _, err := s.pods.GetInformer(ctx, &corev1.Pod{}); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	s.wg.Go(func() { _ = s.pods.Start(ctx) })
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !s.pods.WaitForCacheSync(syncCtx) {
		return fmt.Errorf("pod informer did not sync within %s", syncTimeout)
	}
	s.wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				var pods corev1.PodList
				if err := s.pods.List(ctx, &pods); err == nil {
					s.answer(pods.Items)
				}
			}
		}
	})
	return nil
}

// Wait returns once the goroutines of Start have stopped.
func (s *Simulator) Wait() { s.wg.Wait() }

// Handler serves the metrics in the Prometheus exposition format.
func (s *Simulator) Handler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Serve answers GET /metrics on l until ctx ends.
func (s *Simulator) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return nil
}

// answer makes every served pod answer one batch of requests and removes
// the series of the pods that no longer get any.
func (s *Simulator) answer(pods []corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[types.NamespacedName]bool{}
	for i := range pods {
		p := &pods[i]
		if !ready(p) {
			continue
		}
		image := p.Spec.Containers[0].Image
		b, served := s.profile.Behaviour(p.Namespace, image)
		if !served {
			continue
		}
		key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		seen[key] = true
		ps := s.live[key]
		if ps == nil {
			ps = &podSeries{labels: prometheus.Labels{
				"namespace":         p.Namespace,
				"pod":               p.Name,
				"pod_template_hash": p.Labels[v1alpha1.PodTemplateHashLabel],
				"version":           image,
			}}
			s.live[key] = ps
		}
		ps.owed += min(max(b.ErrorShare, 0), 1) * requestsPerTick
		// The epsilon keeps 0.3×10 = 2.9999… from failing 2.
		failed := math.Floor(ps.owed + 1e-9)
		ps.owed = max(ps.owed-failed, 0)
		// Both codes get a series from the first tick, as an app that
		// initialises its counters, so a ratio of them is never empty.
		s.requests.With(withCode(ps.labels, "500")).Add(failed)
		s.requests.With(withCode(ps.labels, "200")).Add(requestsPerTick - failed)
		if b.MeanLatency > 0 {
			s.latency.With(ps.labels).Set(b.MeanLatency * (1 + latencySpread*s.noise.NormFloat64()))
		} else {
			s.latency.Delete(ps.labels)
		}
	}
	for key, ps := range s.live {
		if !seen[key] {
			s.requests.DeletePartialMatch(ps.labels)
			s.latency.Delete(ps.labels)
			delete(s.live, key)
		}
	}
}

// ready: a Ready pod that is not being deleted gets traffic.
func ready(p *corev1.Pod) bool {
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
