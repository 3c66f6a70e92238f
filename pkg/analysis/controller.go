// Package analysis is the AnalysisRun reconciler: it measures each metric
// through its provider when it is due, judges the result with the metric's
// CEL conditions, applies the limits, and sets the run's phase to the worst
// phase of its deciding metrics.
package analysis

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Reconciler reconciles AnalysisRuns.
type Reconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
	// PrometheusAddress is the default address of the prometheus provider.
	PrometheusAddress string
	// Providers measure metrics, by kind.
	Providers Registry

	// compiled caches each run's conditions (compiled once per run).
	compiled sync.Map // types.UID → map[string]*Conditions
}

// SetupWithManager registers the reconciler and its watches.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, opts controller.Options) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Providers == nil {
		r.Providers = Registry{
			v1alpha1.ProviderWeb:        &Web{Secrets: mgr.GetAPIReader(), Now: r.Clock.Now},
			v1alpha1.ProviderPrometheus: &Prometheus{Secrets: mgr.GetAPIReader(), DefaultAddress: r.PrometheusAddress, Now: r.Clock.Now},
		}
	}
	return builder.ControllerManagedBy(mgr).
		For(&v1alpha1.AnalysisRun{}).
		Owns(&batchv1.Job{}).
		WithOptions(opts).
		Complete(r)
}

// Reconcile measures what is due and records it.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var run v1alpha1.AnalysisRun
	if err := r.Client.Get(ctx, req.NamespacedName, &run); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting analysisrun: %w", err)
	}
	if run.Status.Phase.Completed() {
		r.compiled.Delete(run.UID)
		return reconcile.Result{}, nil
	}
	st := run.Status.DeepCopy()
	now := r.Clock.Now()
	if st.StartedAt == nil {
		st.StartedAt = &metav1.Time{Time: now}
	}
	next := r.measure(ctx, &run, st, now)
	summarize(&run, st, now)
	if !equality.Semantic.DeepEqual(run.Status, *st) {
		orig := run.DeepCopy()
		run.Status = *st
		if err := r.Client.Status().Patch(ctx, &run, client.MergeFrom(orig), client.FieldOwner(v1alpha1.FieldManager)); err != nil {
			return reconcile.Result{}, fmt.Errorf("patching analysisrun status: %w", err)
		}
	}
	if st.Phase.Completed() || next.IsZero() {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{RequeueAfter: max(next.Sub(r.Clock.Now()), time.Millisecond)}, nil
}

// measure takes every due measurement and returns when the next one is due.
func (r *Reconciler) measure(ctx context.Context, run *v1alpha1.AnalysisRun, st *v1alpha1.AnalysisRunStatus, now time.Time) time.Time {
	conds, err := r.conditions(run)
	var next time.Time
	for i := range run.Spec.Metrics {
		m := &run.Spec.Metrics[i]
		mr := metricResult(st, m.Name)
		mr.DryRun = isDryRun(run, m.Name)
		if mr.Phase.Completed() {
			continue
		}
		if run.Spec.Terminate {
			// Terminated runs end unmeasured metrics Successful.
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseSuccessful, "Run terminated"
			continue
		}
		if err != nil {
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseError, err.Error()
			continue
		}
		due, derr := NextMeasurement(m, mr, st.StartedAt.Time)
		if derr != nil {
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseError, derr.Error()
			continue
		}
		if due.After(now) {
			next = earliest(next, due)
			continue
		}
		kind, kerr := m.Provider.Kind()
		provider, ok := r.Providers[kind]
		switch {
		case kerr != nil:
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseError, kerr.Error()
			continue
		case !ok:
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseError, fmt.Sprintf("provider %q is not supported by this controller version yet", kind)
			continue
		}
		log.FromContext(ctx).V(1).Info("Measuring", "analysisRun", run.Name, "metric", m.Name, "provider", kind)
		Record(m, mr, conds[m.Name], provider.Measure(ctx, run, m), retention(run, m.Name))
		if !mr.Phase.Completed() {
			if due, err := NextMeasurement(m, mr, st.StartedAt.Time); err == nil {
				next = earliest(next, due)
			}
		}
	}
	return next
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// conditions compiles the run's conditions once and keeps them by run UID.
func (r *Reconciler) conditions(run *v1alpha1.AnalysisRun) (map[string]*Conditions, error) {
	if v, ok := r.compiled.Load(run.UID); ok {
		return v.(map[string]*Conditions), nil
	}
	out := map[string]*Conditions{}
	for _, m := range run.Spec.Metrics {
		c, err := CompileConditions(m.SuccessCondition, m.FailureCondition)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", m.Name, err)
		}
		out[m.Name] = c
	}
	r.compiled.Store(run.UID, out)
	return out, nil
}

