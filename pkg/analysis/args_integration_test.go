//go:build integration

package analysis

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestIntegrationSecretArgs passes an arg from a Secret from a template to
// a web check: the server gets the value in the URL and a header, while
// the AnalysisRun — spec and status, errors quoting the URL included —
// never holds it; a missing Secret or key is an Error naming both.
func TestIntegrationSecretArgs(t *testing.T) {
	const token = "s3cr3t-t0ken"
	startReconciler(t)
	var authorized atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ok := r.URL.Query().Get("token") == token && r.Header.Get("Authorization") == "Bearer "+token
		if ok {
			authorized.Add(1)
		}
		_ = json.NewEncoder(w).Encode(map[string]bool{"ok": ok})
	}))
	defer srv.Close()
	ctx := context.Background()
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, analysisSecret(ns, "api", map[string]string{"token": token})); err != nil {
		t.Fatal(err)
	}
	template := func(path string) v1alpha1.AnalysisTemplateSpec {
		return v1alpha1.AnalysisTemplateSpec{
			Args: []v1alpha1.AnalysisArg{{Name: "token"}},
			Metrics: []v1alpha1.Metric{{
				Name: "auth", SuccessCondition: "result == true", ConsecutiveErrorLimit: ptr.To[int32](0),
				Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{
					URL: srv.URL + path + "?token={{args.token}}", JSONPath: "{$.ok}",
					Headers: []v1alpha1.Header{{Key: "Authorization", Value: ptr.To("Bearer {{args.token}}")}},
				}},
			}},
		}
	}
	create := func(name, path, secret, key string) *v1alpha1.AnalysisRun {
		spec, err := BuildRunSpec([]v1alpha1.AnalysisTemplateSpec{template(path)}, []v1alpha1.AnalysisArg{secretArg("token", secret, key)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
		if err := env.Client.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
		return run
	}
	runs := []*v1alpha1.AnalysisRun{
		create("ok", "/check", "api", "token"),
		create("down", "/down", "api", "token"),
		create("nosecret", "/check", "nope", "token"),
		create("nokey", "/check", "api", "password"),
	}
	want := []struct {
		phase   v1alpha1.AnalysisPhase
		message string
	}{
		{v1alpha1.AnalysisPhaseSuccessful, ""},
		{v1alpha1.AnalysisPhaseError, "503 Service Unavailable"},
		{v1alpha1.AnalysisPhaseError, `reading key "token" of Secret nope`},
		{v1alpha1.AnalysisPhaseError, `secret api has no key "password"`},
	}
	for i, run := range runs {
		got := waitRun(t, client.ObjectKeyFromObject(run), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
		if got.Status.Phase != want[i].phase || !strings.Contains(got.Status.Message, want[i].message) {
			t.Errorf("%s: %s %q; want %s %q", run.Name, got.Status.Phase, got.Status.Message, want[i].phase, want[i].message)
		}
		raw, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), token) {
			t.Errorf("%s holds the Secret's value: %s", run.Name, raw)
		}
		if !strings.Contains(string(raw), "{{args.token}}") {
			t.Errorf("%s lost the placeholder of the Secret arg", run.Name)
		}
	}
	if authorized.Load() == 0 {
		t.Error("the server never got the Secret's value")
	}
	// The error quoting the URL shows it without the value.
	var down v1alpha1.AnalysisRun
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(runs[1]), &down); err != nil {
		t.Fatal(err)
	}
	if msg := down.Status.MetricResults[0].Measurements[0].Message; !strings.Contains(msg, "token=***") {
		t.Errorf("the error of /down reads %q; want the URL with the value redacted", msg)
	}
}
