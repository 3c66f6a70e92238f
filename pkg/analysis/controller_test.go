package analysis

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func newTestReconciler(t *testing.T, now time.Time, objs ...client.Object) (*Reconciler, *clocktesting.FakePassiveClock) {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithStatusSubresource(&v1alpha1.AnalysisRun{}).WithObjects(objs...).Build()
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakePassiveClock(now)
	exec := newExecutor(DefaultMeasurements, DefaultMeasurementsPerNamespace, func(context.Context, types.NamespacedName) {})
	t.Cleanup(exec.shutdown)
	return &Reconciler{Client: c, APIReader: c, Clock: clk, Providers: Registry{}, Metrics: metrics, measurements: exec}, clk
}

// TestCompiledConditionsForgotten: the conditions compiled for a run are
// dropped when the run is deleted before it completes, and a run created
// again under the same name compiles its own.
func TestCompiledConditionsForgotten(t *testing.T) {
	ctx := context.Background()
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop", UID: "first"},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "rate", InitialDelay: "1h", SuccessCondition: "result > 0.9",
			Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}}},
	}
	r, _ := newTestReconciler(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), run)
	key := client.ObjectKeyFromObject(run)
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	v, ok := r.compiled.Load(key)
	if !ok || v.(compiledRun).uid != "first" {
		t.Fatalf("conditions not cached by run: %v", v)
	}
	first := v.(compiledRun).conds["rate"]

	// Same name, another UID, other conditions.
	again := run.DeepCopy()
	again.UID = "second"
	again.Spec.Metrics[0].SuccessCondition = "result > 0.5"
	conds, err := r.conditions(again)
	if err != nil || conds["rate"] == first {
		t.Errorf("a run created again under the same name got the old conditions (%v)", err)
	}

	if err := r.Client.Delete(ctx, run); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.compiled.Load(key); ok {
		t.Error("the conditions of a deleted run are still cached")
	}
	if n := testutil.CollectAndCount(r.Metrics.phase); n != 0 {
		t.Errorf("%d phase series left for a deleted run", n)
	}
}

// TestTTLRequeueAndDelete: a finished run comes back exactly at its
// deadline and is deleted then, with its series.
func TestTTLRequeueAndDelete(t *testing.T) {
	ctx := context.Background()
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop"},
		Spec: v1alpha1.AnalysisRunSpec{
			Metrics:     []v1alpha1.Metric{{Name: "rate", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}},
			TTLStrategy: &v1alpha1.TTLStrategy{SecondsAfterCompletion: ptr.To[int32](300), SecondsAfterFailure: ptr.To[int32](30)},
		},
		Status: v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseFailed, CompletedAt: &metav1.Time{Time: done}},
	}
	r, clk := newTestReconciler(t, done.Add(10*time.Second), run)
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(run)}
	res, err := r.Reconcile(ctx, req)
	if err != nil || res.RequeueAfter != 20*time.Second {
		t.Fatalf("10s after a failure with secondsAfterFailure 30: requeue after %s (%v), want 20s", res.RequeueAfter, err)
	}
	if n := testutil.CollectAndCount(r.Metrics.phase); n != 1 {
		t.Errorf("a finished run has %d phase series, want 1", n)
	}
	clk.SetTime(done.Add(30 * time.Second))
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.Get(ctx, req.NamespacedName, &v1alpha1.AnalysisRun{}); !apierrors.IsNotFound(err) {
		t.Errorf("the run is still there at its deadline: %v", err)
	}
	if n := testutil.CollectAndCount(r.Metrics.phase); n != 0 {
		t.Errorf("%d phase series left for the deleted run", n)
	}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "smoke"}}); err != nil {
		t.Errorf("reconciling the deleted run: %v", err)
	}
}

// TestProviderMissing: a metric whose provider the controller lacks ends in
// Error saying so, never measured by another provider.
func TestProviderMissing(t *testing.T) {
	ctx := context.Background()
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop"},
		Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "job", Provider: v1alpha1.MetricProvider{Job: &v1alpha1.JobMetric{}}}}},
	}
	r, _ := newTestReconciler(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), run)
	r.Providers = Registry{v1alpha1.ProviderWeb: &Web{}}
	key := client.ObjectKeyFromObject(run)
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.AnalysisRun
	if err := r.Client.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(got.Status.Message, `provider "job" is not supported`) {
		t.Errorf("a missing provider: %s %q", got.Status.Phase, got.Status.Message)
	}
}

// gatedProvider answers each measurement once released, counting them.
type gatedProvider struct {
	calls   atomic.Int32
	release chan struct{}
}

func (p *gatedProvider) Measure(ctx context.Context, _ *v1alpha1.AnalysisRun, _ *v1alpha1.Metric) Measured {
	p.calls.Add(1)
	now := time.Now()
	select {
	case <-p.release:
		return Measured{Result: 0.99, Value: "0.99", Started: now, Finished: time.Now()}
	case <-ctx.Done():
		return Measured{Err: ctx.Err(), Started: now, Finished: time.Now()}
	}
}

// TestMeasurementOutsideReconcile: a reconcile hands a due measurement to
// the executor and returns without waiting for it; reconciles while it runs
// start no other; its end brings the run back, and that reconcile records
// it and lets the executor forget it.
func TestMeasurementOutsideReconcile(t *testing.T) {
	ctx := context.Background()
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop", UID: "u"},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "rate", SuccessCondition: "result > 0.9",
			Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}}},
	}
	r, _ := newTestReconciler(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), run)
	told := make(chan types.NamespacedName, 10)
	r.measurements = newExecutor(10, 10, func(_ context.Context, run types.NamespacedName) { told <- run })
	t.Cleanup(r.measurements.shutdown)
	p := &gatedProvider{release: make(chan struct{})}
	r.Providers = Registry{v1alpha1.ProviderWeb: p}
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(run)}
	measurement := measureKey{run: req.NamespacedName, uid: run.UID, metric: "rate"}

	for range 3 { // returns while the measurement hangs
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if state, _ := r.measurements.state(measurement); state != measureBusy {
		t.Fatalf("measurement %v after the reconciles, want busy", state)
	}
	close(p.release)
	if got := <-told; got != req.NamespacedName {
		t.Fatalf("told about %v", got)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.AnalysisRun
	if err := r.Client.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || len(got.Status.MetricResults) != 1 || got.Status.MetricResults[0].Count != 1 {
		t.Errorf("after the measurement: %s %+v", got.Status.Phase, got.Status.MetricResults)
	}
	if n := p.calls.Load(); n != 1 {
		t.Errorf("measured %d times, want once", n)
	}
	if state, _ := r.measurements.state(measurement); state != measureNone {
		t.Errorf("the recorded measurement is still in the executor (%v)", state)
	}
}
