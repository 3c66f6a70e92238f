package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Experiment runs one or more pod templates side by side for a while, with
// analyses against them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=exp,categories=rollouts
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=rollouts"
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.spec.duration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Experiment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ExperimentSpec   `json:"spec"`
	Status ExperimentStatus `json:"status,omitempty"`
}

// ExperimentList is a list of Experiments.
//
// +kubebuilder:object:root=true
type ExperimentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Experiment `json:"items"`
}

// ExperimentSpec is the desired state of an Experiment.
type ExperimentSpec struct {
	// Templates to run, one ReplicaSet each.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Templates []ExperimentTemplate `json:"templates"`
	// Duration counted from when every template is available; without it the
	// experiment runs until its analyses finish.
	// +optional
	Duration Duration `json:"duration,omitempty"`
	// ProgressDeadlineSeconds bounds how long templates may take to become
	// available.
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=1
	// +optional
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
	// Analyses run while the experiment runs.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Analyses []ExperimentAnalysis `json:"analyses,omitempty"`
	// ScaleDownDelaySeconds keeps the ReplicaSets this long after the end.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// Terminate ends the experiment early.
	// +optional
	Terminate bool `json:"terminate,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +optional
	DryRun []DryRun `json:"dryRun,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +optional
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
}

// ExperimentTemplate is one pod template of an experiment.
type ExperimentTemplate struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReadySeconds int32                  `json:"minReadySeconds,omitempty"`
	Selector        *metav1.LabelSelector  `json:"selector"`
	Template        corev1.PodTemplateSpec `json:"template"`
	// Service creates a Service in front of the template.
	// +optional
	Service *TemplateService `json:"service,omitempty"`
}

// ExperimentAnalysis is an analysis run against an experiment.
type ExperimentAnalysis struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	TemplateName string `json:"templateName"`
	// +optional
	ClusterScope bool `json:"clusterScope,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	Args []AnalysisArg `json:"args,omitempty"`
	// RequiredForCompletion: the experiment ends when this analysis ends.
	// +optional
	RequiredForCompletion bool `json:"requiredForCompletion,omitempty"`
}

// ExperimentStatus is the observed state of an Experiment.
type ExperimentStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// AvailableAt is when every template became available.
	// +optional
	AvailableAt *metav1.Time `json:"availableAt,omitempty"`
	// +listType=map
	// +listMapKey=name
	// +optional
	TemplateStatuses []TemplateStatus `json:"templateStatuses,omitempty"`
	// +listType=map
	// +listMapKey=name
	// +optional
	AnalysisRuns []ExperimentAnalysisRunStatus `json:"analysisRuns,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TemplateStatus is the state of one template's ReplicaSet.
type TemplateStatus struct {
	Name string `json:"name"`
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas,omitempty"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
	// +optional
	CollisionCount *int32 `json:"collisionCount,omitempty"`
	// +optional
	Status TemplateStatusCode `json:"status,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// +optional
	PodTemplateHash string `json:"podTemplateHash,omitempty"`
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
}

// ExperimentAnalysisRunStatus is the state of one analysis of an experiment.
type ExperimentAnalysisRunStatus struct {
	Name string `json:"name"`
	// +optional
	AnalysisRun string `json:"analysisRun,omitempty"`
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}
