// Package analysis is the AnalysisRun reconciler: it measures each metric
// through its provider when it is due, judges the result with the metric's
// CEL conditions, applies the limits, and sets the run's phase to the worst
// phase of its deciding metrics.
package analysis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubeseed/rollouts/internal/deadline"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Reconciler reconciles AnalysisRuns.
type Reconciler struct {
	Client client.Client
	// APIReader reads past the cache: Secrets (never watched) and Jobs the
	// cache has not seen yet. Defaults to the manager's API reader.
	APIReader client.Reader
	Clock     clock.PassiveClock
	// PrometheusAddress is the default address of the prometheus provider.
	PrometheusAddress string
	// Egress is the addresses the web, prometheus and judge providers may
	// connect to; nil is the default deny list.
	Egress *EgressPolicy
	// Providers measure metrics, by kind.
	Providers Registry
	// Metrics records the runs' phases and metric values; nil records
	// nothing.
	Metrics *Metrics
	// Measurements and MeasurementsPerNamespace bound the measurements
	// taken at once, in all and in one namespace (DefaultMeasurements and
	// DefaultMeasurementsPerNamespace when 0).
	Measurements, MeasurementsPerNamespace int

	// measurements takes measurements outside the reconcile workers;
	// measured brings a run back when one of them finished.
	measurements *executor
	measured     chan event.GenericEvent

	// compiled caches each run's conditions (compiled once per run).
	compiled sync.Map // types.NamespacedName → compiledRun
	// recorded remembers, per run, how many measurements the last status
	// write held, so that a reconcile reading an older copy from the cache
	// waits for it instead of measuring again.
	recorded sync.Map // types.NamespacedName → recordedRun
}

// recordedRun is how many measurements the last write for the run with
// that UID held.
type recordedRun struct {
	uid   types.UID
	count int32
}

// staleRetry is how soon a reconcile that read an outdated run looks again;
// the watch event of the last write usually comes first.
const staleRetry = 50 * time.Millisecond

// recordedCount is how many measurements a status holds, in flight or done:
// it never decreases as a run goes on.
func recordedCount(st *v1alpha1.AnalysisRunStatus) int32 {
	var n int32
	for i := range st.MetricResults {
		mr := &st.MetricResults[i]
		n += mr.Count + mr.Error
		if inFlight(mr) != nil {
			n++
		}
	}
	return n
}

// compiledRun is the compiled conditions of the run with that UID: a run
// deleted and created again under its name compiles its own.
type compiledRun struct {
	uid   types.UID
	conds map[string]*Conditions
}

// SetupWithManager registers the reconciler and its watches.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, opts controller.Options) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Providers == nil {
		prometheus := &Prometheus{Secrets: r.APIReader, Egress: r.Egress, DefaultAddress: r.PrometheusAddress, Now: r.Clock.Now}
		r.Providers = Registry{
			v1alpha1.ProviderWeb:        &Web{Secrets: r.APIReader, Egress: r.Egress, Now: r.Clock.Now},
			v1alpha1.ProviderPrometheus: prometheus,
			v1alpha1.ProviderJob:        &Job{Client: r.Client, APIReader: r.APIReader, Now: r.Clock.Now},
			v1alpha1.ProviderJudge:      &Judge{Prometheus: prometheus},
		}
	}
	r.measured = make(chan event.GenericEvent, measuredBuffer)
	r.measurements = newExecutor(cmp.Or(r.Measurements, DefaultMeasurements), cmp.Or(r.MeasurementsPerNamespace, DefaultMeasurementsPerNamespace), r.tell)
	if err := mgr.Add(r.measurements); err != nil {
		return fmt.Errorf("adding the measurement executor: %w", err)
	}
	return builder.ControllerManagedBy(mgr).
		For(&v1alpha1.AnalysisRun{}).
		Owns(&batchv1.Job{}).
		WatchesRawSource(source.Channel(r.measured, &handler.EnqueueRequestForObject{})).
		WithOptions(opts).
		Complete(deadline.Retry(r))
}

// measuredBuffer is how many finished measurements may wait to be handed to
// the controller's queue.
const measuredBuffer = 256

// tell brings a run back to the queue once a measurement of it finished.
func (r *Reconciler) tell(ctx context.Context, key types.NamespacedName) {
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case r.measured <- event.GenericEvent{Object: run}:
	case <-ctx.Done():
	}
}

