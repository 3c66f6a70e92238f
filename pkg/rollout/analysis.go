package rollout

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// The analyses a Rollout runs, as v1alpha1.AnalysisKindLabel values.
const (
	runOfStep          = "step"
	runOfBackground    = "background"
	runOfPrePromotion  = "prePromotion"
	runOfPostPromotion = "postPromotion"
)

// fieldAnalysis is an analysis of the strategy and the field that holds it.
type fieldAnalysis struct {
	field    string
	analysis *v1alpha1.RolloutAnalysis
}

// analysesOf lists every analysis the Rollout's strategy may run.
func analysesOf(ro *v1alpha1.Rollout) []fieldAnalysis {
	var out []fieldAnalysis
	add := func(field string, a *v1alpha1.RolloutAnalysis) {
		if a != nil {
			out = append(out, fieldAnalysis{field, a})
		}
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		if c.Analysis != nil {
			add("spec.strategy.canary.analysis", &c.Analysis.RolloutAnalysis)
		}
		for i, step := range c.Steps {
			add(fmt.Sprintf("spec.strategy.canary.steps[%d].analysis", i), step.Analysis)
		}
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil {
		add("spec.strategy.blueGreen.prePromotionAnalysis", bg.PrePromotionAnalysis)
		add("spec.strategy.blueGreen.postPromotionAnalysis", bg.PostPromotionAnalysis)
	}
	return out
}

// runName names an AnalysisRun of the current update: the Rollout, the
// revision, which analysis (suffix), and — after a retry, which starts the
// update over with fresh runs — a short hash of the retry token.
func runName(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, suffix string) string {
	name := fmt.Sprintf("%s-%s-%s", ro.Name, st.CurrentPodHash, suffix)
	if t := st.LastHandled.Retry; t != "" {
		name += "-r" + shortHash(t)
	}
	return name
}

func shortHash(s string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%x", h.Sum32()&0xffff)
}

// follow makes sure the AnalysisRun name of analysis a exists — it is
// created from the templates when it doesn't — and records it in *slot. It
// returns the run's phase (Pending until the run is measured). The run is
// kept running: plan terminates every other unfinished run.
func (o *outcome) follow(w *world, st *v1alpha1.RolloutStatus, a *v1alpha1.RolloutAnalysis, kind, name string, slot **v1alpha1.RunStatus) (v1alpha1.AnalysisPhase, error) {
	o.keepRuns = append(o.keepRuns, name)
	run := w.runs[name]
	if run == nil {
		created, err := newRun(w.ro, st, a, w.templates, kind, name)
		if err != nil {
			return "", err
		}
		o.createRuns = append(o.createRuns, created)
		*slot = &v1alpha1.RunStatus{Name: name, Phase: v1alpha1.AnalysisPhasePending}
		return v1alpha1.AnalysisPhasePending, nil
	}
	phase := run.Status.Phase
	if phase == "" {
		phase = v1alpha1.AnalysisPhasePending
	}
	*slot = &v1alpha1.RunStatus{Name: name, Phase: phase, Message: run.Status.Message}
	return phase, nil
}

// failed reports whether a run's phase ends the update: Failed or Error.
func failed(phase v1alpha1.AnalysisPhase) bool {
	return phase == v1alpha1.AnalysisPhaseFailed || phase == v1alpha1.AnalysisPhaseError
}

// runFailure describes a failed run for the abort message and event.
func runFailure(rs *v1alpha1.RunStatus) string {
	return fmt.Sprintf("AnalysisRun %s %s: %s", rs.Name, rs.Phase, rs.Message)
}

// failedRun says which run of the update failed, if any, for the message
// of an aborted Rollout.
func failedRun(st *v1alpha1.RolloutStatus) string {
	for _, rs := range []*v1alpha1.RunStatus{
		st.Canary.CurrentStepAnalysisRun, st.Canary.CurrentBackgroundAnalysisRun,
		st.BlueGreen.PrePromotionAnalysisRun, st.BlueGreen.PostPromotionAnalysisRun,
	} {
		if rs != nil && failed(rs.Phase) {
			return runFailure(rs)
		}
	}
	if ex := st.Canary.CurrentExperiment; ex != nil && failed(ex.Phase) {
		return fmt.Sprintf("Experiment %s %s: %s", ex.Name, ex.Phase, ex.Message)
	}
	return ""
}

// clearRuns forgets the runs of the update (a new update or a retry starts
// fresh ones).
func clearRuns(st *v1alpha1.RolloutStatus) {
	st.Canary.CurrentExperiment = nil
	st.Canary.CurrentStepAnalysisRun = nil
	st.Canary.CurrentBackgroundAnalysisRun = nil
	st.BlueGreen.PrePromotionAnalysisRun = nil
	st.BlueGreen.PostPromotionAnalysisRun = nil
}

// staleRuns are the unfinished runs nobody follows any more — those of a
// step that was promoted past, of an aborted or finished update, of an older
// revision: they are terminated, which ends their unmeasured metrics
// Successful.
func staleRuns(runs map[string]*v1alpha1.AnalysisRun, keep []string) []string {
	var names []string
	for name, run := range runs {
		if !run.Spec.Terminate && !run.Status.Phase.Completed() && !slices.Contains(keep, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// runHistory lists the finished runs beyond the history limits, oldest
// first; the runs being followed are never deleted.
func runHistory(runs map[string]*v1alpha1.AnalysisRun, keep []string, h *v1alpha1.AnalysisRunHistory) []string {
	successful, unsuccessful := int32(5), int32(5)
	if h != nil {
		successful = ptr.Deref(h.SuccessfulRunHistoryLimit, successful)
		unsuccessful = ptr.Deref(h.UnsuccessfulRunHistoryLimit, unsuccessful)
	}
	var done []*v1alpha1.AnalysisRun
	for name, run := range runs {
		if run.Status.Phase.Completed() && !slices.Contains(keep, name) {
			done = append(done, run)
		}
	}
	// Newest first; names break ties so the plan is deterministic.
	slices.SortFunc(done, func(a, b *v1alpha1.AnalysisRun) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	var names []string
	for _, run := range done {
		limit := &unsuccessful
		if run.Status.Phase == v1alpha1.AnalysisPhaseSuccessful {
			limit = &successful
		}
		if *limit > 0 {
			*limit--
			continue
		}
		names = append(names, run.Name)
	}
	slices.Reverse(names)
	return names
}

// newRun builds the AnalysisRun of an analysis from the templates the
// Rollout references, with its args resolved: podTemplateHashValue from the
// stable or current hash, fieldRef from the Rollout's metadata.
func newRun(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, a *v1alpha1.RolloutAnalysis, templates map[string]*v1alpha1.AnalysisTemplateSpec, kind, name string) (*v1alpha1.AnalysisRun, error) {
	specs, err := analysis.TemplateSpecs(a.Templates, templates)
	if err != nil {
		return nil, err
	}
	spec, err := analysis.BuildRunSpec(specs, a.Args, func(_ string, from *v1alpha1.ArgValueFrom) (string, error) {
		switch {
		case from.PodTemplateHashValue != nil && *from.PodTemplateHashValue == v1alpha1.PodTemplateHashStable:
			return st.StableRS, nil
		case from.PodTemplateHashValue != nil:
			return st.CurrentPodHash, nil
		case from.FieldRef != nil:
			return analysis.FieldOf(ro, from.FieldRef.FieldPath)
		}
		return "", fmt.Errorf("unsupported valueFrom")
	})
	if err != nil {
		return nil, err
	}
	return &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       ro.Namespace,
			Labels:          map[string]string{v1alpha1.RolloutLabel: ro.Name, v1alpha1.AnalysisKindLabel: kind, v1alpha1.PodTemplateHashLabel: st.CurrentPodHash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: spec,
	}, nil
}
