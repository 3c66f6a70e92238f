package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// errRequeue asks for another reconcile without logging an error: the cache
// was behind the API server.
var errRequeue = errors.New("cache is stale")

// errBlocked: a PodDisruptionBudget refused an eviction.
var errBlocked = errors.New("eviction blocked by a PodDisruptionBudget")

// blockedRetry is how soon to retry an eviction a PodDisruptionBudget refused.
const blockedRetry = 5 * time.Second

// staleCacheRetry is how soon to look again after errRequeue; the watch event
// that brings the cache up to date usually comes first.
const staleCacheRetry = 250 * time.Millisecond

// apply carries out a plan: on an abort the routers first, then adoptions,
// the new ReplicaSet, Service selectors, scaling, deletions; then the status,
// in one patch, and the events. Writes carry the rollouts-controller field
// manager; scale patches are guarded by the resourceVersion the plan saw, so
// a stale cache cannot scale twice. How it ended decides the result and, on
// failure, the conditions (ending).
func (r *Reconciler) apply(ctx context.Context, ro *v1alpha1.Rollout, p Plan) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	key := client.ObjectKeyFromObject(ro)
	err := r.applyObjects(ctx, ro, &p)
	end := classify(err)
	if end == applied || end == blocked {
		r.recordNotifications(ctx, ro, &p)
	}
	switch end {
	case applied:
	case blocked:
		r.failures.forget(key)
		if err := r.writeStatus(ctx, ro, p.Status); err != nil {
			return r.failed(ctx, ro, classify(err), err)
		}
		r.deliverNotifications(ctx, ro, &p.Status, true)
		return end.result(err, 0)
	case stale:
		logger.V(1).Info("Requeueing: cache behind the API server")
		return end.result(err, 0)
	case terminating:
		logger.V(1).Info("Namespace is terminating: nothing to do", "error", err.Error())
		return end.result(err, 0)
	default:
		return r.failed(ctx, ro, end, err)
	}
	r.failures.forget(key)
	r.Metrics.observe(ro, p.Status)
	wait := r.coalesce.hold(key, p.StatusWait, &p.Status, r.Clock.Now())
	if wait > 0 {
		// The change, and the events of its decisions, wait for the write
		// that carries them: the next reconcile decides them again.
		r.deliverNotifications(ctx, ro, &p.Status, false)
		return end.result(nil, soonest(p.RequeueAfter, wait))
	}
	if err := r.writeStatus(ctx, ro, p.Status); err != nil {
		return r.failed(ctx, ro, classify(err), err)
	}
	r.deliverNotifications(ctx, ro, &p.Status, true)
	for _, e := range p.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ro, nil, typ, e.Reason, e.Reason, "%s", e.Message)
	}
	return end.result(nil, p.RequeueAfter)
}

// failed reports a plan that could not be carried out: a Warning event with
// the API server's message each time, and the conditions once the failure
// needs a person or has lasted (ending.failedStatus).
func (r *Reconciler) failed(ctx context.Context, ro *v1alpha1.Rollout, end ending, err error) (reconcile.Result, error) {
	n := r.failures.failed(client.ObjectKeyFromObject(ro))
	r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, v1alpha1.ReasonReconcileError, v1alpha1.ReasonReconcileError, "%s", err.Error())
	if st, ok := end.failedStatus(ro, err, n, r.Clock.Now()); ok {
		if werr := r.writeStatus(ctx, ro, st); werr != nil {
			log.FromContext(ctx).Error(werr, "Writing the conditions of a failed reconcile")
		}
	}
	if end == permanent {
		log.FromContext(ctx).Error(err, "Reconcile needs a person: retrying slowly", "retryAfter", permanentRetry)
	}
	return end.result(err, 0)
}

