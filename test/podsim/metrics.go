package podsim

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/types"
)

// The metrics of the answers, counted as an instrumented application
// counts the requests it answers, with the labels a Prometheus that
// scrapes pods would add (namespace, pod and the pod's template hash) and
// the container's image as version:
//
//	demo_http_requests_total{namespace, pod, pod_template_hash, version, code}
//	demo_http_request_duration_seconds{namespace, pod, pod_template_hash, version}
//
// The duration is measured, from the request's arrival to its answer
// written, so an image's latency shows in it as the pods really took it.
// A pod's series appear with its first answer, the counts of both 200
// and 500 at once (so a ratio of them is a number as soon as Prometheus
// has two samples), and go when the pod stops being served.
const (
	RequestsMetric = "demo_http_requests_total"
	DurationMetric = "demo_http_request_duration_seconds"
)

// durationBuckets cover the latencies images can ask for, from an answer
// at once to several seconds, 10ms apart from 100ms to 500ms where tests
// set them: a quantile of the answers read from the buckets is then within
// 10ms of the measured one.
var durationBuckets = func() []float64 {
	b := []float64{.001, .005, .01, .025, .05}
	for ms := 100; ms <= 500; ms += 10 {
		b = append(b, float64(ms)/1000)
	}
	return append(b, .75, 1, 2.5, 5, 10)
}()

type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsMetric,
			Help: "HTTP requests the simulated pods answered, by answer code.",
		}, []string{"namespace", "pod", "pod_template_hash", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    DurationMetric,
			Help:    "How long the simulated pods took to answer, measured per request.",
			Buckets: durationBuckets,
		}, []string{"namespace", "pod", "pod_template_hash", "version"}),
	}
	m.registry.MustRegister(m.requests, m.duration)
	return m
}

// count records one answer; first creates the pod's series of both codes.
func (m *metrics) count(pod types.NamespacedName, revision, image string, first bool, code int, took time.Duration) {
	labels := prometheus.Labels{"namespace": pod.Namespace, "pod": pod.Name, "pod_template_hash": revision, "version": image}
	withCode := func(code int) prometheus.Labels {
		l := prometheus.Labels{"code": strconv.Itoa(code)}
		for k, v := range labels {
			l[k] = v
		}
		return l
	}
	if first {
		for _, c := range []int{http.StatusOK, http.StatusInternalServerError} {
			m.requests.With(withCode(c))
		}
	}
	m.requests.With(withCode(code)).Inc()
	m.duration.With(labels).Observe(took.Seconds())
}

// forget removes a pod's series.
func (m *metrics) forget(pod types.NamespacedName) {
	match := prometheus.Labels{"namespace": pod.Namespace, "pod": pod.Name}
	m.requests.DeletePartialMatch(match)
	m.duration.DeletePartialMatch(match)
}

// Metrics serves the counts of the answers in the Prometheus exposition
// format; scrape it every second or so.
func (s *Simulator) Metrics() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
}