func metricResult(st *v1alpha1.AnalysisRunStatus, name string) *v1alpha1.MetricResult {
	for i := range st.MetricResults {
		if st.MetricResults[i].Name == name {
			return &st.MetricResults[i]
		}
	}
	st.MetricResults = append(st.MetricResults, v1alpha1.MetricResult{Name: name, Phase: v1alpha1.AnalysisPhasePending})
	return &st.MetricResults[len(st.MetricResults)-1]
}

func isDryRun(run *v1alpha1.AnalysisRun, name string) bool {
	for _, d := range run.Spec.DryRun {
		if d.MetricName == name || d.MetricName == "*" {
			return true
		}
	}
	return false
}

func retention(run *v1alpha1.AnalysisRun, name string) int {
	for _, m := range run.Spec.MeasurementRetention {
		if m.MetricName == name || m.MetricName == "*" {
			return int(m.Limit)
		}
	}
	return defaultRetention
}

// summarize sets the run phase to the worst phase of the deciding metrics
// (dry-run ones are counted apart), with a message naming the metric that
// decided and its last value.
func summarize(run *v1alpha1.AnalysisRun, st *v1alpha1.AnalysisRunStatus, now time.Time) {
	phase := v1alpha1.AnalysisPhaseSuccessful
	var decider *v1alpha1.MetricResult
	var summary, dry v1alpha1.RunSummary
	for i := range st.MetricResults {
		mr := &st.MetricResults[i]
		count := &summary
		if mr.DryRun {
			count = &dry
		}
		count.Count++
		switch mr.Phase {
		case v1alpha1.AnalysisPhaseSuccessful:
			count.Successful++
		case v1alpha1.AnalysisPhaseFailed:
			count.Failed++
		case v1alpha1.AnalysisPhaseInconclusive:
			count.Inconclusive++
		case v1alpha1.AnalysisPhaseError:
			count.Error++
		}
		if mr.DryRun {
			continue
		}
		worse, err := v1alpha1.Worst(phase, mr.Phase)
		if err != nil {
			worse = v1alpha1.AnalysisPhaseError
		}
		if worse != phase {
			phase, decider = worse, mr
		}
	}
	if len(run.Spec.Metrics) > len(st.MetricResults) {
		phase = v1alpha1.AnalysisPhaseRunning
	}
	if phase == v1alpha1.AnalysisPhasePending {
		phase = v1alpha1.AnalysisPhaseRunning
	}
	st.Phase = phase
	st.RunSummary = summary
	st.DryRunSummary = nil
	if dry.Count > 0 {
		st.DryRunSummary = &dry
	}
	st.Message = ""
	if decider != nil && phase != v1alpha1.AnalysisPhaseRunning {
		st.Message = fmt.Sprintf("Metric %q %s: %s", decider.Name, phase, decider.Message)
		if n := len(decider.Measurements); n > 0 && decider.Measurements[n-1].Value != "" {
			st.Message += fmt.Sprintf(" (last value %s)", decider.Measurements[n-1].Value)
		}
	}
	if phase.Completed() && st.CompletedAt == nil {
		st.CompletedAt = &metav1.Time{Time: now}
	}
}
