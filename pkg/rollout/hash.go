package rollout

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/hash"
)

// templateHash names a pod template (see package hash for why it is stable
// across controller versions).
func templateHash(tmpl *corev1.PodTemplateSpec, collisionCount *int32) (string, error) {
	return hash.PodTemplate(tmpl, collisionCount)
}

// stepsHash names a list of canary steps; a change restarts the steps.
func stepsHash(steps []v1alpha1.CanaryStep) (string, error) {
	return hash.Of(steps)
}
