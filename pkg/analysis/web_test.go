package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestWebProvider(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			_, _ = io.WriteString(w, `{"data": {"ok": true, "rate": 0.97, "latencies": [0.1, 0.2]}}`)
		case "/auth":
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"ok": true}`)
		case "/echo":
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "body": body})
		case "/slow":
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, `{}`)
		case "/text":
			_, _ = io.WriteString(w, "not json")
		case "/null":
			_, _ = io.WriteString(w, "null")
		case "/big", "/exact":
			size := maxBody
			if r.URL.Path == "/big" {
				size = 5 << 20
			}
			// No Content-Length: the limit holds while reading too.
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, `"`+strings.Repeat("x", size-2)+`"`)
		case "/bigdeclared":
			w.Header().Set("Content-Length", strconv.Itoa(2<<20))
		case "/hop":
			http.Redirect(w, r, "/health", http.StatusFound)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	secret := analysisSecret("shop", "token", map[string]string{"t": "Bearer s3cret"})
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "shop"}, Data: map[string][]byte{"t": []byte("Bearer s3cret")}}
	elsewhere := analysisSecret("bank", "vault", map[string]string{"t": "Bearer s3cret"})
	web := &Web{Secrets: fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(secret, unlabelled, elsewhere).Build(), Now: time.Now}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}}
	measure := func(spec v1alpha1.WebMetric) Measured {
		return web.Measure(context.Background(), run, &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Web: &spec}})
	}
	rows := []struct {
		name      string
		spec      v1alpha1.WebMetric
		value     string
		noData    bool
		errorLike string
	}{
		{"boolean by jsonPath", v1alpha1.WebMetric{URL: srv.URL + "/health", JSONPath: "{$.data.ok}"}, "true", false, ""},
		{"number by jsonPath", v1alpha1.WebMetric{URL: srv.URL + "/health", JSONPath: "{$.data.rate}"}, "0.97", false, ""},
		{"list by jsonPath", v1alpha1.WebMetric{URL: srv.URL + "/health", JSONPath: "{$.data.latencies}"}, "[0.1,0.2]", false, ""},
		{"whole body is not kept", v1alpha1.WebMetric{URL: srv.URL + "/auth", Headers: fromSecret("token")}, "", false, ""},
		{"POST with a JSON body", v1alpha1.WebMetric{URL: srv.URL + "/echo", Method: "POST", JSONBody: &apiextensionsv1.JSON{Raw: []byte(`{"check":"deep"}`)}, JSONPath: "{$.body}"}, `{"check":"deep"}`, false, ""},
		{"missing path is no data", v1alpha1.WebMetric{URL: srv.URL + "/health", JSONPath: "{$.data.nothing}"}, "", true, ""},
		// Found by FuzzWebJSONPath: this panicked, and ended the controller.
		{"null answer selected whole", v1alpha1.WebMetric{URL: srv.URL + "/null", JSONPath: "{$}"}, "null", false, ""},
		{"secret missing", v1alpha1.WebMetric{URL: srv.URL + "/auth", Headers: fromSecret("nope")}, "", false, `reading key "t" of Secret nope: analysis reads only Secrets that are in the run's namespace (shop) and labelled rollouts.kubeseed.io/analysis-secret: "true"`},
		{"secret not labelled", v1alpha1.WebMetric{URL: srv.URL + "/auth", Headers: fromSecret("other")}, "", false, `reading key "t" of Secret other: analysis reads only Secrets that are in the run's namespace (shop) and labelled rollouts.kubeseed.io/analysis-secret: "true"`},
		{"secret of another namespace", v1alpha1.WebMetric{URL: srv.URL + "/auth", Headers: fromSecret("vault")}, "", false, `Secret vault: analysis reads only Secrets that are in the run's namespace (shop)`},
		{"secret named by a path", v1alpha1.WebMetric{URL: srv.URL + "/auth", Headers: fromSecret("bank/vault")}, "", false, `Secret "bank/vault": not a Secret name (analysis reads only Secrets of the run's namespace)`},
		{"redirect to the same origin", v1alpha1.WebMetric{URL: srv.URL + "/hop", JSONPath: "{$.data.ok}"}, "true", false, ""},
		{"1 MiB answer", v1alpha1.WebMetric{URL: srv.URL + "/exact", JSONPath: "{$}"}, "", false, ""},
		{"5 MiB answer", v1alpha1.WebMetric{URL: srv.URL + "/big", JSONPath: "{$}"}, "", false, "the answer is larger than 1048576 bytes (1 MiB)"},
		{"2 MiB declared", v1alpha1.WebMetric{URL: srv.URL + "/bigdeclared", JSONPath: "{$}"}, "", false, "the answer is larger than 1048576 bytes (1 MiB)"},
		{"unauthorized", v1alpha1.WebMetric{URL: srv.URL + "/auth"}, "", false, "401 Unauthorized"},
		{"server error", v1alpha1.WebMetric{URL: srv.URL + "/down"}, "", false, "503 Service Unavailable"},
		{"timeout", v1alpha1.WebMetric{URL: srv.URL + "/slow", Timeout: "50ms"}, "", false, "deadline exceeded"},
		{"not JSON", v1alpha1.WebMetric{URL: srv.URL + "/text"}, "", false, "not JSON"},
		{"unreachable", v1alpha1.WebMetric{URL: "http://127.0.0.1:1/x", Timeout: "1s"}, "", false, "connection refused"},
		{"body and jsonBody", v1alpha1.WebMetric{URL: srv.URL + "/echo", Body: "x", JSONBody: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}, "", false, "not both"},
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
		case r.name == "1 MiB answer":
			if len(m.Value) != maxBody {
				t.Errorf("%s: a value of %d bytes, want %d", r.name, len(m.Value), maxBody)
			}
		case m.NoData != r.noData || m.Value != r.value:
			t.Errorf("%s: value %q noData %v; want %q %v", r.name, m.Value, m.NoData, r.value, r.noData)
		}
	}
	// Without jsonPath the conditions see the whole answer, and the
	// measurement keeps only the status.
	whole := measure(v1alpha1.WebMetric{URL: srv.URL + "/health"})
	if ok, _ := CompileConditions("result.data.ok == true", ""); whole.Value != "" || whole.Message != "HTTP 200 OK; without jsonPath no value is kept" {
		t.Errorf("without jsonPath: value %q, message %q", whole.Value, whole.Message)
	} else if phase, err := ok.Evaluate(whole.Result); err != nil || phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("result.data.ok == true on the whole answer: %s %v", phase, err)
	}
	// The result is typed for the conditions: a boolean stays a boolean.
	c, _ := CompileConditions("result == true", "")
	m := measure(v1alpha1.WebMetric{URL: srv.URL + "/health", JSONPath: "{$.data.ok}"})
	if phase, err := c.Evaluate(m.Result); err != nil || phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("result == true on a JSON boolean: %s %v", phase, err)
	}
}

