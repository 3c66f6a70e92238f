package v1alpha1

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Rollout replaces a Deployment: it owns the ReplicaSets of its pod template
// and walks every new template through a canary or blue-green strategy.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ro,categories=rollouts
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=rollouts"
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.HPAReplicas,selectorpath=.status.selector
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Up-to-date",type=integer,JSONPath=`.status.updatedReplicas`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.availableReplicas`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStepIndex`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.canary.weights.canary.weight`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52",fieldPath=".metadata",message="a Rollout name must be at most 52 characters: the names of its ReplicaSets and AnalysisRuns are derived from it"
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec"`
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
//
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

// RolloutSpec is the desired state of a Rollout. The fields it shares with a
// Deployment mean what they mean there.
//
// +kubebuilder:validation:XValidation:rule="has(self.workloadRef) != has(self.template)",message="exactly one of template or workloadRef must be set"
// +kubebuilder:validation:XValidation:rule="has(self.workloadRef) || has(self.selector)",message="selector is required when template is set"
// +kubebuilder:validation:XValidation:rule="!has(self.workloadRef) || !has(self.selector)",message="selector must not be set with workloadRef: it is taken from the Deployment"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || !has(self.selector.matchLabels) || !has(self.strategy.canary) || !has(self.strategy.canary.canaryMetadata) || !has(self.strategy.canary.canaryMetadata.labels) || self.selector.matchLabels.all(k, !(k in self.strategy.canary.canaryMetadata.labels))",message="strategy.canary.canaryMetadata.labels must not use the keys of selector.matchLabels"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || !has(self.selector.matchLabels) || !has(self.strategy.canary) || !has(self.strategy.canary.stableMetadata) || !has(self.strategy.canary.stableMetadata.labels) || self.selector.matchLabels.all(k, !(k in self.strategy.canary.stableMetadata.labels))",message="strategy.canary.stableMetadata.labels must not use the keys of selector.matchLabels"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || !has(self.selector.matchLabels) || !has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.activeMetadata) || !has(self.strategy.blueGreen.activeMetadata.labels) || self.selector.matchLabels.all(k, !(k in self.strategy.blueGreen.activeMetadata.labels))",message="strategy.blueGreen.activeMetadata.labels must not use the keys of selector.matchLabels"
// +kubebuilder:validation:XValidation:rule="!has(self.selector) || !has(self.selector.matchLabels) || !has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.previewMetadata) || !has(self.strategy.blueGreen.previewMetadata.labels) || self.selector.matchLabels.all(k, !(k in self.strategy.blueGreen.previewMetadata.labels))",message="strategy.blueGreen.previewMetadata.labels must not use the keys of selector.matchLabels"
type RolloutSpec struct {
	// Replicas is the number of desired pods.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Selector selects the pods of this Rollout. It must match the template's
	// labels and cannot change.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="selector is immutable"
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// Template describes the pods to run. Mutually exclusive with workloadRef.
	// +optional
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`

	// WorkloadRef takes the template and selector from an existing Deployment,
	// which is then scaled down according to scaleDown.
	// +optional
	WorkloadRef *WorkloadRef `json:"workloadRef,omitempty"`

	// MinReadySeconds is how long a new pod must be ready, with no container
	// crashing, to count as available.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReadySeconds int32 `json:"minReadySeconds,omitempty"`

	// RevisionHistoryLimit is how many old ReplicaSets to keep for undo.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +optional
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`

	// ProgressDeadlineSeconds is how long an update may go without progress
	// before it is reported as Degraded. Pauses, analysis and experiment steps
	// don't count against it.
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=1
	// +optional
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// ProgressDeadlineAbort also aborts the update when the deadline passes.
	// +optional
	ProgressDeadlineAbort bool `json:"progressDeadlineAbort,omitempty"`

	// Paused freezes scaling, Service switches and traffic weights.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// RestartAt asks for every pod created before this time to be replaced, at
	// most max(maxUnavailable, 1) at a time, through the eviction API so that
	// PodDisruptionBudgets are honoured.
	// +optional
	RestartAt *metav1.Time `json:"restartAt,omitempty"`

	// RollbackWindow makes going back to one of the last revisions fast: steps
	// and analysis are skipped.
	// +optional
	RollbackWindow *RollbackWindow `json:"rollbackWindow,omitempty"`

	// Analysis bounds how many finished AnalysisRuns are kept.
	// +optional
	Analysis *AnalysisRunHistory `json:"analysis,omitempty"`

	// Strategy is how an update is released.
	Strategy RolloutStrategy `json:"strategy"`
}