func (r *Reconciler) applyObjects(ctx context.Context, ro *v1alpha1.Rollout, p *Plan) error {
	logger := log.FromContext(ctx)
	if p.Finalize {
		if err := r.addFinalizer(ctx, ro); err != nil {
			return err
		}
	}
	if p.TrafficFirst {
		// An abort takes the traffic off the canary before anything else
		// moves: no scale-down or selector switch while a router still
		// sends requests to the pods it would take away.
		if err := r.shiftTraffic(ctx, ro, p); err != nil {
			return err
		}
	}
	for _, name := range p.Adopt {
		logger.Info("Adopting ReplicaSet", "replicaSet", name)
		if err := r.adopt(ctx, ro, name); err != nil {
			return err
		}
	}
	if p.Create != nil {
		logger.Info("Creating ReplicaSet", "replicaSet", p.Create.Name, "replicas", ptr.Deref(p.Create.Spec.Replicas, 0))
		if err := r.create(ctx, ro, p); err != nil {
			return err
		}
	}
	for _, run := range p.CreateRuns {
		logger.Info("Creating AnalysisRun", "analysisRun", run.Name)
		if err := r.Client.Create(ctx, run, client.FieldOwner(v1alpha1.FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating analysisrun %s: %w", run.Name, err)
		}
	}
	for _, ex := range p.CreateExperiments {
		logger.Info("Creating Experiment", "experiment", ex.Name)
		if err := r.Client.Create(ctx, ex, client.FieldOwner(v1alpha1.FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating experiment %s: %w", ex.Name, err)
		}
	}
	for _, name := range p.TerminateExperiments {
		logger.Info("Terminating Experiment", "experiment", name)
		ex := &v1alpha1.Experiment{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		if err := r.terminate(ctx, ex); err != nil {
			return fmt.Errorf("terminating experiment %s: %w", name, err)
		}
	}
	for _, name := range p.TerminateRuns {
		logger.Info("Terminating AnalysisRun", "analysisRun", name)
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		if err := r.terminate(ctx, run); err != nil {
			return fmt.Errorf("terminating analysisrun %s: %w", name, err)
		}
	}
	for _, name := range p.DeleteRuns {
		logger.Info("Deleting AnalysisRun beyond the history limit", "analysisRun", name)
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		if err := r.Client.Delete(ctx, run); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting analysisrun %s: %w", name, err)
		}
	}
	for _, sc := range p.Services {
		if err := r.switchService(ctx, ro, sc); err != nil {
			return err
		}
	}
	if err := r.relabel(ctx, ro, p.Relabel, TargetReplicaSet); err != nil {
		return err
	}
	for _, sc := range p.Scale {
		logger.Info("Scaling ReplicaSet", "replicaSet", sc.Name, "from", sc.From, "to", sc.To, "reason", sc.Reason)
		if err := r.scale(ctx, ro.Namespace, sc); err != nil {
			return err
		}
	}
	for _, a := range p.Annotate {
		logger.Info("Annotating ReplicaSet", "replicaSet", a.Name, "annotation", a.Key, "value", a.Value)
		value := "null"
		if a.Value != "" {
			value = strconv.Quote(a.Value)
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, a.Key, value)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: a.Name}}
		if err := r.Client.Patch(ctx, rs, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(v1alpha1.FieldManager)); err != nil {
			return fmt.Errorf("annotating replicaset %s: %w", a.Name, err)
		}
	}
	if p.TrafficWeight != nil && !p.TrafficFirst {
		if err := r.shiftTraffic(ctx, ro, p); err != nil {
			return err
		}
	}
	for _, name := range p.Evict {
		logger.Info("Evicting pod created before restartAt", "pod", name)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		err := r.Client.SubResource("eviction").Create(ctx, pod, eviction)
		switch {
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget says not now; try again shortly.
			logger.Info("Eviction refused by a PodDisruptionBudget", "pod", name)
			return errBlocked
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("evicting pod %s: %w", name, err)
		}
	}
	if sc := p.WorkloadReplicas; sc != nil {
		logger.Info("Scaling down the referenced Deployment", "deployment", sc.Name, "from", sc.From, "to", sc.To, "policy", sc.Reason)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: sc.Name}}
		err := jsonpatch.Apply(ctx, r.Client, d, replicasPatch(sc.From, sc.To))
		switch {
		case apierrors.IsConflict(err):
			return errRequeue // spec.replicas is no longer From: read again
		case err != nil:
			return fmt.Errorf("scaling deployment %s: %w", sc.Name, err)
		}
	}
	for _, name := range p.Delete {
		logger.Info("Deleting old ReplicaSet beyond revisionHistoryLimit", "replicaSet", name)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name}}
		if err := r.Client.Delete(ctx, rs); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting replicaset %s: %w", name, err)
		}
		r.scaled.forget(client.ObjectKeyFromObject(rs))
	}
	return r.relabel(ctx, ro, p.Relabel, TargetPod)
}

// switchService points a Service's selector at one hash with the plan's
// JSON patch, which changes that one selector key and the managed-by
// annotation only, so the user's own selector, ports and metadata stay
// theirs.
func (r *Reconciler) switchService(ctx context.Context, ro *v1alpha1.Rollout, sc ServiceChange) error {
	log.FromContext(ctx).Info("Switching Service selector", "service", sc.Name, "hash", sc.Hash)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: sc.Name}}
	err := jsonpatch.Apply(ctx, r.Client, svc, sc.Patch)
	switch {
	case apierrors.IsConflict(err):
		// Someone else wrote it since the plan read it: maybe another
		// Rollout claimed it. Plan again on the fresh object.
		return errRequeue
	case err != nil:
		return fmt.Errorf("patching service %s: %w", sc.Name, err)
	}
	return nil
}

