package trafficsim

import (
	"io"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func pod(ns, name, hash, image string, ready bool) corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{v1alpha1.PodTemplateHashLabel: hash}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func series(ns, name, hash, image string) prometheus.Labels {
	return prometheus.Labels{"namespace": ns, "pod": name, "pod_template_hash": hash, "version": image}
}

// requestCount reads one pod's counter of code.
func (s *Simulator) requestCount(labels prometheus.Labels, code string) float64 {
	return testutil.ToFloat64(s.requests.With(withCode(labels, code)))
}

func TestAnswerCountsRequestsOfServedReadyPods(t *testing.T) {
	var table Table
	table.Serve("shop")
	table.SetErrorShare("shop", "web:2", 0.5)
	s := newSimulator(&table)
	deleting := pod("shop", "web-1-c", "h1", "web:1", true)
	deleting.DeletionTimestamp = &metav1.Time{}
	pods := []corev1.Pod{
		pod("shop", "web-1-a", "h1", "web:1", true),
		pod("shop", "web-2-a", "h2", "web:2", true),
		pod("shop", "web-1-b", "h1", "web:1", false),
		deleting,
		pod("other", "web-1-a", "h1", "web:1", true),
	}
	for range 3 {
		s.answer(pods)
	}
	good, bad := series("shop", "web-1-a", "h1", "web:1"), series("shop", "web-2-a", "h2", "web:2")
	for _, tc := range []struct {
		labels    prometheus.Labels
		ok, error float64
	}{
		{good, 30, 0},
		{bad, 15, 15},
	} {
		if got := s.requestCount(tc.labels, "200"); got != tc.ok {
			t.Errorf("%s: %g 200s, want %g", tc.labels["pod"], got, tc.ok)
		}
		if got := s.requestCount(tc.labels, "500"); got != tc.error {
			t.Errorf("%s: %g 500s, want %g", tc.labels["pod"], got, tc.error)
		}
	}
	// Two codes for each of the two served Ready pods, nothing else.
	if n := testutil.CollectAndCount(s.requests); n != 4 {
		t.Errorf("%d request series, want 4", n)
	}
}

func TestAnswerSmallSharesAccumulate(t *testing.T) {
	s := newSimulator(Rules{Rules: []Rule{{Tag: "*", Behaviour: Behaviour{ErrorShare: 0.01}}}})
	pods := []corev1.Pod{pod("default", "web-a", "h", "web:1", true)}
	for range 200 {
		s.answer(pods)
	}
	labels := series("default", "web-a", "h", "web:1")
	if failed, ok := s.requestCount(labels, "500"), s.requestCount(labels, "200"); failed != 20 || ok != 1980 {
		t.Errorf("1 %% of 2000 requests: %g failed, %g ok; want 20 and 1980", failed, ok)
	}
}

func TestAnswerRemovesSeriesOfGonePods(t *testing.T) {
	var table Table
	table.Serve("shop")
	table.SetLatency("shop", "web:1", 0.2)
	s := newSimulator(&table)
	a, b := pod("shop", "web-a", "h", "web:1", true), pod("shop", "web-b", "h", "web:1", true)
	s.answer([]corev1.Pod{a, b})
	if n := testutil.CollectAndCount(s.latency); n != 2 {
		t.Fatalf("%d latency series, want 2", n)
	}
	if v := testutil.ToFloat64(s.latency.With(series("shop", "web-a", "h", "web:1"))); math.Abs(v-0.2) > 0.1 {
		t.Errorf("latency %g, want about 0.2", v)
	}
	s.answer([]corev1.Pod{b})
	if n := testutil.CollectAndCount(s.requests); n != 2 {
		t.Errorf("%d request series after web-a went, want the 2 of web-b", n)
	}
	if n := testutil.CollectAndCount(s.latency); n != 1 {
		t.Errorf("%d latency series after web-a went, want 1", n)
	}
	table.Forget("shop")
	s.answer([]corev1.Pod{b})
	if n := testutil.CollectAndCount(s.requests) + testutil.CollectAndCount(s.latency); n != 0 {
		t.Errorf("%d series after the namespace was forgotten, want none", n)
	}
}

func TestHandlerExposesTheCounters(t *testing.T) {
	var table Table
	table.Serve("shop")
	s := newSimulator(&table)
	s.answer([]corev1.Pod{pod("shop", "web-a", "h", "web:1", true)})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	want := `demo_http_requests_total{code="200",namespace="shop",pod="web-a",pod_template_hash="h",version="web:1"} 10`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}
