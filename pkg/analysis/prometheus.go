package analysis

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Prometheus measures a metric with a PromQL query: a scalar is a number, a
// vector a list of numbers (empty: no data), a range query the list of values
// of its series.
type Prometheus struct {
	// Secrets reads credentials, TLS material and header values (past the
	// cache).
	Secrets client.Reader
	// Egress is the addresses queries may connect to; nil is the default
	// deny list.
	Egress *EgressPolicy
	// DefaultAddress is used by metrics that name no address.
	DefaultAddress string
	Now            func() time.Time

	// transports are kept by their configuration, so measurements over one
	// connection setting reuse connections instead of each leaving a
	// transport with idle connections behind.
	transports transports
}

// Measure implements Provider.
func (p *Prometheus) Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured {
	meas := Measured{Started: p.Now()}
	result, warnings, err := p.query(ctx, run, m.Provider.Prometheus, meas.Started)
	meas.Finished = p.Now()
	switch {
	case err != nil:
		meas.Err = err
	case result == nil:
		meas.NoData = true
	default:
		meas.Result = result
		text, _ := json.Marshal(result)
		meas.Value = string(text)
	}
	if len(warnings) > 0 {
		meas.Message = "Prometheus warnings: " + strings.Join(warnings, "; ")
	}
	return meas
}

func (p *Prometheus) query(ctx context.Context, run *v1alpha1.AnalysisRun, spec *v1alpha1.PrometheusMetric, now time.Time) (any, promv1.Warnings, error) {
	api, err := p.client(ctx, run.Namespace, spec.PrometheusConnection)
	if err != nil {
		return nil, nil, err
	}
	timeout, err := spec.Timeout.Parse()
	if err != nil {
		return nil, nil, err
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if spec.Range == nil {
		v, warnings, _, err := api.Query(ctx, spec.Query, now)
		if err != nil {
			return nil, warnings, fmt.Errorf("prometheus: %w", err)
		}
		r, err := numbers(v)
		return r, warnings, err
	}
	window, err := rangeOf(*spec.Range, now)
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus: range: %w", err)
	}
	v, warnings, _, err := api.QueryRange(ctx, spec.Query, window)
	if err != nil {
		return nil, warnings, fmt.Errorf("prometheus: %w", err)
	}
	r, err := numbers(v)
	return r, warnings, err
}

