package podsim

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scrape reads the simulator's metrics: each sample line's value by its
// name and labels, as written.
func scrape(t *testing.T, s *Simulator) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body.String())
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// mustGet fails the test unless the GET is answered with want.
func mustGet(t *testing.T, addr string, want int) {
	t.Helper()
	if got := status(t, addr); got != want {
		t.Fatalf("GET %s: %d, want %d", addr, got, want)
	}
}

// status is the status of a GET's answer; no answer fails the test.
func status(t *testing.T, addr string) int {
	t.Helper()
	resp, err := get(addr)
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	return resp.status
}

func TestMetricsCountTheAnswers(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	p := runningPod("a", "web:bad-30-slow-20ms", port)
	s.sync(p)
	defer stopAll(s)
	const labels = `namespace="ns",pod="web-a",pod_template_hash="abc123",version="web:bad-30-slow-20ms"`
	if got := scrape(t, s); len(got) != 0 {
		t.Errorf("series before any request: %v", got)
	}

	// The first answer brings the series of both codes.
	mustGet(t, addr, http.StatusOK)
	got := scrape(t, s)
	if got[`demo_http_requests_total{code="200",`+labels+`}`] != 1 {
		t.Errorf("after one answer: %v", got)
	}
	if v, ok := got[`demo_http_requests_total{code="500",`+labels+`}`]; !ok || v != 0 {
		t.Errorf("no 500 series at 0 after the first answer: %v", got)
	}

	for range 9 {
		status(t, addr)
	}
	got = scrape(t, s)
	for series, want := range map[string]float64{
		`demo_http_requests_total{code="200",` + labels + `}`:                 7,
		`demo_http_requests_total{code="500",` + labels + `}`:                 3,
		`demo_http_request_duration_seconds_count{` + labels + `}`:            10,
		`demo_http_request_duration_seconds_bucket{` + labels + `,le="0.01"}`: 0,
		`demo_http_request_duration_seconds_bucket{` + labels + `,le="0.5"}`:  10,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	// Measured, not drawn: ten answers of at least 20ms each.
	if sum := got[`demo_http_request_duration_seconds_sum{`+labels+`}`]; sum < 0.2 || sum > 2 {
		t.Errorf("10 answers of web:slow-20ms took %gs in all, want 0.2s and a little more", sum)
	}

	// A pod that goes takes its series along.
	deleting := p.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	s.sync(deleting)
	if got := scrape(t, s); len(got) != 0 {
		t.Errorf("series after the pod was deleted: %v", got)
	}
}

func TestMetricsAreThePods(t *testing.T) {
	s := newSimulator(io.Discard)
	portA, portB := freePort(t), freePort(t)
	s.sync(runningPod("a", "web:1", portA))
	b := runningPod("b", "web:2", portB)
	b.Namespace = "other"
	s.sync(b)
	defer stopAll(s)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, net.JoinHostPort("127.0.0.1", itoa(portA)), http.StatusOK)
	mustGet(t, net.JoinHostPort("127.0.0.1", itoa(portA)), http.StatusOK)
	mustGet(t, net.JoinHostPort("127.0.0.1", itoa(portB)), http.StatusOK)
	got := scrape(t, s)
	for series, want := range map[string]float64{
		`demo_http_requests_total{code="200",namespace="ns",pod="web-a",pod_template_hash="abc123",version="web:1"}`:    2,
		`demo_http_requests_total{code="200",namespace="other",pod="web-b",pod_template_hash="abc123",version="web:2"}`: 1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v; all: %v", series, got[series], want, got)
		}
	}
}

func TestSetBehaviourWinsOverTheTag(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	s.sync(runningPod("a", "web:bad-100", port))
	defer stopAll(s)
	mustGet(t, addr, http.StatusInternalServerError)

	// Another namespace's or image's behaviour is not this pod's.
	for _, other := range [][2]string{{"other", "web:bad-100"}, {"ns", "web:1"}} {
		if err := s.SetBehaviour(other[0], other[1], Behaviour{}); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, addr, http.StatusInternalServerError)

	// From the next request on, without the pod being served anew.
	if err := s.SetBehaviour("ns", "web:bad-100", Behaviour{Latency: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustGet(t, addr, http.StatusOK)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered in %s, want at least the 50ms set", d)
	}
	if err := s.SetBehaviour("ns", "web:bad-100", Behaviour{ErrorShare: 0.5}); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for range 10 {
		codes[status(t, addr)]++
	}
	if codes[http.StatusInternalServerError] != 5 {
		t.Errorf("error share 0.5 answered %v, want 5 of 10 with 500", codes)
	}

	s.ResetBehaviours("ns")
	mustGet(t, addr, http.StatusInternalServerError)

	for _, bad := range []Behaviour{{ErrorShare: 1.5}, {ErrorShare: -0.1}, {Latency: -time.Second}} {
		if err := s.SetBehaviour("ns", "web:1", bad); err == nil {
			t.Errorf("SetBehaviour(%+v) took it", bad)
		}
	}
}

func TestAddresses(t *testing.T) {
	p := runningPod("a", "web:1", 9000)
	got, err := Addresses(p)
	if err != nil || len(got) != 1 || got[0].String() != "127.0.0.1:9000" {
		t.Errorf("Addresses = %v, %v; want 127.0.0.1:9000", got, err)
	}
	p.Status.PodIP, p.Status.PodIPs = "10.0.0.1", nil
	if got, err := Addresses(p); err == nil || len(got) != 0 {
		t.Errorf("Addresses of a pod at 10.0.0.1 = %v, %v; want none and an error", got, err)
	}
}
