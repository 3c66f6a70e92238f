// Package rollout is the Rollout reconciler: it observes a Rollout and the
// objects it owns, plans what to do with a pure function, and applies the plan.
package rollout

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Reconciler reconciles Rollouts.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler and its watches.
func (r *Reconciler) SetupWithManager(mgr manager.Manager, opts controller.Options) error {
	return builder.ControllerManagedBy(mgr).
		For(&v1alpha1.Rollout{}).
		Owns(&appsv1.ReplicaSet{}).
		WithOptions(opts).
		Complete(r)
}

// Reconcile is not implemented yet: the canary and blue-green strategies come
// with the Rollout reconciler issue. Until then Rollouts are watched (so the
// cache, RBAC and workers are exercised) and left untouched.
func (r *Reconciler) Reconcile(context.Context, reconcile.Request) (reconcile.Result, error) {
	return reconcile.Result{}, nil
}
