package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnalysisTemplate describes metrics that decide whether a release is good.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=at,categories=rollouts
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=rollouts"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisTemplateSpec `json:"spec"`
}

// AnalysisTemplateList is a list of AnalysisTemplates.
//
// +kubebuilder:object:root=true
type AnalysisTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisTemplate `json:"items"`
}

// ClusterAnalysisTemplate is an AnalysisTemplate usable from every namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cat,categories=rollouts
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=rollouts"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterAnalysisTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AnalysisTemplateSpec `json:"spec"`
}

// ClusterAnalysisTemplateList is a list of ClusterAnalysisTemplates.
//
// +kubebuilder:object:root=true
type ClusterAnalysisTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterAnalysisTemplate `json:"items"`
}

// AnalysisTemplateSpec is the content of an (Cluster)AnalysisTemplate.
type AnalysisTemplateSpec struct {
	// Args are substituted into the metrics as {{args.NAME}}.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	Args []AnalysisArg `json:"args,omitempty"`
	// Metrics to measure.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	Metrics []Metric `json:"metrics"`
	// DryRun lists metrics that are measured and reported but never decide.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	DryRun []DryRun `json:"dryRun,omitempty"`
	// MeasurementRetention sets how many measurements of a metric to keep
	// (default 10, at most 100).
	// +kubebuilder:validation:MaxItems=64
	// +optional
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
}

// AnalysisArg is a named argument. In a template, an arg without value must be
// given by the referrer; in a Rollout, value or valueFrom is required.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.value) && has(self.valueFrom))",message="an arg sets at most one of value or valueFrom"
type AnalysisArg struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_-]*$`
	Name string `json:"name"`
	// +optional
	Value *string `json:"value,omitempty"`
	// +optional
	ValueFrom *ArgValueFrom `json:"valueFrom,omitempty"`
}

// ArgValueFrom takes an argument's value from elsewhere.
//
// +kubebuilder:validation:XValidation:rule="[has(self.secretKeyRef), has(self.fieldRef), has(self.podTemplateHashValue)].filter(x, x).size() == 1",message="valueFrom sets exactly one of secretKeyRef, fieldRef or podTemplateHashValue"
type ArgValueFrom struct {
	// SecretKeyRef reads a key of a Secret in the run's namespace.
	// +optional
	SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef,omitempty"`
	// FieldRef reads a field of the Rollout, e.g. metadata.labels['app'].
	// +optional
	FieldRef *FieldRef `json:"fieldRef,omitempty"`
	// PodTemplateHashValue passes the stable or latest pod template hash.
	// +optional
	PodTemplateHashValue *PodTemplateHashValue `json:"podTemplateHashValue,omitempty"`
}

// FieldRef selects a field of the referring object.
type FieldRef struct {
	// +kubebuilder:validation:MinLength=1
	FieldPath string `json:"fieldPath"`
}

// DryRun names a metric that never decides (or "*" for all).
type DryRun struct {
	// +kubebuilder:validation:MinLength=1
	MetricName string `json:"metricName"`
}

// MeasurementRetention keeps the last limit measurements of a metric (or "*").
type MeasurementRetention struct {
	// +kubebuilder:validation:MinLength=1
	MetricName string `json:"metricName"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:XValidation:rule="self <= 100",message="measurementRetention limit must be at most 100"
	Limit int32 `json:"limit"`
}

// Metric is one KPI: how to measure it and how to judge a measurement.
type Metric struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Interval between measurements, at least 1s; without it the metric is
	// measured once (or count times back to back).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="interval must be at least 1s"
	// +optional
	Interval Duration `json:"interval,omitempty"`
	// InitialDelay before the first measurement.
	// +optional
	InitialDelay Duration `json:"initialDelay,omitempty"`
	// Count is how many measurements reach a verdict before the metric ends;
	// 0 with an interval measures until the run is terminated.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Count *int32 `json:"count,omitempty"`
	// SuccessCondition is a CEL expression over result.
	// +optional
	SuccessCondition string `json:"successCondition,omitempty"`
	// FailureCondition is a CEL expression over result.
	// +optional
	FailureCondition string `json:"failureCondition,omitempty"`
	// FailureLimit is how many failed measurements are tolerated.
	// +kubebuilder:validation:Minimum=0
	// +optional
	FailureLimit *int32 `json:"failureLimit,omitempty"`
	// InconclusiveLimit is how many inconclusive measurements are tolerated.
	// +kubebuilder:validation:Minimum=0
	// +optional
	InconclusiveLimit *int32 `json:"inconclusiveLimit,omitempty"`
	// ConsecutiveErrorLimit is how many errors in a row are tolerated.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=0
	// +optional
	ConsecutiveErrorLimit *int32 `json:"consecutiveErrorLimit,omitempty"`
	// ConsecutiveSuccessLimit ends the metric Successful after this many
	// successes in a row.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ConsecutiveSuccessLimit *int32 `json:"consecutiveSuccessLimit,omitempty"`
	// NoDataPolicy is what a result without data counts as: NaN, an empty
	// list, a list of NaN only, or JSON null. The conditions never see one.
	// +kubebuilder:default=Error
	// +optional
	NoDataPolicy NoDataPolicy `json:"noDataPolicy,omitempty"`
	// Provider measures the metric.
	Provider MetricProvider `json:"provider"`
}

// AnalysisRun is one execution of analysis templates.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ar,categories=rollouts
// +kubebuilder:metadata:labels="app.kubernetes.io/part-of=rollouts"
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AnalysisRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AnalysisRunSpec   `json:"spec"`
	Status AnalysisRunStatus `json:"status,omitempty"`
}

// AnalysisRunList is a list of AnalysisRuns.
//
// +kubebuilder:object:root=true
type AnalysisRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AnalysisRun `json:"items"`
}

// AnalysisRunSpec holds the resolved metrics of a run.
type AnalysisRunSpec struct {
	// Metrics with their args already substituted.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	Metrics []Metric `json:"metrics"`
	// Args the run was created with.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	Args []AnalysisArg `json:"args,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +optional
	DryRun []DryRun `json:"dryRun,omitempty"`
	// +kubebuilder:validation:MaxItems=64
	// +optional
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
	// Terminate stops measuring; unmeasured metrics end Successful.
	// +optional
	Terminate bool `json:"terminate,omitempty"`
	// TTLStrategy deletes the run some time after it finishes.
	// +optional
	TTLStrategy *TTLStrategy `json:"ttlStrategy,omitempty"`
}

