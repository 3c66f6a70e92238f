package notifications

import "github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"

// Trigger names a built-in trigger: each is fired by one kind of Rollout
// transition (DESIGN.md §16). The names are part of the API.
type Trigger = v1alpha1.NotificationTrigger

// The built-in triggers.
const (
	TriggerRolloutUpdated          = v1alpha1.TriggerRolloutUpdated
	TriggerRolloutStepCompleted    = v1alpha1.TriggerRolloutStepCompleted
	TriggerRolloutPaused           = v1alpha1.TriggerRolloutPaused
	TriggerRolloutPromoted         = v1alpha1.TriggerRolloutPromoted
	TriggerRolloutCompleted        = v1alpha1.TriggerRolloutCompleted
	TriggerRolloutAborted          = v1alpha1.TriggerRolloutAborted
	TriggerAnalysisRunFailed       = v1alpha1.TriggerAnalysisRunFailed
	TriggerAnalysisRunError        = v1alpha1.TriggerAnalysisRunError
	TriggerAnalysisRunInconclusive = v1alpha1.TriggerAnalysisRunInconclusive
	TriggerRolloutDegraded         = v1alpha1.TriggerRolloutDegraded
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
