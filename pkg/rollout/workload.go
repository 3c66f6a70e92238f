package rollout

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// withWorkload returns the Rollout as the planner sees it: with workloadRef,
// the template and selector of the referenced Deployment take the place of
// spec.template and spec.selector. The message is non-empty when the
// Deployment is missing.
func withWorkload(ro *v1alpha1.Rollout, d *appsv1.Deployment) (*v1alpha1.Rollout, string) {
	ref := ro.Spec.WorkloadRef
	if ref == nil {
		return ro, ""
	}
	if d == nil {
		return ro, fmt.Sprintf("Deployment %q named in spec.workloadRef was not found in namespace %s", ref.Name, ro.Namespace)
	}
	eff := ro.DeepCopy()
	eff.Spec.Template = d.Spec.Template.DeepCopy()
	eff.Spec.Selector = d.Spec.Selector.DeepCopy()
	return eff, ""
}

// workloadScale decides the replicas of the referenced Deployment: left alone
// (never), 0 once the Rollout is Healthy (onsuccess), or reduced as the
// Rollout's pods become available (progressively). It only ever scales the
// Deployment down.
func workloadScale(ro *v1alpha1.Rollout, d *appsv1.Deployment, st *v1alpha1.RolloutStatus) *ScaleChange {
	ref := ro.Spec.WorkloadRef
	if ref == nil || d == nil {
		return nil
	}
	current := ptr.Deref(d.Spec.Replicas, 1)
	var want int32
	switch ref.ScaleDown {
	case v1alpha1.ScaleDownNever, "":
		return nil
	case v1alpha1.ScaleDownOnSuccess:
		if st.Phase != v1alpha1.RolloutPhaseHealthy {
			return nil
		}
	case v1alpha1.ScaleDownProgressively:
		want = max(0, ptr.Deref(ro.Spec.Replicas, 1)-st.AvailableReplicas)
	default:
		return nil
	}
	if want >= current {
		return nil
	}
	return &ScaleChange{Name: d.Name, From: current, To: want, Reason: string(ref.ScaleDown), Version: d.ResourceVersion}
}
