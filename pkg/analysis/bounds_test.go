package analysis

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestRunBreakingABound: a run stored before admission checked the bounds
// is not measured; it ends an Error with the admission rule's message,
// naming the field. (The API server now refuses such runs, so this test
// stores them through a fake client.)
func TestRunBreakingABound(t *testing.T) {
	web := func(m *v1alpha1.Metric) *v1alpha1.Metric {
		m.Name = "rate"
		m.Provider = v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x", Timeout: m.Provider.Web.Timeout}}
		return m
	}
	rows := []struct {
		name string
		spec v1alpha1.AnalysisRunSpec
		want string
	}{
		{"interval", v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{*web(&v1alpha1.Metric{Interval: "100ms", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{}}})}},
			`spec.metrics[rate].interval: Invalid value: "100ms": ` + v1alpha1.MessageInterval},
		{"timeout", v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{*web(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{Timeout: "5m"}}})}},
			`spec.metrics[rate].provider.web.timeout: Invalid value: "5m": ` + v1alpha1.MessageTimeout},
		{"retention", v1alpha1.AnalysisRunSpec{
			Metrics:              []v1alpha1.Metric{*web(&v1alpha1.Metric{Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{}}})},
			MeasurementRetention: []v1alpha1.MeasurementRetention{{MetricName: "*", Limit: 1000}},
		}, `spec.measurementRetention[*].limit: Invalid value: 1000: ` + v1alpha1.MessageRetention},
	}
	ctx := context.Background()
	for _, r := range rows {
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: "shop", UID: "u"}, Spec: r.spec}
		rec, _ := newTestReconciler(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), run)
		// A provider that would be asked to measure fails the test.
		rec.Providers = Registry{v1alpha1.ProviderWeb: providerFunc(func() Measured {
			t.Errorf("%s: measured a run that breaks a bound", r.name)
			return Measured{}
		})}
		if _, err := rec.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(run)}); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.AnalysisRun
		if err := rec.Client.Get(ctx, client.ObjectKeyFromObject(run), &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(got.Status.Message, r.want) {
			t.Errorf("%s: run %s %q; want Error with %q", r.name, got.Status.Phase, got.Status.Message, r.want)
		}
	}
}

type providerFunc func() Measured

func (f providerFunc) Measure(context.Context, *v1alpha1.AnalysisRun, *v1alpha1.Metric) Measured {
	return f()
}
