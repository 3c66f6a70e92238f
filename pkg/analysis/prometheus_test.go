package analysis

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestPrometheusEgress: queries go through the same egress policy, answer
// bound and redirect rule as web requests. The server is a stand-in for
// Prometheus's HTTP API; the real one is in the integration tests.
func TestPrometheusEgress(t *testing.T) {
	other, otherConns := countingServer(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`)
	}))
	srv, _ := countingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.FormValue("query") {
		case "big":
			_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"1"]},"padding":"`+strings.Repeat("x", 2<<20)+`"}`)
		case "away":
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		default:
			_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"0.5"]}}`)
		}
	}))
	_, deniedConns := countingServer(t, "127.0.0.3:0", http.NotFoundHandler())
	p := &Prometheus{Egress: NewEgressPolicy(mustCIDRs(t, "127.0.0.3"), nil), Now: time.Now}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}}
	measure := func(address, query string) Measured {
		return p.Measure(context.Background(), run, &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{
			PrometheusConnection: v1alpha1.PrometheusConnection{Address: address, Timeout: "5s"}, Query: query,
		}}})
	}
	if m := measure(srv.URL, "up"); m.Err != nil || m.Value != "0.5" {
		t.Fatalf("plain query: %+v", m)
	}
	rows := []struct{ address, query, errorLike string }{
		{srv.URL, "big", "the answer is larger than 1048576 bytes (1 MiB)"},
		{srv.URL, "away", "refusing the redirect from " + srv.URL + " to " + other.URL},
		{"http://127.0.0.3:1", "up", "127.0.0.3 is denied by the analysis egress policy (127.0.0.3/32 from --analysis-deny-cidrs"},
	}
	for _, r := range rows {
		if m := measure(r.address, r.query); m.Err == nil || !strings.Contains(m.Err.Error(), r.errorLike) {
			t.Errorf("%s %s: %v, want an error containing %q", r.address, r.query, m.Err, r.errorLike)
		}
	}
	if n := otherConns.Load() + deniedConns.Load(); n != 0 {
		t.Errorf("refused servers got %d connections", n)
	}
}

// TestPrometheusReusesConnections: measurements over the same connection
// settings share a transport, so they reuse one connection instead of each
// opening its own (and leaving it idle).
func TestPrometheusReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`)
	}))
	p := &Prometheus{Now: time.Now}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}}
	measure := func(insecure bool) {
		t.Helper()
		conn := v1alpha1.PrometheusConnection{Address: srv.URL, Timeout: "5s"}
		if insecure {
			conn.TLS = &v1alpha1.TLSConfig{InsecureSkipVerify: true}
		}
		m := p.Measure(context.Background(), run, &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{
			PrometheusConnection: conn, Query: "up",
		}}})
		if m.Err != nil {
			t.Fatal(m.Err)
		}
	}
	for range 5 {
		measure(false)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 measurements opened %d connections, want 1", n)
	}
	measure(true)
	if n := conns.Load(); n != 2 {
		t.Errorf("other TLS settings: %d connections in all, want a second transport's", n)
	}
}
