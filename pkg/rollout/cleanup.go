package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// needsFinalizer: the plan is about to change an object the user owns, and
// the Rollout does not yet carry the finalizer that gives it back on delete.
func needsFinalizer(ro *v1alpha1.Rollout, p *Plan) bool {
	if slices.Contains(ro.Finalizers, v1alpha1.CleanupFinalizer) {
		return false
	}
	return len(p.Services) > 0 || p.TrafficWeight != nil || p.WorkloadReplicas != nil
}

// addFinalizer adds the cleanup finalizer, on the finalizers the cache saw:
// the patch tests them, so a concurrent change is a conflict, retried.
func (r *Reconciler) addFinalizer(ctx context.Context, ro *v1alpha1.Rollout) error {
	log.FromContext(ctx).Info("Adding the cleanup finalizer before changing objects the user owns")
	return r.setFinalizers(ctx, ro, append(slices.Clone(ro.Finalizers), v1alpha1.CleanupFinalizer))
}

func (r *Reconciler) setFinalizers(ctx context.Context, ro *v1alpha1.Rollout, finalizers []string) error {
	// An absent list cannot be tested; the resourceVersion guards it.
	guard, set := jsonpatch.TestResourceVersion(ro), jsonpatch.Add
	if len(ro.Finalizers) > 0 {
		var err error
		if guard, err = jsonpatch.New(jsonpatch.Test, "/metadata/finalizers", ro.Finalizers); err != nil {
			return err
		}
		set = jsonpatch.Replace
	}
	op, err := jsonpatch.New(set, "/metadata/finalizers", finalizers)
	if err != nil {
		return err
	}
	err = jsonpatch.Apply(ctx, r.Client, ro, []jsonpatch.Op{guard, op})
	switch {
	case apierrors.IsConflict(err):
		return errRequeue
	case err != nil:
		return fmt.Errorf("setting finalizers of rollout: %w", err)
	}
	r.superseded.wrote(client.ObjectKeyFromObject(ro), ro.ResourceVersion, r.Clock.Now())
	return nil
}

// finalize gives back what the Rollout changed in objects the user owns:
// the hash key leaves the Services' selectors, all traffic goes to the
// stable Service and the managed routes go, and a Deployment the Rollout
// scaled down gets its replicas back. Objects gone or out of reach are
// reported in a warning event and skipped, so the finalizer never holds a
// Rollout forever; any other error is retried.
func (r *Reconciler) finalize(ctx context.Context, ro *v1alpha1.Rollout) error {
	if !slices.Contains(ro.Finalizers, v1alpha1.CleanupFinalizer) {
		return nil
	}
	log.FromContext(ctx).Info("Giving back the objects the Rollout changed before it goes")
	var skipped []string
	for _, step := range []func(context.Context, *v1alpha1.Rollout) ([]string, error){r.releaseServices, r.releaseTraffic, r.releaseWorkload} {
		s, err := step(ctx, ro)
		if err != nil {
			return err
		}
		skipped = append(skipped, s...)
	}
	if len(skipped) > 0 {
		r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, v1alpha1.ReasonCleanupIncomplete, v1alpha1.ReasonCleanupIncomplete,
			"Could not give back everything: %s", strings.Join(skipped, "; "))
	} else {
		r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, v1alpha1.ReasonCleanedUp, v1alpha1.ReasonCleanedUp,
			"Services and routes given back to the user")
	}
	return r.setFinalizers(ctx, ro, slices.DeleteFunc(slices.Clone(ro.Finalizers), func(f string) bool { return f == v1alpha1.CleanupFinalizer }))
}

// unreachable tells an object that is gone, forbidden or no longer usable
// (skipped with a warning) from a transient error (retried).
func unreachable(what string, err error) (string, error) {
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || traffic.IsInvalid(err) || meta.IsNoMatchError(err) {
		return fmt.Sprintf("%s: %v", what, err), nil
	}
	return "", fmt.Errorf("%s: %w", what, err)
}

// releaseServices removes the hash key from the selector of each Service the
// Rollout manages, and its claim on it.
func (r *Reconciler) releaseServices(ctx context.Context, ro *v1alpha1.Rollout) ([]string, error) {
	var skipped []string
	for _, ref := range serviceRefs(ro) {
		var svc corev1.Service
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.name}, &svc)
		if err == nil && serviceOwner(ro, &svc) != "" {
			continue
		}
		if err == nil {
			err = r.releaseService(ctx, &svc)
		}
		if err != nil {
			s, err := unreachable(fmt.Sprintf("Service %q", ref.name), err)
			if err != nil {
				return nil, err
			}
			skipped = append(skipped, s)
		}
	}
	return skipped, nil
}

func (r *Reconciler) releaseService(ctx context.Context, svc *corev1.Service) error {
	var ops []jsonpatch.Op
	if hash, ok := svc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; ok {
		path := jsonpatch.Pointer("spec", "selector", v1alpha1.PodTemplateHashLabel)
		ops = append(ops, jsonpatch.String(jsonpatch.Test, path, hash), jsonpatch.Op{Op: jsonpatch.Remove, Path: path})
	}
	ops = append(ops, jsonpatch.RemoveAnnotation(svc, v1alpha1.ManagedByAnnotation)...)
	if len(ops) > 0 {
		log.FromContext(ctx).Info("Removing the hash from the Service selector", "service", svc.Name)
	}
	return jsonpatch.Apply(ctx, r.Client, svc, ops)
}

// releaseTraffic sends all traffic back to the stable Service on every
// router and removes the managed routes.
func (r *Reconciler) releaseTraffic(ctx context.Context, ro *v1alpha1.Rollout) ([]string, error) {
	routers, err := r.Routers.For(r.Client, r.APIReader, ro)
	if err != nil {
		s, err := unreachable("traffic routing", err)
		return []string{s}, err
	}
	var extra []traffic.Destination
	if w := ro.Status.Canary.Weights; w != nil {
		for _, d := range w.Additional {
			extra = append(extra, traffic.Destination{Service: d.ServiceName})
		}
	}
	var skipped []string
	var errs []error
	for _, rt := range routers {
		log.FromContext(ctx).Info("Sending all traffic back to the stable Service", "router", rt.Name())
		if err := rt.Release(ctx, ro, extra); err != nil {
			s, err := unreachable("router "+rt.Name(), err)
			if s != "" {
				skipped = append(skipped, s)
			}
			errs = append(errs, err)
		}
	}
	return skipped, errors.Join(errs...)
}

// releaseWorkload gives a Deployment the Rollout scaled down (workloadRef)
// the Rollout's replicas back, so going back to it is not an outage.
func (r *Reconciler) releaseWorkload(ctx context.Context, ro *v1alpha1.Rollout) ([]string, error) {
	ref := ro.Spec.WorkloadRef
	if ref == nil || ref.ScaleDown == v1alpha1.ScaleDownNever || ref.ScaleDown == "" {
		return nil, nil
	}
	var d appsv1.Deployment
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, &d)
	if have, want := ptr.Deref(d.Spec.Replicas, 1), ptr.Deref(ro.Spec.Replicas, 1); err == nil && have < want {
		log.FromContext(ctx).Info("Scaling the referenced Deployment back up", "deployment", ref.Name, "replicas", want)
		err = jsonpatch.Apply(ctx, r.Client, &d, replicasPatch(have, want))
	}
	if err != nil {
		s, err := unreachable(fmt.Sprintf("Deployment %q", ref.Name), err)
		return []string{s}, err
	}
	return nil, nil
}
