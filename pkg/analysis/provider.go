package analysis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Provider measures one metric of a run once. run.Status is the status the
// reconcile started from: it holds the metric's earlier measurements, not
// this one.
type Provider interface {
	Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured
}

// Resumer is a Provider whose measurements outlive a reconcile (a Job):
// Measure starts one and returns it Running, Resume looks at it again on
// later reconciles until it returns an outcome, and Abort stops it when the
// run ends first.
type Resumer interface {
	Provider
	Resume(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric, in *v1alpha1.Measurement) Measured
	Abort(ctx context.Context, run *v1alpha1.AnalysisRun, in *v1alpha1.Measurement) error
}

// Registry holds the providers the reconciler offers, by kind. A metric whose
// provider is missing is an Error, never silently measured by another.
type Registry map[v1alpha1.ProviderKind]Provider

// secretValue reads one key of a Secret for a run in namespace, with a live
// get (Secrets are never cached). Analysis reads only Secrets of the run's
// own namespace that their owner opted in with the analysis-secret label:
// a tenant who may write analysis objects must not be able to send another
// workload's credentials to a server of its choosing. A missing and an
// unlabelled Secret get the same error, naming the rule, so the error does
// not tell which Secrets exist. The value is recorded in ctx for redact.
func secretValue(ctx context.Context, c client.Reader, namespace string, ref corev1.SecretKeySelector) (string, error) {
	if errs := validation.IsDNS1123Subdomain(ref.Name); len(errs) > 0 {
		return "", fmt.Errorf("reading key %q of Secret %q: not a Secret name (analysis reads only Secrets of the run's namespace): %s", ref.Key, ref.Name, strings.Join(errs, "; "))
	}
	var s corev1.Secret
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && s.Labels[v1alpha1.AnalysisSecretLabel] != "true"):
		return "", fmt.Errorf("reading key %q of Secret %s: %w", ref.Key, ref.Name, &SecretRuleError{Namespace: namespace})
	case err != nil:
		return "", fmt.Errorf("reading key %q of Secret %s: %w", ref.Key, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
	}
	reveal(ctx, string(v))
	return string(v), nil
}

// SecretRuleError is a Secret analysis may not read.
type SecretRuleError struct {
	Namespace string
}

func (e *SecretRuleError) Error() string {
	return fmt.Sprintf("analysis reads only Secrets that are in the run's namespace (%s) and labelled %s: \"true\"", e.Namespace, v1alpha1.AnalysisSecretLabel)
}

// revealed collects the Secret values read for one measurement, so that
// redact can hide them in whatever the measurement shows.
type revealed struct {
	mu     sync.Mutex
	values []string
}

type revealedKey struct{}

// withRevealed returns a context whose Secret reads are recorded in the
// returned collector.
func withRevealed(ctx context.Context) (context.Context, *revealed) {
	r := &revealed{}
	return context.WithValue(ctx, revealedKey{}, r), r
}

// reveal records values derived from Secrets in ctx's collector, if any.
func reveal(ctx context.Context, values ...string) {
	r, ok := ctx.Value(revealedKey{}).(*revealed)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values = append(r.values, values...)
}

func (r *revealed) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.values)
}

// headerValues resolves headers whose values are literal or in Secrets.
func headerValues(ctx context.Context, c client.Reader, namespace string, headers []v1alpha1.Header) (map[string]string, error) {
	out := map[string]string{}
	for _, h := range headers {
		switch {
		case h.Value != nil:
			out[h.Key] = *h.Value
		case h.ValueFrom != nil:
			v, err := secretValue(ctx, c, namespace, h.ValueFrom.SecretKeyRef)
			if err != nil {
				return nil, fmt.Errorf("header %s: %w", h.Key, err)
			}
			out[h.Key] = v
		}
	}
	return out, nil
}
