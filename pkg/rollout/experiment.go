package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// experimentStep runs a canary experiment step: it creates the step's
// Experiment from the stable and canary templates, then follows it.
// Successful completes the step; Failed or Error asks for an abort;
// Inconclusive pauses until promoted.
func experimentStep(e *v1alpha1.RolloutExperimentStep, st *v1alpha1.RolloutStatus, w *world, idx int, res *stepResult) (done, stop bool) {
	name := runName(w.ro, st, strconv.Itoa(idx))
	res.keepRuns = append(res.keepRuns, name)
	ex := w.experiments[name]
	if ex == nil {
		created, err := newExperiment(w, st, e, name)
		if err != nil {
			res.phase, res.reason = v1alpha1.RolloutPhaseDegraded, v1alpha1.ReasonInvalidSpec
			res.message = fmt.Sprintf("Step %d (experiment): %v", idx+1, err)
			return false, true
		}
		res.createExperiments = append(res.createExperiments, created)
		st.Canary.CurrentExperiment = &v1alpha1.RunStatus{Name: name, Phase: v1alpha1.AnalysisPhasePending}
		res.reason, res.waiting = v1alpha1.ReasonProgressing, true
		res.message = fmt.Sprintf("Step %d/%d (experiment): started Experiment %s", idx+1, len(w.ro.Spec.Strategy.Canary.Steps), name)
		return false, true
	}
	phase := ex.Status.Phase
	if phase == "" {
		phase = v1alpha1.AnalysisPhasePending
	}
	cur := &v1alpha1.RunStatus{Name: name, Phase: phase, Message: ex.Status.Message}
	st.Canary.CurrentExperiment = cur
	switch {
	case phase == v1alpha1.AnalysisPhaseSuccessful:
		removePause(st, v1alpha1.PauseReasonInconclusiveExperiment)
		return true, false
	case failed(phase):
		res.abortFor = fmt.Sprintf("Experiment %s %s: %s", name, phase, cur.Message)
		return false, true
	case phase == v1alpha1.AnalysisPhaseInconclusive:
		addPause(st, v1alpha1.PauseReasonInconclusiveExperiment, w.now)
		res.reason = v1alpha1.ReasonInconclusiveExperiment
		res.message = fmt.Sprintf("Experiment %s is inconclusive: %s; promote to continue, abort to roll back", name, cur.Message)
		return false, true
	}
	if w.routed && ex.Status.AvailableAt != nil {
		res.extra = experimentTraffic(e, ex)
	}
	res.reason, res.waiting = v1alpha1.ReasonProgressing, true
	res.message = fmt.Sprintf("Step %d/%d (experiment): Experiment %s is %s", idx+1, len(w.ro.Spec.Strategy.Canary.Steps), name, phase)
	return false, true
}

// experimentTraffic is the traffic the step's weighted templates take once
// their Services front available pods.
func experimentTraffic(e *v1alpha1.RolloutExperimentStep, ex *v1alpha1.Experiment) []v1alpha1.WeightDestination {
	var out []v1alpha1.WeightDestination
	for _, t := range e.Templates {
		if ptr.Deref(t.Weight, 0) == 0 {
			continue
		}
		for _, ts := range ex.Status.TemplateStatuses {
			if ts.Name == t.Name && ts.ServiceName != "" && ts.Status == v1alpha1.TemplateStatusRunning {
				out = append(out, v1alpha1.WeightDestination{Weight: *t.Weight, PodTemplateHash: ts.PodTemplateHash, ServiceName: ts.ServiceName})
			}
		}
	}
	return out
}

// newExperiment builds the Experiment of a step: each template copies the
// stable or the canary pod template (without its hash label: the
// Experiment gives its pods their own), adds the step's pod metadata, and
// analysis args asking for pod template hashes get the Rollout's.
func newExperiment(w *world, st *v1alpha1.RolloutStatus, e *v1alpha1.RolloutExperimentStep, name string) (*v1alpha1.Experiment, error) {
	ro := w.ro
	ex := &v1alpha1.Experiment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       ro.Namespace,
			Labels:          map[string]string{v1alpha1.RolloutLabel: ro.Name, v1alpha1.PodTemplateHashLabel: st.CurrentPodHash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: v1alpha1.ExperimentSpec{Duration: e.Duration},
	}
	for _, t := range e.Templates {
		service := t.Service.DeepCopy()
		if ptr.Deref(t.Weight, 0) > 0 && service == nil {
			// Traffic reaches a template through its Service.
			service = &v1alpha1.TemplateService{}
		}
		var src *corev1.PodTemplateSpec
		switch t.SpecRef {
		case v1alpha1.SpecRefStable:
			if w.stable == nil || w.stable.template == nil {
				return nil, fmt.Errorf("template %s: there is no stable revision to copy", t.Name)
			}
			src = w.stable.template
		default:
			src = ro.Spec.Template
		}
		tmpl := src.DeepCopy()
		delete(tmpl.Labels, v1alpha1.PodTemplateHashLabel)
		// Experiment pods are neither stable nor canary.
		withoutEphemeral(tmpl)
		if tmpl.Labels == nil {
			tmpl.Labels = map[string]string{}
		}
		maps.Copy(tmpl.Labels, t.Metadata.Labels)
		if len(t.Metadata.Annotations) > 0 {
			if tmpl.Annotations == nil {
				tmpl.Annotations = map[string]string{}
			}
			maps.Copy(tmpl.Annotations, t.Metadata.Annotations)
		}
		selector := ro.Spec.Selector.DeepCopy()
		if t.Selector != nil {
			selector = t.Selector.DeepCopy()
		}
		ex.Spec.Templates = append(ex.Spec.Templates, v1alpha1.ExperimentTemplate{
			Name: t.Name, Replicas: ptr.To(ptr.Deref(t.Replicas, 1)), MinReadySeconds: ro.Spec.MinReadySeconds,
			Selector: selector, Template: *tmpl, Service: service,
		})
	}
	for _, a := range e.Analyses {
		a = *a.DeepCopy()
		for i, arg := range a.Args {
			if from := arg.ValueFrom; from != nil && from.PodTemplateHashValue != nil {
				v := st.CurrentPodHash
				if *from.PodTemplateHashValue == v1alpha1.PodTemplateHashStable {
					v = st.StableRS
				}
				a.Args[i] = v1alpha1.AnalysisArg{Name: arg.Name, Value: &v}
			}
		}
		ex.Spec.Analyses = append(ex.Spec.Analyses, a)
	}
	return ex, nil
}

// staleExperiments are the unfinished Experiments nobody follows any more:
// they are terminated.
func staleExperiments(experiments map[string]*v1alpha1.Experiment, keep []string) []string {
	var names []string
	for name, ex := range experiments {
		if !ex.Spec.Terminate && !ex.Status.Phase.Completed() && !slices.Contains(keep, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
