package dashboard

// The JSON the dashboard's pages read (GET /api/…). Times are RFC 3339;
// optional numbers are null when absent.

// RolloutList is GET /api/rollouts.
type RolloutList struct {
	Items []RolloutSummary `json:"items"`
}

// RolloutSummary is one row of the list.
type RolloutSummary struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Strategy is "canary" or "blueGreen".
	Strategy string `json:"strategy"`
	// Phase is Progressing, Paused, Healthy or Degraded ("" before the
	// controller's first status).
	Phase   string `json:"phase"`
	Message string `json:"message"`
	// Step is the current step (1-based) and the step count of a canary;
	// Current is null when there are no steps or all are done.
	Step *StepPosition `json:"step"`
	// CanaryWeight is the canary's traffic weight in percent, null
	// without weights.
	CanaryWeight *int32 `json:"canaryWeight"`
	// Revision is the rollout.kubeseed.io/revision of the current
	// ReplicaSet ("" before it exists).
	Revision string   `json:"revision"`
	Images   []string `json:"images"`
	Created  string   `json:"created"`
	// Aborted: the update in progress was aborted.
	Aborted bool `json:"aborted"`
	// SpecPaused: spec.paused is set.
	SpecPaused bool `json:"specPaused"`
}

// StepPosition is where a canary is in its steps.
type StepPosition struct {
	Current *int `json:"current"`
	Count   int  `json:"count"`
}

// RolloutDetail is GET /api/rollouts/{namespace}/{name}.
type RolloutDetail struct {
	RolloutSummary
	// Steps of a canary; empty for blue-green.
	Steps []Step `json:"steps"`
	// Pauses are the pause conditions in force.
	Pauses []Pause `json:"pauses"`
	// Traffic is null without traffic weights.
	Traffic     *Traffic          `json:"traffic"`
	Revisions   []Revision        `json:"revisions"`
	Analysis    []RunSummary      `json:"analysisRuns"`
	Experiments []RunSummary      `json:"experiments"`
	Conditions  []Condition       `json:"conditions"`
	Events      []Event           `json:"events"`
	LastHandled map[string]string `json:"lastHandled"`
	// Actions are those that make sense now (the plugin refuses the
	// others with the reason given here).
	Actions []ActionState `json:"actions"`
}

// Step is one canary step.
type Step struct {
	Index int    `json:"index"` // 1-based
	Kind  string `json:"kind"`  // setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute, setMirrorRoute
	Text  string `json:"text"`  // e.g. "setWeight 20", "pause 30s", "pause until promoted"
	// State is done, current or pending.
	State string `json:"state"`
}

// Pause is a pause condition; Until is when a timed pause step ends (null
// when it waits for promote).
type Pause struct {
	Reason    string  `json:"reason"`
	StartTime string  `json:"startTime"`
	Until     *string `json:"until"`
}

// Traffic is the split the controller set, and whether the routers
// confirmed it.
type Traffic struct {
	Stable     Destination   `json:"stable"`
	Canary     Destination   `json:"canary"`
	Additional []Destination `json:"additional"`
	// Verified is true when every router read back the weights, false
	// when one did not, null before the first check.
	Verified *bool `json:"verified"`
}

// Destination is one share of the traffic.
type Destination struct {
	Name   string `json:"name"` // Service (or experiment template) name, or the pod-template hash
	Weight int32  `json:"weight"`
}

// Revision is one ReplicaSet of the Rollout and its pods.
type Revision struct {
	Revision  string   `json:"revision"`
	Name      string   `json:"name"`
	Hash      string   `json:"hash"`
	Role      string   `json:"role"` // stable, canary (the current template while updating), or old
	Images    []string `json:"images"`
	Replicas  int32    `json:"replicas"`
	Ready     int32    `json:"ready"`
	Available int32    `json:"available"`
	Pods      []Pod    `json:"pods"`
}

// Pod is a pod of a revision.
type Pod struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
	Ready bool   `json:"ready"`
}

// RunSummary is an AnalysisRun or Experiment of the Rollout.
type RunSummary struct {
	Name    string `json:"name"`
	Phase   string `json:"phase"`
	Message string `json:"message"`
	Created string `json:"created"`
}

// Condition is a status condition.
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason"`
	Message            string `json:"message"`
	LastTransitionTime string `json:"lastTransitionTime"`
}

// Event is a recent event about the Rollout, newest first.
type Event struct {
	Type    string `json:"type"` // Normal or Warning
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Time    string `json:"time"`
	Count   int32  `json:"count"`
}

// ActionState says whether an action makes sense now.
type ActionState struct {
	Name    string `json:"name"` // promote, promote-full, abort, retry, pause, resume, restart
	Allowed bool   `json:"allowed"`
	// Why it is not allowed.
	Reason string `json:"reason"`
}

// AnalysisRunDetail is GET /api/analysisruns/{namespace}/{name}.
type AnalysisRunDetail struct {
	RunSummary
	Namespace string   `json:"namespace"`
	Rollout   string   `json:"rollout"` // the owning Rollout, if any
	Metrics   []Metric `json:"metrics"`
}

// Metric is one metric of a run with its measurements.
type Metric struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
	// SuccessCondition and FailureCondition as written in the template.
	SuccessCondition string `json:"successCondition"`
	FailureCondition string `json:"failureCondition"`
	// Thresholds are the numbers the conditions compare a result with
	// (e.g. "result[0] < 0.05" gives 0.05), to draw on the chart.
	Thresholds   []Threshold   `json:"thresholds"`
	Measurements []Measurement `json:"measurements"`
	// Judge is set for judge metrics: the last judgment.
	Judge *Judgment `json:"judge"`
}

// Threshold is a line on a metric's chart.
type Threshold struct {
	Kind  string  `json:"kind"` // success or failure
	Value float64 `json:"value"`
}

// Measurement is one measurement of a metric.
type Measurement struct {
	Phase string `json:"phase"`
	Value string `json:"value"`
	// Number is Value as a number when it is one (or a one-element list
	// of one), null otherwise.
	Number     *float64 `json:"number"`
	Message    string   `json:"message"`
	StartedAt  string   `json:"startedAt"`
	FinishedAt string   `json:"finishedAt"`
}

// Judgment is the statistical judge's classification of one metric group.
type Judgment struct {
	Score          float64        `json:"score"`
	Classification string         `json:"classification"`
	Metrics        []JudgedMetric `json:"metrics"`
}

// JudgedMetric is one judged metric: its classification and the interval
// of the difference between canary and baseline.
type JudgedMetric struct {
	Name           string  `json:"name"`
	Classification string  `json:"classification"` // Pass, High, Low, NoData…
	CILower        float64 `json:"ciLower"`
	CIUpper        float64 `json:"ciUpper"`
	Estimate       float64 `json:"estimate"`
	Reason         string  `json:"reason"`
}

// ExperimentDetail is GET /api/experiments/{namespace}/{name}.
type ExperimentDetail struct {
	RunSummary
	Namespace string               `json:"namespace"`
	Rollout   string               `json:"rollout"`
	Templates []ExperimentTemplate `json:"templates"`
	Analyses  []RunSummary         `json:"analyses"`
}

// ExperimentTemplate is one template of an experiment and its pods.
type ExperimentTemplate struct {
	Name      string `json:"name"`
	Replicas  int32  `json:"replicas"`
	Available int32  `json:"available"`
	Status    string `json:"status"`
}
