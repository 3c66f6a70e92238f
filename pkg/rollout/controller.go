// Package rollout is the Rollout reconciler: it observes a Rollout and the
// objects it owns, decides what to do with a pure planner (plan.go), and a
// thin applier carries the plan out (apply.go).
package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/internal/deadline"
	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/pkg/traffic/istio"
	"github.com/kubeseed/rollouts/pkg/traffic/nginx"
)

// Indexes of Rollouts by the objects they name.
const (
	serviceIndex   = "rollouts.kubeseed.io/services"
	workloadIndex  = "rollouts.kubeseed.io/workload"
	httpRouteIndex = "rollouts.kubeseed.io/httproutes"
	grpcRouteIndex = "rollouts.kubeseed.io/grpcroutes"
	ingressIndex   = "rollouts.kubeseed.io/ingresses"
	vsIndex        = "rollouts.kubeseed.io/virtualservices"
)

// controllerIndex indexes ReplicaSets, AnalysisRuns and Experiments by the
// UID of their controller (orphanKey when they have none), so a reconcile
// reads a Rollout's own objects without scanning its namespace.
const (
	controllerIndex = "rollouts.kubeseed.io/controller"
	orphanKey       = "<none>"
)

func controllerOf(o client.Object) []string {
	if ref := metav1.GetControllerOf(o); ref != nil {
		return []string{string(ref.UID)}
	}
	return []string{orphanKey}
}

// indexes maps each index to the names a Rollout names through it.
var indexes = map[string]func(*v1alpha1.Rollout) []string{
	serviceIndex: func(ro *v1alpha1.Rollout) []string {
		var names []string
		for _, ref := range serviceRefs(ro) {
			names = append(names, ref.name)
		}
		return names
	},
	workloadIndex: func(ro *v1alpha1.Rollout) []string {
		if ref := ro.Spec.WorkloadRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	},
	httpRouteIndex: func(ro *v1alpha1.Rollout) []string { return gatewayRoutes(ro, true) },
	grpcRouteIndex: func(ro *v1alpha1.Rollout) []string { return gatewayRoutes(ro, false) },
	ingressIndex:   nginx.StableIngresses,
	vsIndex:        istio.VirtualServiceNames,
}

func gatewayRoutes(ro *v1alpha1.Rollout, http bool) []string {
	c := ro.Spec.Strategy.Canary
	if c == nil || c.TrafficRouting == nil || c.TrafficRouting.GatewayAPI == nil {
		return nil
	}
	refs := c.TrafficRouting.GatewayAPI.GRPCRoutes
	if http {
		refs = c.TrafficRouting.GatewayAPI.HTTPRoutes
	}
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		names = append(names, r.Name)
	}
	return names
}

// Reconciler reconciles Rollouts.
type Reconciler struct {
	Client client.Client
	// APIReader reads around the cache, to tell a name collision from a
	// ReplicaSet the cache has not seen yet.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Metrics, when set, records rollouts_* metrics.
	Metrics *Metrics
	// Routers are the traffic routers this controller offers.
	Routers traffic.Registry
	// WatchNamespace is the one namespace a namespaced controller
	// (--namespace) watches; empty in cluster mode.
	WatchNamespace string
	// Notifications, when set, sends notifications about transitions.
	Notifications Notifications
	// coalesce times the status writes that may wait (Plan.StatusWait).
	coalesce *coalescer
	// superseded and scaled keep a reconcile from planning on a cache that
	// has not seen our last status write, or our last scale.
	superseded, scaled staleGuard
	// failures counts failed applies in a row, so that transient ones show
	// in the conditions only once they last.
	failures failures
}

// SetupWithManager registers the reconciler, its index and its watches:
// Rollouts, the ReplicaSets they own, and the Services they name.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, opts controller.Options) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("rollouts-controller")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.coalesce = newCoalescer()
	ctx := context.Background()
	for name, names := range indexes {
		if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Rollout{}, name, func(o client.Object) []string {
			return names(o.(*v1alpha1.Rollout))
		}); err != nil {
			return fmt.Errorf("indexing rollouts by %s: %w", name, err)
		}
	}
	for _, obj := range []client.Object{&appsv1.ReplicaSet{}, &v1alpha1.AnalysisRun{}, &v1alpha1.Experiment{}} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, obj, controllerIndex, controllerOf); err != nil {
			return fmt.Errorf("indexing %T by controller: %w", obj, err)
		}
	}
	b := builder.ControllerManagedBy(mgr).
		For(&v1alpha1.Rollout{}).
		Owns(&appsv1.ReplicaSet{}).
		Owns(&v1alpha1.AnalysisRun{}).
		Owns(&v1alpha1.Experiment{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsNaming(serviceIndex))).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsNaming(workloadIndex))).
		// Stable Ingresses are followed; canary Ingresses are owned.
		Watches(&networkingv1.Ingress{}, handler.EnqueueRequestsFromMapFunc(r.rolloutsNaming(ingressIndex))).
		Owns(&networkingv1.Ingress{}).
		WithOptions(opts)
	if r.Notifications != nil {
		b = b.WatchesRawSource(source.Channel(r.Notifications.Settlements(), &handler.EnqueueRequestForObject{}))
	}
	// Routes are watched, so a weight someone else changes is put back, but
	// only where their API is installed.
	for _, w := range []struct {
		obj   client.Object
		gk    schema.GroupKind
		index string
	}{
		{&gatewayv1.HTTPRoute{}, schema.GroupKind{Group: gatewayv1.GroupName, Kind: "HTTPRoute"}, httpRouteIndex},
		{&gatewayv1.GRPCRoute{}, schema.GroupKind{Group: gatewayv1.GroupName, Kind: "GRPCRoute"}, grpcRouteIndex},
		{&istionetworkingv1.VirtualService{}, schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}, vsIndex},
	} {
		if _, err := mgr.GetRESTMapper().RESTMapping(w.gk); err != nil {
			mgr.GetLogger().Info("Not watching routes whose API is not installed", "kind", w.gk.String())
			continue
		}
		b = b.Watches(w.obj, handler.EnqueueRequestsFromMapFunc(r.rolloutsNaming(w.index)))
	}
	return b.Complete(deadline.Retry(r))
}

