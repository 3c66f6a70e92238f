//go:build integration

package analysis

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestIntegrationAnalysisSecrets runs web and prometheus metrics whose
// credentials come from Secrets, against servers that echo them back. A
// labelled Secret of the run's namespace reaches the server and shows as
// *** in the run; an unlabelled one, or one of another namespace, is an
// Error naming the rule and never leaves the controller.
func TestIntegrationAnalysisSecrets(t *testing.T) {
	const (
		token    = "tok-3f9a1c"
		other    = "tok-unlabelled-77"
		foreign  = "tok-foreign-42"
		user     = "analyst"
		password = "pw-8d2e"
	)
	startReconciler(t)
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path == "/web" {
			_ = json.NewEncoder(w).Encode(map[string]string{"echo": r.Header.Get("Authorization")})
			return
		}
		// A Prometheus refusing the query, quoting the credentials.
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, fmt.Sprintf(`{"status":"error","errorType":"bad_data","error":"refused %s"}`, r.Header.Get("Authorization")))
	}))
	defer srv.Close()

	ctx := context.Background()
	ns, elsewhere := env.Namespace(t), env.Namespace(t)
	for _, s := range []*corev1.Secret{
		analysisSecret(ns, "api", map[string]string{"token": token, "user": user, "password": password}),
		{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Data: map[string][]byte{"token": []byte(other)}},
		analysisSecret(elsewhere, "bank", map[string]string{"token": foreign}),
	} {
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	ref := func(name, key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
	}
	web := func(secret string) v1alpha1.Metric {
		return v1alpha1.Metric{
			Name: "echo", SuccessCondition: "result != ''", ConsecutiveErrorLimit: ptr.To[int32](0),
			Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{
				URL: srv.URL + "/web", JSONPath: "{$.echo}",
				Headers: []v1alpha1.Header{{Key: "Authorization", ValueFrom: &v1alpha1.SecretValueFrom{SecretKeyRef: ref(secret, "token")}}},
			}},
		}
	}
	prom := v1alpha1.Metric{
		Name: "prom", SuccessCondition: "result > 0", ConsecutiveErrorLimit: ptr.To[int32](0),
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{Query: "up", PrometheusConnection: v1alpha1.PrometheusConnection{
			Address:        srv.URL,
			Authentication: &v1alpha1.HTTPAuthentication{BasicAuth: &v1alpha1.BasicAuth{Username: ref("api", "user"), Password: ref("api", "password")}},
		}}},
	}
	rule := fmt.Sprintf(`analysis reads only Secrets that are in the run's namespace (%s) and labelled rollouts.kubeseed.io/analysis-secret: "true"`, ns)
	rows := []struct {
		name   string
		metric v1alpha1.Metric
		phase  v1alpha1.AnalysisPhase
		want   string // in the run's message
		value  string // of the measurement
	}{
		{"labelled", web("api"), v1alpha1.AnalysisPhaseSuccessful, "", "\"***\""},
		{"unlabelled", web("plain"), v1alpha1.AnalysisPhaseError, `reading key "token" of Secret plain: ` + rule, ""},
		{"foreign", web("bank"), v1alpha1.AnalysisPhaseError, `reading key "token" of Secret bank: ` + rule, ""},
		{"prometheus", prom, v1alpha1.AnalysisPhaseError, "refused Basic ***", ""},
	}
	for _, r := range rows {
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: ns}, Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{r.metric}}}
		if err := env.Client.Create(ctx, run); err != nil {
			t.Fatal(err)
		}
		got := waitRun(t, client.ObjectKeyFromObject(run), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
		if got.Status.Phase != r.phase || !strings.Contains(got.Status.Message, r.want) {
			t.Errorf("%s: %s %q; want %s %q", r.name, got.Status.Phase, got.Status.Message, r.phase, r.want)
		}
		if ms := got.Status.MetricResults[0].Measurements; len(ms) != 1 || ms[0].Value != r.value {
			t.Errorf("%s: measurements %+v, want one of value %q", r.name, ms, r.value)
		}
		raw, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{token, other, foreign, user, password, base64.StdEncoding.EncodeToString([]byte(user + ":" + password))} {
			if strings.Contains(string(raw), v) {
				t.Errorf("%s holds a Secret's value %q: %s", r.name, v, raw)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	if !slices.Equal(seen, []string{token, basic}) {
		t.Errorf("the server saw %q; want the labelled Secret's token and the basic auth, nothing else", seen)
	}
}