// fromSecret is an Authorization header from key t of a Secret.
func fromSecret(name string) []v1alpha1.Header {
	return []v1alpha1.Header{{Key: "Authorization", ValueFrom: &v1alpha1.SecretValueFrom{SecretKeyRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "t"}}}}
}

// FuzzWebJSONPath gives the web provider's answer handling any body and any
// jsonPath. It never panics. A body that is not JSON is an error saying so,
// a jsonPath that does not parse or apply is an error naming it, and nothing
// selected is no data. Otherwise the kept text is the JSON of exactly the
// value the conditions see; without jsonPath nothing is kept. Recorded, no
// value or message over 1 KiB is stored: a longer value makes the
// measurement an Error that says how long it was.
func FuzzWebJSONPath(f *testing.F) {
	health := []byte(`{"data": {"ok": true, "rate": 0.97, "latencies": [0.1, 0.2], "name": null}, "items": [{"v": 1}, {"v": 2}, {"w": "x"}]}`)
	for _, path := range []string{
		"{$.data.ok}", "{$.data.rate}", "{$.data.latencies}", "{$.data.latencies[*]}", "{$.data.latencies[-1:]}",
		"{$.data.latencies[5]}", "{$.data.nothing}", "{$.data.name}", "{..v}", "{.items[?(@.v > 1)].v}",
		"{range .items[*]}{.v}{end}", "{.data.ok}{.data.rate}", "plain text", "{", "{$.items[0:3:0]}", "",
	} {
		f.Add(health, path)
	}
	f.Add([]byte(`"`+strings.Repeat("x", 1100)+`"`), "{$}")
	f.Add([]byte(`[`+strings.Repeat(`"abcdefgh",`, 120)+`1]`), "{$[*]}")
	f.Add([]byte(`not json`), "{$}")
	f.Add([]byte(`[1e400]`), "{$[0]}")
	f.Add([]byte(`null`), "{$}")
	f.Add([]byte(`{"a": {"b": [true, false]}}`), `{.a['b']}`)
	cond, err := CompileConditions("true", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		if !utf8.ValidString(path) {
			// A jsonPath comes from a Kubernetes object, whose strings are
			// UTF-8; the text around {…} would be kept as U+FFFD.
			return
		}
		r, err := answer(body, path, "200 OK")
		// As Measure turns it into a measurement.
		meas := Measured{Result: r.value, Value: r.text, Message: r.message}
		switch {
		case errors.Is(err, errNoData):
			if path == "" {
				t.Fatalf("%q without jsonPath: no data", body)
			}
			meas = Measured{NoData: true}
		case err != nil:
			switch msg := err.Error(); {
			case strings.HasPrefix(msg, "web: the answer is not JSON: "):
				var doc any
				if json.Unmarshal(body, &doc) == nil {
					t.Fatalf("%q: %v, but it is JSON", body, err)
				}
			case !strings.HasPrefix(msg, fmt.Sprintf("web: jsonPath %q: ", path)) || path == "":
				t.Fatalf("%q, jsonPath %q: %q says neither what is wrong with the answer nor names the jsonPath", body, path, msg)
			}
			meas = Measured{Err: err}
		case path == "":
			if r.text != "" || r.message != "HTTP 200 OK; without jsonPath no value is kept" {
				t.Fatalf("%q without jsonPath: kept %q, message %q", body, r.text, r.message)
			}
		default:
			var back any
			if err := json.Unmarshal([]byte(r.text), &back); err != nil || !reflect.DeepEqual(back, intsAsFloats(r.value)) {
				t.Fatalf("%q, jsonPath %q: the conditions see %#v but the value kept is %q (%v)", body, path, r.value, r.text, err)
			}
		}

		mr := &v1alpha1.MetricResult{Name: "m"}
		Record(&v1alpha1.Metric{Name: "m", Interval: "1m"}, mr, cond, meas, 0)
		if len(mr.Measurements) != 1 {
			t.Fatalf("%q, jsonPath %q: %d measurements", body, path, len(mr.Measurements))
		}
		got := mr.Measurements[0]
		if len(got.Value) > v1alpha1.MaxMeasurementBytes || len(got.Message) > v1alpha1.MaxMeasurementBytes || len(mr.Message) > v1alpha1.MaxMeasurementBytes {
			t.Fatalf("%q, jsonPath %q: stored a value of %d bytes, messages of %d and %d", body, path, len(got.Value), len(got.Message), len(mr.Message))
		}
		if err != nil {
			return
		}
		if n := len(r.text); n > v1alpha1.MaxMeasurementBytes {
			if want := fmt.Sprintf("measurement value is %d bytes, more than the 1 KiB allowed", n); got.Phase != v1alpha1.AnalysisPhaseError || got.Message != want {
				t.Fatalf("%q, jsonPath %q: a value of %d bytes recorded as %s %q, want an Error %q", body, path, n, got.Phase, got.Message, want)
			}
			return
		}
		want := v1alpha1.AnalysisPhaseSuccessful // by the condition "true"
		if !hasData(r.value) {
			want = v1alpha1.AnalysisPhaseError // by the default noDataPolicy
		}
		if got.Value != r.text || got.Phase != want {
			t.Fatalf("%q, jsonPath %q: recorded %s %q, want %s %q", body, path, got.Phase, got.Value, want, r.text)
		}
	})
}

// intsAsFloats is v with its integers (a literal such as {0} in a jsonPath
// gives an int) as the float64 JSON numbers they are.
func intsAsFloats(v any) any {
	switch v := v.(type) {
	case int:
		return float64(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = intsAsFloats(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = intsAsFloats(e)
		}
		return out
	}
	return v
}
