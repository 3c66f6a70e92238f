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
	"sync"
	"time"

	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// maxWebBody bounds how much of an answer the web provider reads.
const maxWebBody = 1 << 20

// Web measures a metric with an HTTP request whose JSON answer (or the part
// jsonPath selects) is the result.
type Web struct {
	// Secrets reads header values from Secrets.
	Secrets client.Reader
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
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: insecure}, //nolint:gosec // the user's explicit choice
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	actual, _ := w.transports.LoadOrStore(insecure, t)
	return actual.(*http.Transport)
}

// Measure implements Provider.
func (w *Web) Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured {
	meas := Measured{Started: w.Now()}
	result, text, err := w.get(ctx, run, m.Provider.Web)
	meas.Finished = w.Now()
	switch {
	case errors.Is(err, errNoData):
		meas.NoData = true
	case err != nil:
		meas.Err = err
	default:
		meas.Result, meas.Value = result, text
	}
	return meas
}

var errNoData = errors.New("no data")

func (w *Web) get(ctx context.Context, run *v1alpha1.AnalysisRun, spec *v1alpha1.WebMetric) (any, string, error) {
	timeout, err := spec.Timeout.Parse()
	if err != nil {
		return nil, "", err
	}
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	switch {
	case spec.Body != "" && spec.JSONBody != nil:
		return nil, "", errors.New("web: set body or jsonBody, not both")
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
		return nil, "", fmt.Errorf("web: %w", err)
	}
	headers, err := headerValues(ctx, w.Secrets, run.Namespace, spec.Headers)
	if err != nil {
		return nil, "", err
	}
	if spec.JSONBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	httpClient := &http.Client{Transport: w.transport(spec.InsecureSkipVerify)}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("web: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWebBody))
	if err != nil {
		return nil, "", fmt.Errorf("web: reading the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", fmt.Errorf("web: %s answered %s", spec.URL, resp.Status)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, "", fmt.Errorf("web: the answer is not JSON: %w", err)
	}
	result := doc
	if spec.JSONPath != "" {
		if result, err = selectPath(doc, spec.JSONPath); err != nil {
			return nil, "", err
		}
	}
	text, _ := json.Marshal(result)
	return result, string(text), nil
}

// selectPath applies a Kubernetes JSONPath ({$.data.ok}) and returns the
// selected value; nothing selected is no data.
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
	if len(results[0]) == 1 {
		return results[0][0].Interface(), nil
	}
	var list []any
	for _, v := range results[0] {
		list = append(list, v.Interface())
	}
	return list, nil
}