// rolloutsNaming maps an object to the Rollouts that name it, by index.
func (r *Reconciler) rolloutsNaming(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list v1alpha1.RolloutList
		if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "Listing rollouts that name an object", "index", index, "name", o.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, ro := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}})
		}
		return reqs
	}
}

// Reconcile observes one Rollout, plans, and applies the plan.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start := r.Clock.Now()
	defer func() { r.Metrics.timeReconcile(start, r.Clock.Now()) }()
	var ro v1alpha1.Rollout
	if err := r.Client.Get(ctx, req.NamespacedName, &ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.Metrics.forget(req.Namespace, req.Name)
			r.coalesce.forget(req.NamespacedName)
			r.superseded.forget(req.NamespacedName)
			r.failures.forget(req.NamespacedName)
			if r.Notifications != nil {
				r.Notifications.Forget(req.NamespacedName)
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting rollout: %w", err)
	}
	if !ro.DeletionTimestamp.IsZero() {
		err := r.finalize(ctx, &ro)
		if errors.Is(err, errRequeue) {
			return reconcile.Result{RequeueAfter: staleCacheRetry}, nil
		}
		return reconcile.Result{}, err
	}
	current, err := caughtUp(ctx, r, &r.superseded, &ro, r.Clock.Now())
	switch {
	case apierrors.IsNotFound(err):
		return reconcile.Result{}, nil // its delete event brings us back
	case err != nil:
		return reconcile.Result{}, err
	case !current:
		// The watch event of our last write will bring us back.
		return reconcile.Result{RequeueAfter: staleCacheRetry}, nil
	}
	in, err := r.observe(ctx, &ro)
	if errors.Is(err, errRequeue) {
		// The watch event of our last scale will bring us back.
		return reconcile.Result{RequeueAfter: staleCacheRetry}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	p, err := planTraffic(ctx, in, r.readyEndpoints(ro.Namespace))
	var reading endpointsError
	switch {
	case errors.As(err, &reading):
		// Like a failed write: an event each time, the conditions once it
		// lasts or needs a person (a forbidden list).
		return r.failed(ctx, &ro, classify(err), err)
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("planning: %w", err)
	}
	return r.apply(ctx, &ro, p)
}

// caughtUp reports whether obj, read from the cache, has seen this
// controller's last write to it (as g recorded it). While the cache may
// still catch up by itself it has not; once that is overdue (cacheLag), obj
// is replaced by the API server's copy, which has. A NotFound error means
// the object is gone.
func caughtUp[T any, P interface {
	*T
	client.Object
}](ctx context.Context, r *Reconciler, g *staleGuard, obj P, now time.Time) (bool, error) {
	key := client.ObjectKeyFromObject(obj)
	behind, overdue := g.behind(key, obj.GetResourceVersion(), now)
	if !behind || !overdue {
		return !behind, nil
	}
	log.FromContext(ctx).V(1).Info("Cache still behind our last write: reading from the API server", "object", key, "kind", fmt.Sprintf("%T", obj), "cached", obj.GetResourceVersion())
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	// A fresh object: decoding into obj would keep map entries the live
	// copy no longer has.
	var live T
	if err := reader.Get(ctx, key, P(&live)); err != nil {
		return false, fmt.Errorf("getting %s: %w", key.Name, err)
	}
	*obj = live
	g.readLive(key, obj.GetResourceVersion())
	return true, nil
}

// podsOf lists the pods of the Rollout's ReplicaSets (only needed while a
// restart is requested, or for ephemeral metadata).
func (r *Reconciler) podsOf(ctx context.Context, ro *v1alpha1.Rollout, sel labels.Selector, rss []*appsv1.ReplicaSet) ([]*corev1.Pod, error) {
	owned := map[types.UID]bool{}
	for _, rs := range rss {
		owned[rs.UID] = true
	}
	var list corev1.PodList
	if err := r.Client.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		if owner := metav1.GetControllerOf(&list.Items[i]); owner != nil && owned[owner.UID] {
			pods = append(pods, &list.Items[i])
		}
	}
	return pods, nil
}

