package analysis

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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

// secretValue reads one key of a Secret in namespace.
func secretValue(ctx context.Context, c client.Reader, namespace string, ref corev1.SecretKeySelector) (string, error) {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("reading key %q of Secret %s: %w", ref.Key, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
	}
	return string(v), nil
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