// WorkloadRef points at a Deployment whose template and selector a Rollout
// uses.
type WorkloadRef struct {
	// APIVersion of the referenced workload.
	// +kubebuilder:validation:Enum=apps/v1
	APIVersion string `json:"apiVersion"`
	// Kind of the referenced workload.
	// +kubebuilder:validation:Enum=Deployment
	Kind string `json:"kind"`
	// Name of the Deployment, in the Rollout's namespace.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// ScaleDown says when the Deployment is scaled down: never, once the
	// Rollout is Healthy (onsuccess), or step by step as the Rollout scales up
	// (progressively).
	// +kubebuilder:default=never
	// +optional
	ScaleDown ScaleDownPolicy `json:"scaleDown,omitempty"`
}

// RollbackWindow bounds the fast rollback.
type RollbackWindow struct {
	// Revisions is how many of the latest revisions count as a rollback.
	// +kubebuilder:validation:Minimum=0
	Revisions int32 `json:"revisions"`
}

// RolloutStrategy holds exactly one strategy.
//
// +kubebuilder:validation:XValidation:rule="has(self.canary) != has(self.blueGreen)",message="exactly one of strategy.canary or strategy.blueGreen must be set"
type RolloutStrategy struct {
	// Canary shifts replicas (and, with traffic routing, traffic) step by step.
	// +optional
	Canary *CanaryStrategy `json:"canary,omitempty"`
	// BlueGreen runs the new version beside the old one and switches Services.
	// +optional
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
}

