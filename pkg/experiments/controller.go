// Package experiments is the Experiment reconciler: it observes an
// Experiment and what it owns, decides with a pure planner (plan.go) and
// carries the plan out.
package experiments

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/internal/deadline"
	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Reconciler reconciles Experiments.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// WatchNamespace is the one namespace a namespaced controller
	// (--namespace) watches; empty in cluster mode.
	WatchNamespace string
}

// SetupWithManager registers the reconciler and its watches.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, opts controller.Options) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("rollouts-controller")
	}
	return builder.ControllerManagedBy(mgr).
		For(&v1alpha1.Experiment{}).
		Owns(&appsv1.ReplicaSet{}).
		Owns(&corev1.Service{}).
		Owns(&v1alpha1.AnalysisRun{}).
		WithOptions(opts).
		Complete(deadline.Retry(r))
}

// Reconcile observes, plans and applies.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ex v1alpha1.Experiment
	if err := r.Client.Get(ctx, req.NamespacedName, &ex); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ex.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	in, err := r.observe(ctx, &ex)
	if err != nil {
		return reconcile.Result{}, err
	}
	p := plan(in)
	if err := r.apply(ctx, &ex, &p); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: p.RequeueAfter}, nil
}

// observe gathers the planner's input from the cache.
func (r *Reconciler) observe(ctx context.Context, ex *v1alpha1.Experiment) (Input, error) {
	in := Input{
		Experiment:     ex,
		ReplicaSets:    map[string]*appsv1.ReplicaSet{},
		Services:       map[string]*corev1.Service{},
		AnalysisRuns:   map[string]*v1alpha1.AnalysisRun{},
		Templates:      map[string]*v1alpha1.AnalysisTemplateSpec{},
		WatchNamespace: r.WatchNamespace,
		Now:            r.Clock.Now(),
	}
	owned := func(o metav1.Object) bool {
		ref := metav1.GetControllerOf(o)
		return ref != nil && ref.UID == ex.UID
	}
	sel := client.MatchingLabels{v1alpha1.ExperimentLabel: ex.Name}
	var rss appsv1.ReplicaSetList
	if err := r.Client.List(ctx, &rss, client.InNamespace(ex.Namespace), sel); err != nil {
		return in, fmt.Errorf("listing replicasets: %w", err)
	}
	for i := range rss.Items {
		if rs := &rss.Items[i]; owned(rs) {
			in.ReplicaSets[rs.Labels[v1alpha1.ExperimentTemplateLabel]] = rs
		}
	}
	var svcs corev1.ServiceList
	if err := r.Client.List(ctx, &svcs, client.InNamespace(ex.Namespace), sel); err != nil {
		return in, fmt.Errorf("listing services: %w", err)
	}
	for i := range svcs.Items {
		if svc := &svcs.Items[i]; owned(svc) {
			in.Services[svc.Labels[v1alpha1.ExperimentTemplateLabel]] = svc
		}
	}
	var runs v1alpha1.AnalysisRunList
	if err := r.Client.List(ctx, &runs, client.InNamespace(ex.Namespace), sel); err != nil {
		return in, fmt.Errorf("listing analysisruns: %w", err)
	}
	for i := range runs.Items {
		if run := &runs.Items[i]; owned(run) {
			in.AnalysisRuns[run.Labels[v1alpha1.ExperimentAnalysisLabel]] = run
		}
	}
	for _, a := range ex.Spec.Analyses {
		ref := v1alpha1.AnalysisTemplateRef{TemplateName: a.TemplateName, ClusterScope: a.ClusterScope}
		if err := analysis.FetchTemplates(ctx, r.Client, r.WatchNamespace, ex.Namespace, []v1alpha1.AnalysisTemplateRef{ref}, in.Templates); err != nil {
			return in, err
		}
	}
	return in, nil
}

// apply carries the plan out, then writes the status and records events.
func (r *Reconciler) apply(ctx context.Context, ex *v1alpha1.Experiment, p *Plan) error {
	logger := log.FromContext(ctx)
	owner := client.FieldOwner(v1alpha1.FieldManager)
	for _, rs := range p.CreateReplicaSets {
		logger.Info("Creating ReplicaSet", "replicaSet", rs.Name)
		if err := r.Client.Create(ctx, rs, owner); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating replicaset %s: %w", rs.Name, err)
		}
	}
	for _, svc := range p.CreateServices {
		logger.Info("Creating Service", "service", svc.Name)
		if err := r.Client.Create(ctx, svc, owner); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating service %s: %w", svc.Name, err)
		}
	}
	for _, run := range p.CreateRuns {
		logger.Info("Creating AnalysisRun", "analysisRun", run.Name)
		if err := r.Client.Create(ctx, run, owner); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating analysisrun %s: %w", run.Name, err)
		}
	}
	for _, name := range p.TerminateRuns {
		logger.Info("Terminating AnalysisRun", "analysisRun", name)
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Namespace: ex.Namespace, Name: name}}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"terminate":true}}`))
		if err := r.Client.Patch(ctx, run, patch, owner); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("terminating analysisrun %s: %w", name, err)
		}
	}
	for _, name := range p.DeleteServices {
		logger.Info("Deleting Service", "service", name)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ex.Namespace, Name: name}}
		if err := r.Client.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting service %s: %w", name, err)
		}
	}
	for _, sc := range p.Scale {
		logger.Info("Scaling ReplicaSet", "replicaSet", sc.Name, "replicas", sc.Replicas)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ex.Namespace, Name: sc.Name}}
		patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, sc.Replicas))
		if err := r.Client.Patch(ctx, rs, patch, owner); err != nil {
			return fmt.Errorf("scaling replicaset %s: %w", sc.Name, err)
		}
	}
	if !equality.Semantic.DeepEqual(ex.Status, p.Status) {
		orig := ex.DeepCopy()
		ex.Status = p.Status
		if err := r.Client.Status().Patch(ctx, ex, client.MergeFrom(orig), owner); err != nil {
			return fmt.Errorf("patching experiment status: %w", err)
		}
	}
	for _, e := range p.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ex, nil, typ, e.Reason, e.Reason, "%s", e.Message)
	}
	return nil
}
