package v1alpha1

// Condition types of a Rollout. Ready is True exactly when the phase is
// Healthy; Reconciling and Stalled are the kstatus pair read by Flux, kpt and
// cli-utils.
const (
	ConditionReady       = "Ready"
	ConditionProgressing = "Progressing"
	ConditionPaused      = "Paused"
	ConditionDegraded    = "Degraded"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition and event reasons. They are stable words: tools match on them.
const (
	ReasonNewReplicaSetCreated   = "NewReplicaSetCreated"
	ReasonReplicaSetUpdated      = "ReplicaSetUpdated"
	ReasonStepCompleted          = "StepCompleted"
	ReasonCanaryPauseStep        = string(PauseReasonCanaryPauseStep)
	ReasonBlueGreenPause         = string(PauseReasonBlueGreenPause)
	ReasonInconclusiveAnalysis   = string(PauseReasonInconclusiveAnalysis)
	ReasonInconclusiveExperiment = string(PauseReasonInconclusiveExperiment)
	ReasonRolloutPaused          = "RolloutPaused"
	// ReasonPaused is Ready's reason while the Rollout waits for a person
	// (the Paused condition says which pause).
	ReasonPaused                   = "Paused"
	ReasonRolloutResumed           = "RolloutResumed"
	ReasonRolloutAborted           = "RolloutAborted"
	ReasonRolloutRetried           = "RolloutRetried"
	ReasonRolloutPromoted          = "RolloutPromoted"
	ReasonRolloutCompleted         = "RolloutCompleted"
	ReasonRolloutHealthy           = "RolloutHealthy"
	ReasonRolloutRestarted         = "RolloutRestarted"
	ReasonAnalysisFailed           = "AnalysisFailed"
	ReasonAnalysisRunFailed        = "AnalysisRunFailed"
	ReasonExperimentFailed         = "ExperimentFailed"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonInvalidSpec              = "InvalidSpec"
	ReasonRequestIgnored           = "RequestIgnored"
	ReasonProgressing              = "Progressing"
	ReasonReconcileError           = "ReconcileError"
	// ReasonCleanedUp and ReasonCleanupIncomplete are the events of a
	// deleted Rollout giving back the objects it changed.
	ReasonCleanedUp         = "CleanedUp"
	ReasonCleanupIncomplete = "CleanupIncomplete"
)
