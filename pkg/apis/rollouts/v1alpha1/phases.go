package v1alpha1

import "fmt"

// RolloutPhase summarises a Rollout for people and tools.
// +kubebuilder:validation:Enum=Progressing;Paused;Healthy;Degraded
type RolloutPhase string

// Rollout phases.
const (
	RolloutPhaseProgressing RolloutPhase = "Progressing"
	RolloutPhasePaused      RolloutPhase = "Paused"
	RolloutPhaseHealthy     RolloutPhase = "Healthy"
	RolloutPhaseDegraded    RolloutPhase = "Degraded"
)

// AnalysisPhase is the phase of an AnalysisRun, of one of its metrics, of one
// measurement, or of an Experiment.
// +kubebuilder:validation:Enum=Pending;Running;Successful;Failed;Error;Inconclusive
type AnalysisPhase string

// Analysis phases.
const (
	AnalysisPhasePending      AnalysisPhase = "Pending"
	AnalysisPhaseRunning      AnalysisPhase = "Running"
	AnalysisPhaseSuccessful   AnalysisPhase = "Successful"
	AnalysisPhaseFailed       AnalysisPhase = "Failed"
	AnalysisPhaseError        AnalysisPhase = "Error"
	AnalysisPhaseInconclusive AnalysisPhase = "Inconclusive"
)

// Completed reports whether the phase is final.
func (p AnalysisPhase) Completed() bool {
	switch p {
	case AnalysisPhaseSuccessful, AnalysisPhaseFailed, AnalysisPhaseError, AnalysisPhaseInconclusive:
		return true
	}
	return false
}

// severity orders phases from best to worst, so that the phase of a run is the
// worst phase of its metrics: Successful < Running < Pending < Inconclusive <
// Error < Failed.
func (p AnalysisPhase) severity() (int, error) {
	switch p {
	case AnalysisPhaseSuccessful:
		return 0, nil
	case AnalysisPhaseRunning:
		return 1, nil
	case AnalysisPhasePending, "":
		return 2, nil
	case AnalysisPhaseInconclusive:
		return 3, nil
	case AnalysisPhaseError:
		return 4, nil
	case AnalysisPhaseFailed:
		return 5, nil
	}
	return 0, fmt.Errorf("unknown analysis phase %q", p)
}

// Worst returns the worse of two phases. An unknown phase is an error, never
// silently ranked.
func Worst(a, b AnalysisPhase) (AnalysisPhase, error) {
	sa, err := a.severity()
	if err != nil {
		return "", err
	}
	sb, err := b.severity()
	if err != nil {
		return "", err
	}
	if sb > sa {
		return b, nil
	}
	return a, nil
}

// NoDataPolicy says what a result without data (NaN, an empty list, a list
// of NaN only, JSON null) counts as.
// +kubebuilder:validation:Enum=Error;Inconclusive;Fail;Skip
type NoDataPolicy string

// No-data policies.
const (
	NoDataError        NoDataPolicy = "Error"
	NoDataInconclusive NoDataPolicy = "Inconclusive"
	NoDataFail         NoDataPolicy = "Fail"
	NoDataSkip         NoDataPolicy = "Skip"
)

// ScaleDownPolicy says what happens to a referenced Deployment.
// +kubebuilder:validation:Enum=never;onsuccess;progressively
type ScaleDownPolicy string

// Scale-down policies for workloadRef.
const (
	ScaleDownNever         ScaleDownPolicy = "never"
	ScaleDownOnSuccess     ScaleDownPolicy = "onsuccess"
	ScaleDownProgressively ScaleDownPolicy = "progressively"
)

// PodTemplateHashValue picks which ReplicaSet's hash an argument receives.
// +kubebuilder:validation:Enum=Stable;Latest
type PodTemplateHashValue string

// Pod template hash sources.
const (
	PodTemplateHashStable PodTemplateHashValue = "Stable"
	PodTemplateHashLatest PodTemplateHashValue = "Latest"
)

// SpecRef picks the pod template an experiment template copies.
// +kubebuilder:validation:Enum=stable;canary
type SpecRef string

// Experiment template sources.
const (
	SpecRefStable SpecRef = "stable"
	SpecRefCanary SpecRef = "canary"
)

// TemplateStatusCode is the state of one Experiment template.
// +kubebuilder:validation:Enum=Progressing;Running;Successful;Failed;Error
type TemplateStatusCode string

// Experiment template states.
const (
	TemplateStatusProgressing TemplateStatusCode = "Progressing"
	TemplateStatusRunning     TemplateStatusCode = "Running"
	TemplateStatusSuccessful  TemplateStatusCode = "Successful"
	TemplateStatusFailed      TemplateStatusCode = "Failed"
	TemplateStatusError       TemplateStatusCode = "Error"
)