// Reconcile hands the measurements that are due to the executor and
// records those it finished; once the run has ended it stops what is still
// in flight and deletes the run when its ttlStrategy says so.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var run v1alpha1.AnalysisRun
	if err := r.Client.Get(ctx, req.NamespacedName, &run); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			r.measurements.forgetRun(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting analysisrun: %w", err)
	}
	if last, ok := r.recorded.Load(req.NamespacedName); ok {
		if l := last.(recordedRun); l.uid == run.UID && recordedCount(&run.Status) < l.count && !run.Status.Phase.Completed() {
			return reconcile.Result{RequeueAfter: staleRetry}, nil
		}
	}
	st := run.Status.DeepCopy()
	now := r.Clock.Now()
	var next time.Time
	var recorded []measureKey
	if !st.Phase.Completed() {
		if st.StartedAt == nil {
			st.StartedAt = &metav1.Time{Time: now}
		}
		next, recorded = r.measure(ctx, &run, st, now)
		summarize(&run, st, now)
	}
	var abortErr error
	if st.Phase.Completed() {
		r.compiled.Delete(req.NamespacedName)
		abortErr = r.abortInFlight(ctx, &run, st, now)
	}
	if !equality.Semantic.DeepEqual(run.Status, *st) {
		orig := run.DeepCopy()
		run.Status = *st
		// The lock makes a write based on an outdated copy fail rather than
		// overwrite measurements recorded since.
		patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
		if err := r.Client.Status().Patch(ctx, &run, patch, client.FieldOwner(v1alpha1.FieldManager)); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{RequeueAfter: staleRetry}, nil
			}
			return reconcile.Result{}, fmt.Errorf("patching analysisrun status: %w", err)
		}
		r.recorded.Store(req.NamespacedName, recordedRun{uid: run.UID, count: recordedCount(st)})
	}
	// Only now that the status holds them: a failed write records them
	// again on the next reconcile.
	for _, key := range recorded {
		r.measurements.forget(key)
	}
	if st.Phase.Completed() {
		r.measurements.forgetRun(req.NamespacedName)
	}
	r.Metrics.observe(&run)
	switch {
	case abortErr != nil:
		return reconcile.Result{}, abortErr
	case st.Phase.Completed():
		return r.expire(ctx, &run, now)
	case next.IsZero():
		return reconcile.Result{}, nil
	}
	return reconcile.Result{RequeueAfter: max(next.Sub(r.Clock.Now()), time.Millisecond)}, nil
}

// forget drops what the reconciler keeps about a run that is gone.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.compiled.Delete(key)
	r.recorded.Delete(key)
	r.Metrics.forget(key)
}

// measure records the measurements the executor finished and hands it
// those that are due; it returns when the next one is due (the zero time
// when only the executor's measurements will bring the run back) and the
// measurements it recorded.
func (r *Reconciler) measure(ctx context.Context, run *v1alpha1.AnalysisRun, st *v1alpha1.AnalysisRunStatus, now time.Time) (time.Time, []measureKey) {
	conds, err := r.conditions(run)
	var next time.Time
	var recorded []measureKey
	var snapshot *v1alpha1.AnalysisRun // what the executor's measurements see
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
		key := measureKey{run: client.ObjectKeyFromObject(run), uid: run.UID, metric: m.Name}
		state, result := r.measurements.state(key)
		switch state {
		case measureBusy:
			// Its end brings the run back.
			continue
		case measureDone:
			recorded = append(recorded, key)
			next = earliest(next, r.record(run, m, mr, conds[m.Name], result, st.StartedAt.Time))
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
		provider, perr := r.provider(m)
		if perr != nil {
			mr.Phase, mr.Message = v1alpha1.AnalysisPhaseError, perr.Error()
			continue
		}
		if in := inFlight(mr); in != nil {
			// A Job's measurement in flight: a look at the cache.
			next = earliest(next, r.record(run, m, mr, conds[m.Name], r.resume(ctx, run, m, in, provider), st.StartedAt.Time))
			continue
		}
		if snapshot == nil {
			snapshot = run.DeepCopy()
		}
		measured := &snapshot.Spec.Metrics[i]
		logger := log.FromContext(ctx).WithValues("analysisRun", run.Name, "metric", m.Name)
		logger.V(1).Info("Measuring")
		r.measurements.submit(key, func(ctx context.Context) Measured {
			return r.take(log.IntoContext(ctx, logger), snapshot, measured, provider)
		})
	}
	return next, recorded
}

