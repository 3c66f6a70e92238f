//go:build integration

package analysis

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

// TestIntegrationPrometheusProvider queries a real Prometheus scraping an
// exporter the test controls.
func TestIntegrationPrometheusProvider(t *testing.T) {
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE success_rate gauge\nsuccess_rate{version=\"v2\"} 0.97\nsuccess_rate{version=\"v1\"} 0.99\n")
	}))
	defer exporter.Close()
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(exporter.URL, "http://"))

	// A proxy that wants a bearer token, and a slow one.
	target, _ := url.Parse(prom)
	proxy := httputil.NewSingleHostReverseProxy(target)
	authed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" || r.Header.Get("X-Scope-OrgID") != "team-a" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer authed.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
		proxy.ServeHTTP(w, r)
	}))
	defer slow.Close()

	ctx := context.Background()
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, analysisSecret(ns, "prom", map[string]string{"token": "t0ken"})); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{Secrets: env.Client, Now: time.Now}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}}
	measure := func(spec v1alpha1.PrometheusMetric) Measured {
		return p.Measure(ctx, run, &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Prometheus: &spec}})
	}
	conn := v1alpha1.PrometheusConnection{Address: prom}

	// Wait for the first scrapes.
	deadline := time.Now().Add(60 * time.Second)
	for m := measure(v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: "success_rate"}); m.NoData || m.Err != nil; m = measure(v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: "success_rate"}) {
		if time.Now().After(deadline) {
			t.Fatalf("no data scraped: %+v", m)
		}
		time.Sleep(500 * time.Millisecond)
	}

	token := corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "prom"}, Key: "token"}
	rows := []struct {
		name      string
		spec      v1alpha1.PrometheusMetric
		value     string
		noData    bool
		errorLike string
	}{
		{"instant vector", v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: `success_rate{version="v2"}`}, "[0.97]", false, ""},
		{"scalar", v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: `scalar(success_rate{version="v1"})`}, "0.99", false, ""},
		{"empty result", v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: `success_rate{version="v9"}`}, "", true, ""},
		{"bad query", v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: `success_rate{`}, "", false, "parse error"},
		{"auth and headers via Secret", v1alpha1.PrometheusMetric{PrometheusConnection: v1alpha1.PrometheusConnection{
			Address:        authed.URL,
			Authentication: &v1alpha1.HTTPAuthentication{BearerToken: &token},
			Headers:        []v1alpha1.Header{{Key: "X-Scope-OrgID", Value: ptr.To("team-a")}},
		}, Query: `success_rate{version="v2"}`}, "[0.97]", false, ""},
		{"missing credentials", v1alpha1.PrometheusMetric{PrometheusConnection: v1alpha1.PrometheusConnection{Address: authed.URL}, Query: "success_rate"}, "", false, "401"},
		{"timeout", v1alpha1.PrometheusMetric{PrometheusConnection: v1alpha1.PrometheusConnection{Address: slow.URL, Timeout: "100ms"}, Query: "success_rate"}, "", false, "deadline exceeded"},
		{"unreachable", v1alpha1.PrometheusMetric{PrometheusConnection: v1alpha1.PrometheusConnection{Address: "http://127.0.0.1:1"}, Query: "up"}, "", false, "connection refused"},
		{"no address", v1alpha1.PrometheusMetric{Query: "up"}, "", false, "no address"},
	}
	for _, r := range rows {
		m := measure(r.spec)
		switch {
		case r.errorLike != "":
			if m.Err == nil || !strings.Contains(m.Err.Error(), r.errorLike) {
				t.Errorf("%s: error %v, want one containing %q", r.name, m.Err, r.errorLike)
			}
		case m.Err != nil:
			t.Errorf("%s: %v", r.name, m.Err)
		case m.NoData != r.noData || m.Value != r.value:
			t.Errorf("%s: value %q noData %v; want %q %v", r.name, m.Value, m.NoData, r.value, r.noData)
		}
	}
	rangeM := measure(v1alpha1.PrometheusMetric{PrometheusConnection: conn, Query: `success_rate{version="v2"}`,
		Range: &v1alpha1.PrometheusRange{Start: "30s", Step: "1s"}})
	if list, ok := rangeM.Result.([]float64); rangeM.Err != nil || !ok || len(list) == 0 || list[0] != 0.97 {
		t.Errorf("range query: %+v", rangeM)
	}

	// Through the reconciler: an unreachable Prometheus ends the metric in
	// Error after consecutiveErrorLimit+1 errors in a row.
	startReconciler(t)
	ar := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "unreachable", Namespace: ns},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{
			Name: "rate", Interval: "1s", ConsecutiveErrorLimit: ptr.To[int32](1), SuccessCondition: "result[0] > 0.9",
			Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{PrometheusConnection: v1alpha1.PrometheusConnection{Address: "http://127.0.0.1:1"}, Query: "up"}},
		}}},
	}
	if err := env.Client.Create(ctx, ar); err != nil {
		t.Fatal(err)
	}
	got := waitRun(t, client.ObjectKeyFromObject(ar), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if got.Status.Phase != v1alpha1.AnalysisPhaseError || got.Status.MetricResults[0].Error != 2 || !strings.Contains(got.Status.Message, "connection refused") {
		t.Errorf("unreachable Prometheus: %s, %d errors, %q", got.Status.Phase, got.Status.MetricResults[0].Error, got.Status.Message)
	}
}
