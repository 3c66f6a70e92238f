package notifications

import (
	"net/url"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Vars are what templates and trigger conditions see, and the object given
// to the engine (our GetVars is the identity):
//
//	rollout       the Rollout as JSON fields ({{.rollout.metadata.name}})
//	step          number (1-based, absent when there are no steps), completed
//	              (steps done), count, and spec (the current step's fields)
//	weights       canary and stable weights in percent, absent without them
//	analysis      name, phase, message and metrics: per metric its phase
//	              and last measurement's value and message; absent without a run
//	dashboardURL  the Rollout's page on the dashboard, when configured
func Vars(ro *v1alpha1.Rollout, run *v1alpha1.AnalysisRun, dashboardURL string) (map[string]any, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
	if err != nil {
		return nil, err
	}
	vars := map[string]any{"rollout": obj}
	var steps []v1alpha1.CanaryStep
	if ro.Spec.Strategy.Canary != nil {
		steps = ro.Spec.Strategy.Canary.Steps
	}
	step := map[string]any{"count": len(steps), "completed": 0}
	if i := ro.Status.CurrentStepIndex; i != nil {
		step["completed"] = int(*i)
		if int(*i) < len(steps) {
			step["number"] = int(*i) + 1
			spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&steps[*i])
			if err != nil {
				return nil, err
			}
			step["spec"] = spec
		}
	}
	vars["step"] = step
	if w := ro.Status.Canary.Weights; w != nil {
		vars["weights"] = map[string]any{"canary": int(w.Canary.Weight), "stable": int(w.Stable.Weight)}
	}
	if run != nil {
		vars["analysis"] = analysisVars(run)
	}
	if dashboardURL != "" {
		vars["dashboardURL"] = dashboardURL + "/rollouts/" + url.PathEscape(ro.Namespace) + "/" + url.PathEscape(ro.Name)
	}
	return vars, nil
}

func analysisVars(run *v1alpha1.AnalysisRun) map[string]any {
	metrics := map[string]any{}
	for _, m := range run.Status.MetricResults {
		r := map[string]any{"phase": string(m.Phase)}
		if n := len(m.Measurements); n > 0 {
			last := m.Measurements[n-1]
			r["value"] = last.Value
			r["message"] = last.Message
		}
		metrics[m.Name] = r
	}
	return map[string]any{
		"name":    run.Name,
		"phase":   string(run.Status.Phase),
		"message": run.Status.Message,
		"metrics": metrics,
	}
}