// AntiAffinity asks new pods to avoid the nodes of the previous version.
//
// +kubebuilder:validation:XValidation:rule="has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)",message="antiAffinity needs exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution"
type AntiAffinity struct {
	// +optional
	PreferredDuringSchedulingIgnoredDuringExecution *PreferredAntiAffinity `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
	// +optional
	RequiredDuringSchedulingIgnoredDuringExecution *RequiredAntiAffinity `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

// PreferredAntiAffinity is a soft anti-affinity with a scheduling weight.
type PreferredAntiAffinity struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// RequiredAntiAffinity is a hard anti-affinity.
type RequiredAntiAffinity struct{}

// AnalysisRunHistory bounds the finished AnalysisRuns a Rollout keeps; the
// oldest beyond the limits are deleted.
type AnalysisRunHistory struct {
	// SuccessfulRunHistoryLimit is how many Successful runs are kept.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +optional
	SuccessfulRunHistoryLimit *int32 `json:"successfulRunHistoryLimit,omitempty"`
	// UnsuccessfulRunHistoryLimit is how many Failed, Error or Inconclusive
	// runs are kept.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +optional
	UnsuccessfulRunHistoryLimit *int32 `json:"unsuccessfulRunHistoryLimit,omitempty"`
}

// RolloutAnalysis names the templates and arguments of an AnalysisRun.
type RolloutAnalysis struct {
	// Templates are merged into one AnalysisRun.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Templates []AnalysisTemplateRef `json:"templates"`
	// Args are passed to the templates.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Args []AnalysisArg `json:"args,omitempty"`
}

// AnalysisTemplateRef names an AnalysisTemplate, or a ClusterAnalysisTemplate
// when clusterScope is true.
type AnalysisTemplateRef struct {
	// +kubebuilder:validation:MinLength=1
	TemplateName string `json:"templateName"`
	// +optional
	ClusterScope bool `json:"clusterScope,omitempty"`
}

// RolloutStatus is the observed state of a Rollout.
type RolloutStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase summarises the Rollout.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`
	// Message explains the phase.
	// +optional
	Message string `json:"message,omitempty"`
	// CurrentPodHash is the hash of the current pod template.
	// +optional
	CurrentPodHash string `json:"currentPodHash,omitempty"`
	// StableRS is the hash of the stable ReplicaSet. The Rollout is fully
	// promoted when stableRS equals currentPodHash.
	// +optional
	StableRS string `json:"stableRS,omitempty"`
	// CurrentStepIndex is the index of the canary step being run.
	// +optional
	CurrentStepIndex *int32 `json:"currentStepIndex,omitempty"`
	// CurrentStepHash is the hash of the canary steps; a change restarts them.
	// +optional
	CurrentStepHash string `json:"currentStepHash,omitempty"`
	// CollisionCount disambiguates template hashes that collide.
	// +optional
	CollisionCount *int32 `json:"collisionCount,omitempty"`
	// PauseConditions lists why the Rollout is paused.
	// +listType=map
	// +listMapKey=reason
	// +optional
	PauseConditions []PauseCondition `json:"pauseConditions,omitempty"`
	// PromoteFull is set while a full promotion is under way.
	// +optional
	PromoteFull bool `json:"promoteFull,omitempty"`
	// Abort is set while the update is aborted.
	// +optional
	Abort bool `json:"abort,omitempty"`
	// AbortedAt is when the update was aborted.
	// +optional
	AbortedAt *metav1.Time `json:"abortedAt,omitempty"`
	// LastProgressTime is when the update last made progress (or last
	// stopped waiting on purpose); the progress deadline counts from it. It
	// is unset while the update waits on purpose (a pause, an analysis).
	// +optional
	LastProgressTime *metav1.Time `json:"lastProgressTime,omitempty"`
	// RestartedAt is the restartAt the controller last completed.
	// +optional
	RestartedAt *metav1.Time `json:"restartedAt,omitempty"`

	// Replicas is the number of pods of all ReplicaSets.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// UpdatedReplicas is the number of pods of the current template.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas,omitempty"`
	// ReadyReplicas is the number of ready pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// AvailableReplicas is the number of available pods.
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
	// HPAReplicas is the replica count the /scale subresource reports.
	// +optional
	HPAReplicas int32 `json:"HPAReplicas,omitempty"`
	// Selector is the label selector in string form, for /scale.
	// +optional
	Selector string `json:"selector,omitempty"`

	// Canary is the state of the canary strategy.
	// +optional
	Canary CanaryStatus `json:"canary,omitempty"`
	// BlueGreen is the state of the blue-green strategy.
	// +optional
	BlueGreen BlueGreenStatus `json:"blueGreen,omitempty"`

	// LastHandled holds the last request token of each kind that was consumed.
	// +optional
	LastHandled LastHandledRequests `json:"lastHandled,omitempty"`

	// PendingNotifications are transitions whose notifications are not all
	// delivered yet (DESIGN.md §16). Recorded in the status write that
	// makes the transition, so a new leader delivers what its predecessor
	// had not; removed once every delivery succeeded or was given up.
	// Only transitions someone is subscribed to are recorded.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	PendingNotifications []PendingNotification `json:"pendingNotifications,omitempty"`

	// Conditions: Ready, Progressing, Paused, Degraded, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PauseCondition records one reason the Rollout is paused.
type PauseCondition struct {
	Reason    PauseReason `json:"reason"`
	StartTime metav1.Time `json:"startTime"`
}

// PauseReason says why a Rollout is paused.
// +kubebuilder:validation:Enum=CanaryPauseStep;BlueGreenPause;InconclusiveAnalysis;InconclusiveExperiment
type PauseReason string

// Pause reasons; they double as condition and event reasons.
const (
	PauseReasonCanaryPauseStep        PauseReason = "CanaryPauseStep"
	PauseReasonBlueGreenPause         PauseReason = "BlueGreenPause"
	PauseReasonInconclusiveAnalysis   PauseReason = "InconclusiveAnalysis"
	PauseReasonInconclusiveExperiment PauseReason = "InconclusiveExperiment"
)

// CanaryStatus is the state of the canary strategy.
type CanaryStatus struct {
	// Weights are the traffic weights last written to the routers.
	// +optional
	Weights *TrafficWeights `json:"weights,omitempty"`
	// +optional
	CurrentStepAnalysisRun *RunStatus `json:"currentStepAnalysisRun,omitempty"`
	// +optional
	CurrentBackgroundAnalysisRun *RunStatus `json:"currentBackgroundAnalysisRun,omitempty"`
	// +optional
	CurrentExperiment *RunStatus `json:"currentExperiment,omitempty"`
}

// TrafficWeights are the weights of each destination.
type TrafficWeights struct {
	Canary WeightDestination `json:"canary"`
	Stable WeightDestination `json:"stable"`
	// Additional destinations, such as experiment templates.
	// +optional
	Additional []WeightDestination `json:"additional,omitempty"`
	// Verified says whether every router read back the weights it wrote. Unset
	// until the first check.
	// +optional
	Verified *bool `json:"verified,omitempty"`
}

// WeightDestination is one destination of traffic.
type WeightDestination struct {
	Weight int32 `json:"weight"`
	// +optional
	PodTemplateHash string `json:"podTemplateHash,omitempty"`
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
}

// RunStatus points at an AnalysisRun or Experiment and repeats its phase.
type RunStatus struct {
	Name string `json:"name"`
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// BlueGreenStatus is the state of the blue-green strategy.
type BlueGreenStatus struct {
	// ActiveSelector is the hash the active Service selects.
	// +optional
	ActiveSelector string `json:"activeSelector,omitempty"`
	// PreviewSelector is the hash the preview Service selects.
	// +optional
	PreviewSelector string `json:"previewSelector,omitempty"`
	// ScaleUpPreviewCheckPoint is set once the preview was scaled to full size
	// before promotion.
	// +optional
	ScaleUpPreviewCheckPoint bool `json:"scaleUpPreviewCheckPoint,omitempty"`
	// +optional
	PrePromotionAnalysisRun *RunStatus `json:"prePromotionAnalysisRun,omitempty"`
	// +optional
	PostPromotionAnalysisRun *RunStatus `json:"postPromotionAnalysisRun,omitempty"`
}

// LastHandledRequests holds the last token of each request annotation that the
// controller consumed, including one that had no effect.
type LastHandledRequests struct {
	// +optional
	Promote string `json:"promote,omitempty"`
	// +optional
	PromoteFull string `json:"promoteFull,omitempty"`
	// +optional
	Abort string `json:"abort,omitempty"`
	// +optional
	Retry string `json:"retry,omitempty"`
}

// PendingNotification is one transition to notify about.
type PendingNotification struct {
	// Trigger is the notification trigger the transition fires.
	// +kubebuilder:validation:MaxLength=63
	Trigger NotificationTrigger `json:"trigger"`
	// Revision is the pod-template hash the update was at.
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision,omitempty"`
	// Step is the current step index after the transition (for
	// on-rollout-step-completed: the steps completed).
	// +optional
	Step *int32 `json:"step,omitempty"`
	// AnalysisRun is the run the transition is about, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AnalysisRun string `json:"analysisRun,omitempty"`
	// At is when the transition happened.
	At metav1.Time `json:"at"`
}

// Key tells pending notifications apart: two records of one trigger at
// one revision and step are one transition when they happened at the same
// time.
func (n PendingNotification) Key() string {
	step := int32(-1)
	if n.Step != nil {
		step = *n.Step
	}
	return fmt.Sprintf("%s/%s/%d/%s/%d", n.Trigger, n.Revision, step, n.AnalysisRun, n.At.Unix())
}

// NotificationTrigger names a built-in notification trigger (DESIGN.md
// §16); each is fired by one kind of Rollout transition.
type NotificationTrigger string

// The built-in notification triggers.
const (
	TriggerRolloutUpdated          NotificationTrigger = "on-rollout-updated"
	TriggerRolloutStepCompleted    NotificationTrigger = "on-rollout-step-completed"
	TriggerRolloutPaused           NotificationTrigger = "on-rollout-paused"
	TriggerRolloutPromoted         NotificationTrigger = "on-rollout-promoted"
	TriggerRolloutCompleted        NotificationTrigger = "on-rollout-completed"
	TriggerRolloutAborted          NotificationTrigger = "on-rollout-aborted"
	TriggerAnalysisRunFailed       NotificationTrigger = "on-analysis-run-failed"
	TriggerAnalysisRunError        NotificationTrigger = "on-analysis-run-error"
	TriggerAnalysisRunInconclusive NotificationTrigger = "on-analysis-run-inconclusive"
	TriggerRolloutDegraded         NotificationTrigger = "on-rollout-degraded"
)