// shiftTraffic sets the canary weight on every router, reads it back, and
// records in the status whether all of them carry it. Routers see the status
// this plan is about to write (the hashes of a subset-level split). Each
// router is tried whatever the others answer, so one failing router leaves
// the others' traffic where the plan wants it; the failures come back joined.
func (r *Reconciler) shiftTraffic(ctx context.Context, current *v1alpha1.Rollout, p *Plan) error {
	ro := current.DeepCopy()
	ro.Status = p.Status
	routers, err := r.Routers.For(r.Client, r.APIReader, ro)
	if err != nil {
		return err
	}
	weights := traffic.Weights{Canary: *p.TrafficWeight, Extra: p.TrafficExtra}
	results := make([]routed, len(routers))
	for i, rt := range routers {
		results[i].router = rt.Name()
		results[i].verified, results[i].err = r.route(ctx, rt, ro, weights, p.Routes)
	}
	verified, err := trafficOutcome(p.TrafficFirst, results)
	if errors.Is(err, errRequeue) {
		log.FromContext(ctx).V(1).Info("Requeueing: a router does not carry the weight it must take away yet")
	}
	if err != nil {
		return err
	}
	if p.Status.Canary.Weights != nil {
		p.Status.Canary.Weights.Verified = &verified
	}
	return nil
}

// routed is what one router answered to a plan's weights.
type routed struct {
	router   string
	verified bool
	err      error
}

// trafficOutcome decides what the routers' answers mean for the plan:
// whether all of them carry the weights, or the error that stops it. Traffic
// taken away first (an abort, a superseded canary) is special twice over: a
// route that is gone sends nothing to the canary, so it counts as done; and
// one that does not read the weight back yet (a router that wrote nothing
// because its cached route looked right already, a watch behind) stops the
// plan before the Services and the scale-down, to be read again.
func trafficOutcome(first bool, results []routed) (bool, error) {
	verified := true
	var errs []error
	for _, res := range results {
		switch {
		case res.err != nil && first && apierrors.IsNotFound(res.err):
		case res.err != nil:
			errs = append(errs, fmt.Errorf("router %s: %w", res.router, res.err))
		default:
			verified = verified && res.verified
		}
	}
	if err := errors.Join(errs...); err != nil {
		return false, err
	}
	if first && !verified {
		return false, errRequeue
	}
	return verified, nil
}

// route makes one router carry the weights and managed routes, and reports
// whether it reads them back. A conflict means our read was stale: errRequeue.
func (r *Reconciler) route(ctx context.Context, rt traffic.Router, ro *v1alpha1.Rollout, weights traffic.Weights, routes []traffic.ManagedRoute) (bool, error) {
	log.FromContext(ctx).V(1).Info("Setting traffic weight", "router", rt.Name(), "weight", weights.Canary, "extra", len(weights.Extra))
	stale := func(err error) error {
		if apierrors.IsConflict(err) {
			return errRequeue
		}
		return err
	}
	if err := rt.SetWeight(ctx, ro, weights); err != nil {
		return false, stale(err)
	}
	if err := rt.SetManagedRoutes(ctx, ro, routes); err != nil {
		return false, fmt.Errorf("managed routes: %w", stale(err))
	}
	ok, err := rt.Verify(ctx, ro, weights)
	if err != nil {
		return false, fmt.Errorf("verifying: %w", err)
	}
	return ok, nil
}

func (r *Reconciler) adopt(ctx context.Context, ro *v1alpha1.Rollout, name string) error {
	var rs appsv1.ReplicaSet
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, &rs); err != nil {
		return fmt.Errorf("getting replicaset %s to adopt: %w", name, err)
	}
	if metav1.GetControllerOf(&rs) != nil {
		return errRequeue
	}
	orig := rs.DeepCopy()
	rs.OwnerReferences = append(rs.OwnerReferences, *metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout")))
	if err := r.Client.Patch(ctx, &rs, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}), client.FieldOwner(v1alpha1.FieldManager)); err != nil {
		if apierrors.IsConflict(err) {
			return errRequeue
		}
		return fmt.Errorf("adopting replicaset %s: %w", name, err)
	}
	return nil
}

// create makes the new ReplicaSet. A name taken by a ReplicaSet that isn't
// ours is a hash collision: the collision count goes up and the next plan
// picks another name.
func (r *Reconciler) create(ctx context.Context, ro *v1alpha1.Rollout, p *Plan) error {
	err := r.Client.Create(ctx, p.Create, client.FieldOwner(v1alpha1.FieldManager))
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating replicaset %s: %w", p.Create.Name, err)
		}
		return nil
	}
	var existing appsv1.ReplicaSet
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(p.Create), &existing); err != nil {
		return fmt.Errorf("reading replicaset %s after a name conflict: %w", p.Create.Name, err)
	}
	if owner := metav1.GetControllerOf(&existing); owner != nil && owner.UID == ro.UID {
		return errRequeue
	}
	count := ptr.Deref(ro.Status.CollisionCount, 0) + 1
	log.FromContext(ctx).Info("ReplicaSet name collision: trying another hash", "replicaSet", p.Create.Name, "collisionCount", count)
	st := ro.Status.DeepCopy()
	st.CollisionCount = &count
	if err := r.writeStatus(ctx, ro, *st); err != nil {
		return err
	}
	return errRequeue
}