// numbers converts a query result; nil means no data.
func numbers(v model.Value) (any, error) {
	switch x := v.(type) {
	case *model.Scalar:
		return float64(x.Value), nil
	case model.Vector:
		if len(x) == 0 {
			return nil, nil
		}
		out := make([]float64, len(x))
		for i, s := range x {
			out[i] = float64(s.Value)
		}
		return out, nil
	case model.Matrix:
		var out []float64
		for _, series := range x {
			for _, pt := range series.Values {
				out = append(out, float64(pt.Value))
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	return nil, fmt.Errorf("prometheus: unsupported result type %s", v.Type())
}

// client builds the Prometheus API client: address (or the controller's
// default), bearer token or basic auth and TLS material from Secrets, and
// custom headers, through prometheus/common's HTTP client config; dialled
// through the egress policy, answers bounded, redirects only to the same
// origin.
func (p *Prometheus) client(ctx context.Context, namespace string, conn v1alpha1.PrometheusConnection) (promv1.API, error) {
	address := conn.Address
	if address == "" {
		address = p.DefaultAddress
	}
	if address == "" {
		return nil, errors.New("prometheus: no address: set provider.prometheus.address or the controller's --prometheus-address")
	}
	var cfg config.HTTPClientConfig
	if a := conn.Authentication; a != nil {
		if a.BearerToken != nil {
			v, err := secretValue(ctx, p.Secrets, namespace, *a.BearerToken)
			if err != nil {
				return nil, fmt.Errorf("prometheus bearer token: %w", err)
			}
			cfg.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(v)}
		}
		if b := a.BasicAuth; b != nil {
			user, err := secretValue(ctx, p.Secrets, namespace, b.Username)
			if err != nil {
				return nil, fmt.Errorf("prometheus basic auth: %w", err)
			}
			pass, err := secretValue(ctx, p.Secrets, namespace, b.Password)
			if err != nil {
				return nil, fmt.Errorf("prometheus basic auth: %w", err)
			}
			// An answer echoing the Authorization header shows them encoded.
			reveal(ctx, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
			cfg.BasicAuth = &config.BasicAuth{Username: user, Password: config.Secret(pass)}
		}
	}
	if t := conn.TLS; t != nil {
		cfg.TLSConfig = config.TLSConfig{InsecureSkipVerify: t.InsecureSkipVerify, ServerName: t.ServerName}
		if t.CA != nil {
			v, err := secretValue(ctx, p.Secrets, namespace, *t.CA)
			if err != nil {
				return nil, fmt.Errorf("prometheus TLS CA: %w", err)
			}
			cfg.TLSConfig.CA = v
		}
		if t.Cert != nil && t.Key != nil {
			cert, err := secretValue(ctx, p.Secrets, namespace, *t.Cert)
			if err != nil {
				return nil, fmt.Errorf("prometheus TLS cert: %w", err)
			}
			key, err := secretValue(ctx, p.Secrets, namespace, *t.Key)
			if err != nil {
				return nil, fmt.Errorf("prometheus TLS key: %w", err)
			}
			cfg.TLSConfig.Cert, cfg.TLSConfig.Key = cert, config.Secret(key)
		}
	}
	rt, err := p.transports.get(cfg, func() (http.RoundTripper, error) {
		return config.NewRoundTripperFromConfig(cfg, "rollouts-analysis", config.WithDialContextFunc(p.Egress.dialContext))
	})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	headers, err := headerValues(ctx, p.Secrets, namespace, conn.Headers)
	if err != nil {
		return nil, err
	}
	if len(headers) > 0 {
		rt = withHeaders{rt: rt, headers: headers}
	}
	c, err := promapi.NewClient(promapi.Config{Address: address, Client: httpClient(rt)})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return promv1.NewAPI(c), nil
}

// maxTransports bounds the transports kept: past it (many distinct
// credentials, or rotated ones) all are dropped and their idle connections
// closed, and the cache starts again.
const maxTransports = 64

// transports caches round trippers by a digest of their configuration,
// secret values included (the digest, never the values, is the key).
type transports struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]http.RoundTripper
}

func (t *transports) get(cfg config.HTTPClientConfig, build func() (http.RoundTripper, error)) (http.RoundTripper, error) {
	key := configDigest(cfg)
	t.mu.Lock()
	defer t.mu.Unlock()
	if rt, ok := t.m[key]; ok {
		return rt, nil
	}
	rt, err := build()
	if err != nil {
		return nil, err
	}
	if len(t.m) >= maxTransports {
		for _, old := range t.m {
			if c, ok := old.(interface{ CloseIdleConnections() }); ok {
				c.CloseIdleConnections()
			}
		}
		t.m = nil
	}
	if t.m == nil {
		t.m = map[[sha256.Size]byte]http.RoundTripper{}
	}
	t.m[key] = rt
	return rt, nil
}

// configDigest hashes what makes two client configurations differ. The
// config's own marshalling hides secrets, so the fields are written out.
func configDigest(cfg config.HTTPClientConfig) [sha256.Size]byte {
	var parts []string
	if a := cfg.Authorization; a != nil {
		parts = append(parts, "authorization", a.Type, string(a.Credentials))
	}
	if b := cfg.BasicAuth; b != nil {
		parts = append(parts, "basic", b.Username, string(b.Password))
	}
	t := cfg.TLSConfig
	parts = append(parts, "tls", strconv.FormatBool(t.InsecureSkipVerify), t.ServerName, t.CA, t.Cert, string(t.Key))
	h := sha256.New()
	for _, p := range parts {
		// Length-prefixed, so no two lists write the same bytes.
		_, _ = fmt.Fprintf(h, "%d:%s;", len(p), p) // a hash never fails to write
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// withHeaders adds fixed headers to every request.
type withHeaders struct {
	rt      http.RoundTripper
	headers map[string]string
}

func (w withHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	return w.rt.RoundTrip(req)
}
