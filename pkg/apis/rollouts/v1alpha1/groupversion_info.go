// Package v1alpha1 holds the API of rollouts.kubeseed.io: Rollout,
// AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment.
//
// Cross-field rules that the API server can check on its own are CEL rules
// (x-kubernetes-validations) on these types, so an invalid object is rejected
// at admission with a message a person can act on.
//
// Each kind's CRD carries the app.kubernetes.io/part-of label that the
// installs put on every object: the Helm chart ships the CRDs untemplated
// (charts/rollouts/crds), so the label has to be in the generated files.
//
// +kubebuilder:object:generate=true
// +groupName=rollouts.kubeseed.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "rollouts.kubeseed.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Rollout{}, &RolloutList{},
		&AnalysisTemplate{}, &AnalysisTemplateList{},
		&ClusterAnalysisTemplate{}, &ClusterAnalysisTemplateList{},
		&AnalysisRun{}, &AnalysisRunList{},
		&Experiment{}, &ExperimentList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Well-known labels, annotations and names shared by the controller, the CLI
// and users' manifests.
const (
	// PodTemplateHashLabel carries the template hash on ReplicaSets, their pods
	// and the selectors of the Services the controller manages.
	PodTemplateHashLabel = "rollouts.kubeseed.io/pod-template-hash"
	// RolloutLabel names the Rollout an AnalysisRun or Experiment belongs to.
	RolloutLabel = "rollouts.kubeseed.io/rollout"
	// AnalysisKindLabel says which analysis of a Rollout an AnalysisRun is:
	// step, background, prePromotion or postPromotion.
	AnalysisKindLabel = "rollouts.kubeseed.io/analysis"
	// ExperimentLabel names the Experiment a ReplicaSet, Service or
	// AnalysisRun belongs to; ExperimentTemplateLabel and
	// ExperimentAnalysisLabel the template or analysis it serves.
	ExperimentLabel         = "rollouts.kubeseed.io/experiment"
	ExperimentTemplateLabel = "rollouts.kubeseed.io/experiment-template"
	ExperimentAnalysisLabel = "rollouts.kubeseed.io/experiment-analysis"
	// AnalysisSecretLabel, set to "true" on a Secret, lets analysis in the
	// Secret's namespace read it (header values, Prometheus credentials and
	// TLS material, args); analysis reads no other Secret.
	AnalysisSecretLabel = "rollouts.kubeseed.io/analysis-secret"

	// PromoteAnnotation asks to leave the current pause or skip the current step.
	PromoteAnnotation = "rollouts.kubeseed.io/promote"
	// PromoteFullAnnotation asks to skip every remaining step and analysis.
	PromoteFullAnnotation = "rollouts.kubeseed.io/promote-full"
	// AbortAnnotation asks to abort the update and return traffic to stable.
	AbortAnnotation = "rollouts.kubeseed.io/abort"
	// RetryAnnotation asks to clear an abort and restart the steps.
	RetryAnnotation = "rollouts.kubeseed.io/retry"

	// RevisionAnnotation records the revision number of a ReplicaSet.
	RevisionAnnotation = "rollouts.kubeseed.io/revision"
	// ScaleDownDeadlineAnnotation (RFC 3339) is when a ReplicaSet kept after a
	// blue-green switch or an abort is scaled down.
	ScaleDownDeadlineAnnotation = "rollouts.kubeseed.io/scale-down-deadline"
	// EphemeralMetadataAnnotation, in a ReplicaSet's pod template and on its
	// pods, records (as JSON PodMetadata) the ephemeral metadata the
	// controller put there, so that it can take away exactly that when the
	// pods change role, and tell it from the template's own labels.
	EphemeralMetadataAnnotation = "rollouts.kubeseed.io/ephemeral-metadata"
	// StepsDoneAnnotation, on the canary ReplicaSet of a Rollout without
	// traffic routing, records the hash of the canary steps it has passed
	// all of, while the status that says so waits to be written (the
	// controller sets it in the scale-up that follows the last step, and
	// removes it with any scale-down).
	StepsDoneAnnotation = "rollouts.kubeseed.io/steps-done"

	// FieldManager is the field manager of every write the controller makes.
	FieldManager = "rollouts-controller"

	// ManagedByAnnotation, on a Service or route a Rollout writes to, names
	// that Rollout; another Rollout naming the object is refused.
	ManagedByAnnotation = "rollouts.kubeseed.io/managed-by"
	// CleanupFinalizer holds a deleted Rollout until it has given back what
	// it changed in user-owned objects (Service selectors, route weights).
	CleanupFinalizer = "rollouts.kubeseed.io/cleanup"
)
