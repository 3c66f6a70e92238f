package analysis

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sync"
	"time"

	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Web measures a metric with an HTTP request whose JSON answer (or the part
// jsonPath selects) is the result. Only the part jsonPath selects is kept as
// the measurement's value; without jsonPath the conditions see the whole
// answer but the measurement keeps only its HTTP status.
type Web struct {
	// Secrets reads header values from Secrets (past the cache).
	Secrets client.Reader
	// Egress is the addresses measurements may connect to; nil is the
	// default deny list.
	Egress *EgressPolicy
	// Clock gives measurement times.
	Now func() time.Time

	// transports are shared by every measurement, so connections are
	// reused: one verifies TLS certificates, one (at the user's explicit
	// request) does not.
	transports sync.Map // bool (insecureSkipVerify) → *http.Transport
}

func (w *Web) transport(insecure bool) http.RoundTripper {
	if t, ok := w.transports.Load(insecure); ok {
		return t.(*http.Transport)
	}
	t := &http.Transport{
		Proxy:               w.Egress.proxy,
		DialContext:         w.Egress.dialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: insecure}, //nolint:gosec // the user's explicit choice
		MaxIdleConnsPerHost: 4,
		// Headers are not kept, so they need not be large.
		MaxResponseHeaderBytes: 64 << 10,
		IdleConnTimeout:        90 * time.Second,
	}
	actual, _ := w.transports.LoadOrStore(insecure, t)
	return actual.(*http.Transport)
}

// Measure implements Provider.
func (w *Web) Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured {
	meas := Measured{Started: w.Now()}
	result, err := w.get(ctx, run, m.Provider.Web)
	meas.Finished = w.Now()
	switch {
	case errors.Is(err, errNoData):
		meas.NoData = true
	case err != nil:
		meas.Err = err
	default:
		meas.Result, meas.Value, meas.Message = result.value, result.text, result.message
	}
	return meas
}

var errNoData = errors.New("no data")

// webResult is what an answer gave: the value for the conditions, the text
// kept as the measurement's value, and a message.
type webResult struct {
	value         any
	text, message string
}

func (w *Web) get(ctx context.Context, run *v1alpha1.AnalysisRun, spec *v1alpha1.WebMetric) (webResult, error) {
	timeout, err := spec.Timeout.Parse()
	if err != nil {
		return webResult{}, err
	}
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	switch {
	case spec.Body != "" && spec.JSONBody != nil:
		return webResult{}, errors.New("web: set body or jsonBody, not both")
	case spec.Body != "":
		body = bytes.NewBufferString(spec.Body)
	case spec.JSONBody != nil:
		body = bytes.NewReader(spec.JSONBody.Raw)
	}
	method := spec.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, spec.URL, body)
	if err != nil {
		return webResult{}, fmt.Errorf("web: %w", err)
	}
	headers, err := headerValues(ctx, w.Secrets, run.Namespace, spec.Headers)
	if err != nil {
		return webResult{}, err
	}
	if spec.JSONBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient(w.transport(spec.InsecureSkipVerify)).Do(req)
	if err != nil {
		return webResult{}, fmt.Errorf("web: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	// The status code, not the server's reason phrase: the answer's text
	// is not the server's to put in the status.
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return webResult{}, fmt.Errorf("web: %s answered %s", spec.URL, status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return webResult{}, fmt.Errorf("web: reading the answer: %w", err)
	}
	return answer(raw, spec.JSONPath, status)
}

// answer is what the body of a successful answer gives: the value jsonPath
// selects and its JSON text, or without jsonPath the whole document.
func answer(raw []byte, jsonPath, status string) (webResult, error) {
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return webResult{}, fmt.Errorf("web: the answer is not JSON: %w", err)
	}
	if jsonPath == "" {
		// The whole answer is for the conditions only: it may hold anything
		// the server knows, so the measurement keeps only the status.
		return webResult{value: doc, message: "HTTP " + status + "; without jsonPath no value is kept"}, nil
	}
	result, err := selectPath(doc, jsonPath)
	if err != nil {
		return webResult{}, err
	}
	text, _ := json.Marshal(result)
	return webResult{value: result, text: string(text)}, nil
}

// selectPath applies a Kubernetes JSONPath ({$.data.ok}) and returns the
// selected value; nothing selected is no data.
//
// An answer of JSON null selected whole ({$}) comes back from jsonpath as
// the zero reflect.Value, on which Interface panics, and a panic in a
// measurement ends the controller: it is null, which is no data.
func selectPath(doc any, path string) (any, error) {
	jp := jsonpath.New("metric")
	if err := jp.Parse(path); err != nil {
		return nil, fmt.Errorf("web: jsonPath %q: %w", path, err)
	}
	jp.AllowMissingKeys(true)
	results, err := jp.FindResults(doc)
	if err != nil {
		return nil, fmt.Errorf("web: jsonPath %q: %w", path, err)
	}
	if len(results) == 0 || len(results[0]) == 0 {
		return nil, errNoData
	}
	value := func(v reflect.Value) any {
		if !v.IsValid() {
			return nil
		}
		return v.Interface()
	}
	if len(results[0]) == 1 {
		return value(results[0][0]), nil
	}
	var list []any
	for _, v := range results[0] {
		list = append(list, value(v))
	}
	return list, nil
}
