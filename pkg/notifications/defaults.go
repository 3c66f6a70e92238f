package notifications

// Trigger names a built-in trigger: each is fired by the transition that
// makes the matching Rollout event (DESIGN.md §16).
type Trigger string

// The built-in triggers.
const (
	TriggerRolloutUpdated          Trigger = "on-rollout-updated"
	TriggerRolloutStepCompleted    Trigger = "on-rollout-step-completed"
	TriggerRolloutPaused           Trigger = "on-rollout-paused"
	TriggerRolloutPromoted         Trigger = "on-rollout-promoted"
	TriggerRolloutCompleted        Trigger = "on-rollout-completed"
	TriggerRolloutAborted          Trigger = "on-rollout-aborted"
	TriggerAnalysisRunFailed       Trigger = "on-analysis-run-failed"
	TriggerAnalysisRunError        Trigger = "on-analysis-run-error"
	TriggerAnalysisRunInconclusive Trigger = "on-analysis-run-inconclusive"
	TriggerRolloutDegraded         Trigger = "on-rollout-degraded"
)

// Triggers lists the built-in triggers, in the order docs present them.
var Triggers = []Trigger{
	TriggerRolloutUpdated, TriggerRolloutStepCompleted, TriggerRolloutPaused,
	TriggerRolloutPromoted, TriggerRolloutCompleted, TriggerRolloutAborted,
	TriggerAnalysisRunFailed, TriggerAnalysisRunError,
	TriggerAnalysisRunInconclusive, TriggerRolloutDegraded,
}

// defaults are the built-in triggers and templates, written as ConfigMap
// entries so they go through the same parser as the user's, and a user
// entry of the same key replaces them. Each trigger sends the template of
// its own name without "on-"; a condition without `when` always sends
// (the transition is the condition), one with `when` sends if it holds.
var defaults = func() map[string]string {
	const who = `Rollout {{.rollout.metadata.namespace}}/{{.rollout.metadata.name}}`
	const link = `{{if .dashboardURL}} {{.dashboardURL}}{{end}}`
	const step = `{{if .step.number}} at step {{.step.number}} of {{.step.count}}{{end}}`
	const weight = `{{if .weights}} (canary weight {{.weights.canary}}%){{end}}`
	const run = `{{if .analysis}} AnalysisRun {{.analysis.name}}: {{.analysis.message}}{{range $m, $r := .analysis.metrics}} {{$m}}={{$r.value}}{{end}}{{end}}`
	messages := map[Trigger]string{
		TriggerRolloutUpdated:          who + ` is updating to a new revision.` + link,
		TriggerRolloutStepCompleted:    who + ` completed step {{.step.completed}} of {{.step.count}}` + weight + `.` + link,
		TriggerRolloutPaused:           who + ` is paused` + step + weight + `.` + link,
		TriggerRolloutPromoted:         who + ` was promoted` + step + `.` + link,
		TriggerRolloutCompleted:        who + ` completed: the new revision is stable.` + link,
		TriggerRolloutAborted:          who + ` was aborted: {{.rollout.status.message}}.` + link,
		TriggerAnalysisRunFailed:       who + `: analysis failed.` + run + link,
		TriggerAnalysisRunError:        who + `: analysis errored.` + run + link,
		TriggerAnalysisRunInconclusive: who + `: analysis is inconclusive.` + run + link,
		TriggerRolloutDegraded:         who + ` is degraded: {{.rollout.status.message}}.` + link,
	}
	out := map[string]string{}
	for _, t := range Triggers {
		name := templateName(t)
		out["template."+name] = "message: |-\n  " + messages[t] + "\n"
		out["trigger."+string(t)] = "- send: [" + name + "]\n"
	}
	return out
}()

// templateName is the default template a built-in trigger sends.
func templateName(t Trigger) string { return string(t)[len("on-"):] }