// TTLStrategy says how long a finished run is kept.
type TTLStrategy struct {
	// +kubebuilder:validation:Minimum=0
	// +optional
	SecondsAfterCompletion *int32 `json:"secondsAfterCompletion,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	SecondsAfterSuccess *int32 `json:"secondsAfterSuccess,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	SecondsAfterFailure *int32 `json:"secondsAfterFailure,omitempty"`
}

// AnalysisRunStatus is the observed state of a run.
type AnalysisRunStatus struct {
	// Phase is the worst phase of the deciding metrics.
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// Message explains the phase, naming the deciding metric.
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// MetricResults holds each metric's counters and retained measurements.
	// +listType=map
	// +listMapKey=name
	// +optional
	MetricResults []MetricResult `json:"metricResults,omitempty"`
	// RunSummary counts metrics by phase.
	// +optional
	RunSummary RunSummary `json:"runSummary,omitempty"`
	// DryRunSummary counts dry-run metrics by phase.
	// +optional
	DryRunSummary *RunSummary `json:"dryRunSummary,omitempty"`
}

// RunSummary counts metrics by phase.
type RunSummary struct {
	// +optional
	Count int32 `json:"count,omitempty"`
	// +optional
	Successful int32 `json:"successful,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
	// +optional
	Error int32 `json:"error,omitempty"`
}

// MetricResult is the state of one metric of a run.
type MetricResult struct {
	Name string `json:"name"`
	// +optional
	Phase AnalysisPhase `json:"phase,omitempty"`
	// Count of measurements that reached a verdict.
	// +optional
	Count int32 `json:"count,omitempty"`
	// +optional
	Successful int32 `json:"successful,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Inconclusive int32 `json:"inconclusive,omitempty"`
	// +optional
	Error int32 `json:"error,omitempty"`
	// +optional
	ConsecutiveError int32 `json:"consecutiveError,omitempty"`
	// +optional
	ConsecutiveSuccess int32 `json:"consecutiveSuccess,omitempty"`
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// Measurements retained, oldest first.
	// +optional
	Measurements []Measurement `json:"measurements,omitempty"`
	// SkippedAt is when the last measurement without data was dropped
	// (noDataPolicy: Skip): the next one is due an interval after it.
	// +optional
	SkippedAt *metav1.MicroTime `json:"skippedAt,omitempty"`
}

// Measurement is one measurement of a metric.
type Measurement struct {
	Phase AnalysisPhase `json:"phase"`
	// Value is the measured value as text (a number, a list, or JSON).
	// +optional
	Value string `json:"value,omitempty"`
	// StartedAt and FinishedAt have microseconds: intervals may be short.
	// +optional
	StartedAt *metav1.MicroTime `json:"startedAt,omitempty"`
	// +optional
	FinishedAt *metav1.MicroTime `json:"finishedAt,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// ResumeAt is when a measurement still in progress (a Job) is checked again.
	// +optional
	ResumeAt *metav1.MicroTime `json:"resumeAt,omitempty"`
	// Metadata carries provider details (the Job name, the judge's scores).
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`
}