// record adds a measurement to the metric's result and returns when the
// next one is due, or the zero time.
func (r *Reconciler) record(run *v1alpha1.AnalysisRun, m *v1alpha1.Metric, mr *v1alpha1.MetricResult, cond *Conditions, meas Measured, started time.Time) time.Time {
	Record(m, mr, cond, meas, retention(run, m.Name))
	if mr.Phase.Completed() {
		return time.Time{}
	}
	due, err := NextMeasurement(m, mr, started)
	if err != nil {
		return time.Time{}
	}
	return due
}

// resume looks at a measurement in flight.
func (r *Reconciler) resume(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric, in *v1alpha1.Measurement, provider Provider) Measured {
	resumer, ok := provider.(Resumer)
	if !ok {
		now := r.Clock.Now()
		return Measured{Err: errors.New("the provider cannot resume the measurement in flight"), Started: now, Finished: now}
	}
	log.FromContext(ctx).V(1).Info("Checking the measurement in flight", "analysisRun", run.Name, "metric", m.Name)
	ctx, secrets := withRevealed(ctx)
	return redact(resumer.Resume(ctx, run, m, in), secrets.all())
}

// take measures a metric once, in the executor, with the run's args
// substituted into a copy of it and the values of Secrets hidden in what
// comes back.
func (r *Reconciler) take(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric, provider Provider) Measured {
	ctx, secrets := withRevealed(ctx)
	metric, err := r.withArgs(ctx, run, m)
	if err != nil {
		now := r.Clock.Now()
		return redact(Measured{Err: err, Started: now, Finished: now}, secrets.all())
	}
	return redact(provider.Measure(ctx, run, metric), secrets.all())
}

// provider returns the provider of a metric; a kind this controller lacks is
// an error, never measured by another.
func (r *Reconciler) provider(m *v1alpha1.Metric) (Provider, error) {
	kind, err := m.Provider.Kind()
	if err != nil {
		return nil, err
	}
	p, ok := r.Providers[kind]
	if !ok {
		return nil, fmt.Errorf("provider %q is not supported by this controller version yet", kind)
	}
	return p, nil
}

// abortInFlight stops the measurements still in flight once the run has
// ended (terminated, or decided by another metric) and ends them as Errors
// saying so. They are not counted: the run is over.
func (r *Reconciler) abortInFlight(ctx context.Context, run *v1alpha1.AnalysisRun, st *v1alpha1.AnalysisRunStatus, now time.Time) error {
	var errs []error
	for i := range st.MetricResults {
		mr := &st.MetricResults[i]
		in := inFlight(mr)
		if in == nil {
			continue
		}
		if err := r.abort(ctx, run, mr.Name, in); err != nil {
			errs = append(errs, fmt.Errorf("metric %s: %w", mr.Name, err))
			continue
		}
		finished := metav1.NewMicroTime(now)
		in.Phase, in.FinishedAt, in.Message = v1alpha1.AnalysisPhaseError, &finished, "Aborted: the run ended before the measurement finished"
	}
	return errors.Join(errs...)
}

// abort asks the provider of a metric to stop its measurement in flight.
func (r *Reconciler) abort(ctx context.Context, run *v1alpha1.AnalysisRun, metric string, in *v1alpha1.Measurement) error {
	for i := range run.Spec.Metrics {
		if run.Spec.Metrics[i].Name != metric {
			continue
		}
		// A provider that cannot resume, or that this controller lacks,
		// started nothing that outlives a reconcile.
		kind, _ := run.Spec.Metrics[i].Provider.Kind()
		if resumer, ok := r.Providers[kind].(Resumer); ok {
			log.FromContext(ctx).Info("Aborting the measurement in flight", "analysisRun", run.Name, "metric", metric)
			return resumer.Abort(ctx, run, in)
		}
	}
	return nil
}

// earliest is the earlier of two times; the zero time is no time.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// conditions compiles the run's conditions once and keeps them by run. A
// run that breaks a bound (stored before admission checked it) has none:
// every metric ends an Error with the bound's message.
func (r *Reconciler) conditions(run *v1alpha1.AnalysisRun) (map[string]*Conditions, error) {
	key := client.ObjectKeyFromObject(run)
	if v, ok := r.compiled.Load(key); ok && v.(compiledRun).uid == run.UID {
		return v.(compiledRun).conds, nil
	}
	if errs := v1alpha1.ValidateRunBounds(&run.Spec, field.NewPath("spec")); len(errs) > 0 {
		return nil, errs[0]
	}
	out := map[string]*Conditions{}
	for _, m := range run.Spec.Metrics {
		c, err := CompileConditions(m.SuccessCondition, m.FailureCondition)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", m.Name, err)
		}
		out[m.Name] = c
	}
	r.compiled.Store(key, compiledRun{uid: run.UID, conds: out})
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