// replicasPatch sets spec.replicas from one value to another, testing the
// old one.
func replicasPatch(from, to int32) []jsonpatch.Op {
	path := "/spec/replicas"
	return []jsonpatch.Op{
		{Op: jsonpatch.Test, Path: path, Value: []byte(strconv.Itoa(int(from)))},
		{Op: jsonpatch.Replace, Path: path, Value: []byte(strconv.Itoa(int(to)))},
	}
}

// scale sets a ReplicaSet's spec.replicas from sc.From to sc.To, and its
// steps-done mark as sc says. The patch tests the old value, so a stale
// cache cannot scale twice; unlike a resourceVersion guard it does not fail
// when only the status changed, which the ReplicaSet controller does all
// the time.
func (r *Reconciler) scale(ctx context.Context, namespace string, sc ScaleChange) error {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: sc.Name}}
	ops := replicasPatch(sc.From, sc.To)
	if sc.StepsDone != nil {
		path := jsonpatch.Pointer("metadata", "annotations", v1alpha1.StepsDoneAnnotation)
		if *sc.StepsDone == "" {
			ops = append(ops, jsonpatch.Op{Op: jsonpatch.Remove, Path: path})
		} else {
			ops = append(ops, jsonpatch.String(jsonpatch.Add, path, *sc.StepsDone))
		}
	}
	err := jsonpatch.Apply(ctx, r.Client, rs, ops)
	switch {
	case apierrors.IsConflict(err):
		// spec.replicas is no longer From: the cache is behind, maybe for
		// long (a watch being re-established); read it live next time.
		r.scaled.unsure(client.ObjectKeyFromObject(rs), r.Clock.Now())
		return errRequeue
	case err != nil:
		if mayHaveApplied(err) {
			r.scaled.unsure(client.ObjectKeyFromObject(rs), r.Clock.Now())
		}
		return fmt.Errorf("scaling replicaset %s to %d: %w", sc.Name, sc.To, err)
	}
	r.scaled.wrote(client.ObjectKeyFromObject(rs), rs.ResourceVersion, r.Clock.Now())
	return nil
}

// writeStatus sets the status subresource when it changed. The status is
// the controller's alone, so the patch sets all of it ("add" replaces a
// member that exists): one encoding of the status, where a merge patch
// would encode and compare the whole Rollout twice.
func (r *Reconciler) writeStatus(ctx context.Context, ro *v1alpha1.Rollout, st v1alpha1.RolloutStatus) error {
	if equality.Semantic.DeepEqual(ro.Status, st) {
		return nil
	}
	if logger := log.FromContext(ctx).V(2); logger.Enabled() {
		logger.Info("Writing status", "diff", cmp.Diff(ro.Status, st))
	}
	op, err := jsonpatch.New(jsonpatch.Add, "/status", st)
	if err != nil {
		return fmt.Errorf("encoding rollout status: %w", err)
	}
	patch, err := json.Marshal([]jsonpatch.Op{op})
	if err != nil {
		return fmt.Errorf("encoding rollout status: %w", err)
	}
	// Only the Rollout's metadata comes back: of the answer the controller
	// needs the new resourceVersion, and the whole object would be encoded
	// by the API server and decoded here for nothing.
	written := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}
	written.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Rollout"))
	if err := r.Client.Status().Patch(ctx, written, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner(v1alpha1.FieldManager)); err != nil {
		if mayHaveApplied(err) {
			r.superseded.unsure(client.ObjectKeyFromObject(ro), r.Clock.Now())
		}
		return fmt.Errorf("patching rollout status: %w", err)
	}
	ro.ResourceVersion, ro.Status = written.ResourceVersion, *st.DeepCopy()
	r.superseded.wrote(client.ObjectKeyFromObject(ro), ro.ResourceVersion, r.Clock.Now())
	return nil
}

// mayHaveApplied reports whether a failed write may still have been
// carried out: no answer from the API server at all (a cut connection, a
// timeout), or one that does not say the request was refused before it was
// applied (a 5xx, possibly from something in between). A refusal (4xx)
// was not applied.
func mayHaveApplied(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return status.Status().Code >= 500
}

// terminate sets spec.terminate of an AnalysisRun or Experiment; one
// already gone is fine.
func (r *Reconciler) terminate(ctx context.Context, obj client.Object) error {
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"terminate":true}}`))
	return client.IgnoreNotFound(r.Client.Patch(ctx, obj, patch, client.FieldOwner(v1alpha1.FieldManager)))
}