// validateTraffic asks each router whether the objects the Rollout names
// are usable; it returns the user-facing problem, if any.
func (r *Reconciler) validateTraffic(ctx context.Context, ro *v1alpha1.Rollout) (string, error) {
	if ro.Spec.Strategy.Canary == nil || ro.Spec.Strategy.Canary.TrafficRouting == nil {
		return "", nil
	}
	routers, err := r.Routers.For(r.Client, r.APIReader, ro)
	if err == nil {
		for _, rt := range routers {
			if err = rt.Validate(ctx, ro); err != nil {
				break
			}
		}
	}
	if traffic.IsInvalid(err) {
		return err.Error(), nil
	}
	return "", err
}

// observeAnalysis reads the Rollout's AnalysisRuns and the templates its
// analyses reference.
func (r *Reconciler) observeAnalysis(ctx context.Context, ro *v1alpha1.Rollout, in *Input) error {
	in.Templates = map[string]*v1alpha1.AnalysisTemplateSpec{}
	for _, a := range analysesOf(ro) {
		if err := analysis.FetchTemplates(ctx, r.Client, r.WatchNamespace, ro.Namespace, a.analysis.Templates, in.Templates); err != nil {
			return err
		}
	}
	own := []client.ListOption{client.InNamespace(ro.Namespace), client.MatchingFields{controllerIndex: string(ro.UID)}}
	var runs v1alpha1.AnalysisRunList
	if err := r.Client.List(ctx, &runs, own...); err != nil {
		return fmt.Errorf("listing analysis runs: %w", err)
	}
	in.AnalysisRuns = map[string]*v1alpha1.AnalysisRun{}
	for i := range runs.Items {
		in.AnalysisRuns[runs.Items[i].Name] = &runs.Items[i]
	}
	var exps v1alpha1.ExperimentList
	if err := r.Client.List(ctx, &exps, own...); err != nil {
		return fmt.Errorf("listing experiments: %w", err)
	}
	in.Experiments = map[string]*v1alpha1.Experiment{}
	for i := range exps.Items {
		in.Experiments[exps.Items[i].Name] = &exps.Items[i]
	}
	return nil
}

// observe gathers the planner's input from the cache.
func (r *Reconciler) observe(ctx context.Context, ro *v1alpha1.Rollout) (Input, error) {
	in := Input{
		Rollout: ro, Services: map[string]*corev1.Service{}, WatchNamespace: r.WatchNamespace, Now: r.Clock.Now(),
		HeldStatus: r.coalesce.heldStatus(client.ObjectKeyFromObject(ro)),
	}
	selector := ro.Spec.Selector
	if ref := ro.Spec.WorkloadRef; ref != nil {
		var d appsv1.Deployment
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, &d)
		switch {
		case err == nil:
			in.Workload = &d
			selector = d.Spec.Selector
		case !apierrors.IsNotFound(err):
			return Input{}, fmt.Errorf("getting deployment %s: %w", ref.Name, err)
		}
	}
	if selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err == nil && !sel.Empty() {
			// The Rollout's own ReplicaSets, and orphans it may adopt.
			for _, key := range []string{string(ro.UID), orphanKey} {
				var list appsv1.ReplicaSetList
				if err := r.Client.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingFields{controllerIndex: key}); err != nil {
					return Input{}, fmt.Errorf("listing replicasets: %w", err)
				}
				for i := range list.Items {
					rs := &list.Items[i]
					current, err := caughtUp(ctx, r, &r.scaled, rs, in.Now)
					switch {
					case apierrors.IsNotFound(err):
						continue
					case err != nil:
						return Input{}, err
					case !current:
						return Input{}, errRequeue
					}
					if sel.Matches(labels.Set(rs.Labels)) && rs.DeletionTimestamp.IsZero() {
						in.ReplicaSets = append(in.ReplicaSets, rs)
					}
				}
			}
			if ro.Spec.RestartAt != nil || usesEphemeralMetadata(ro, in.ReplicaSets) {
				pods, err := r.podsOf(ctx, ro, sel, in.ReplicaSets)
				if err != nil {
					return Input{}, err
				}
				in.Pods = pods
			}
		}
	}
	msg, err := r.validateTraffic(ctx, ro)
	if err != nil {
		return Input{}, err
	}
	in.TrafficInvalid = msg
	if err := r.observeAnalysis(ctx, ro, &in); err != nil {
		return Input{}, err
	}
	for _, ref := range serviceRefs(ro) {
		var svc corev1.Service
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.name}, &svc)
		switch {
		case err == nil:
			in.Services[ref.name] = &svc
		case !apierrors.IsNotFound(err):
			return Input{}, fmt.Errorf("getting service %s: %w", ref.name, err)
		}
	}
	return in, nil
}
