package dashboard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// summary is a Rollout's row; revision is its current ReplicaSet's.
func summary(ro *v1alpha1.Rollout, revision string) RolloutSummary {
	s := RolloutSummary{
		Namespace: ro.Namespace, Name: ro.Name, Strategy: "canary",
		Phase: string(ro.Status.Phase), Message: ro.Status.Message,
		Revision: revision, Created: stamp(ro.CreationTimestamp),
		Aborted: ro.Status.Abort, SpecPaused: ro.Spec.Paused,
	}
	if ro.Spec.Template != nil {
		s.Images = images(ro.Spec.Template.Spec.Containers)
	}
	if ro.Spec.Strategy.BlueGreen != nil {
		s.Strategy = "blueGreen"
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		pos := &StepPosition{Count: len(c.Steps)}
		if i := int(ptr.Deref(ro.Status.CurrentStepIndex, 0)); i < len(c.Steps) {
			pos.Current = ptr.To(i + 1)
		}
		s.Step = pos
	}
	if w := ro.Status.Canary.Weights; w != nil {
		s.CanaryWeight = ptr.To(w.Canary.Weight)
	}
	return s
}

// currentRevision is the revision of the Rollout's current ReplicaSet
// among rss, "" before it exists.
func currentRevision(ro *v1alpha1.Rollout, rss []appsv1.ReplicaSet) string {
	for _, rs := range rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == ro.Status.CurrentPodHash {
			return rs.Annotations[v1alpha1.RevisionAnnotation]
		}
	}
	return ""
}

// detail is a Rollout's page, from what the cache holds of it.
func detail(ro *v1alpha1.Rollout, rss []appsv1.ReplicaSet, pods []corev1.Pod, runs []v1alpha1.AnalysisRun, exps []v1alpha1.Experiment, events []corev1.Event, actions Actions) RolloutDetail {
	d := RolloutDetail{RolloutSummary: summary(ro, currentRevision(ro, rss)), LastHandled: map[string]string{}}
	if c := ro.Spec.Strategy.Canary; c != nil {
		cur := int(ptr.Deref(ro.Status.CurrentStepIndex, 0))
		for i, st := range c.Steps {
			state := "pending"
			switch {
			case i < cur:
				state = "done"
			case i == cur:
				state = "current"
			}
			kind, text := stepText(st)
			d.Steps = append(d.Steps, Step{Index: i + 1, Kind: kind, Text: text, State: state})
		}
	}
	for _, p := range ro.Status.PauseConditions {
		pause := Pause{Reason: string(p.Reason), StartTime: stamp(p.StartTime)}
		if p.Reason == v1alpha1.PauseReasonCanaryPauseStep {
			if d := pauseDuration(ro); d > 0 {
				pause.Until = ptr.To(p.StartTime.Add(d).UTC().Format(time.RFC3339))
			}
		}
		d.Pauses = append(d.Pauses, pause)
	}
	if w := ro.Status.Canary.Weights; w != nil {
		t := &Traffic{Stable: destination(w.Stable), Canary: destination(w.Canary), Verified: w.Verified}
		for _, a := range w.Additional {
			t.Additional = append(t.Additional, destination(a))
		}
		d.Traffic = t
	}
	d.Revisions = revisions(ro, rss, pods)
	slices.SortFunc(runs, func(a, b v1alpha1.AnalysisRun) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for _, r := range runs {
		d.Analysis = append(d.Analysis, RunSummary{Name: r.Name, Phase: string(r.Status.Phase), Message: r.Status.Message, Created: stamp(r.CreationTimestamp)})
	}
	slices.SortFunc(exps, func(a, b v1alpha1.Experiment) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	for _, e := range exps {
		d.Experiments = append(d.Experiments, RunSummary{Name: e.Name, Phase: string(e.Status.Phase), Message: e.Status.Message, Created: stamp(e.CreationTimestamp)})
	}
	for _, c := range ro.Status.Conditions {
		d.Conditions = append(d.Conditions, Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: stamp(c.LastTransitionTime)})
	}
	d.Events = recentEvents(events)
	for k, v := range map[string]string{
		"promote": ro.Status.LastHandled.Promote, "promote-full": ro.Status.LastHandled.PromoteFull,
		"abort": ro.Status.LastHandled.Abort, "retry": ro.Status.LastHandled.Retry,
	} {
		if v != "" {
			d.LastHandled[k] = v
		}
	}
	for _, name := range actions.Names {
		why := actions.Check(name, ro)
		d.Actions = append(d.Actions, ActionState{Name: name, Allowed: why == "", Reason: why})
	}
	return d
}

// maxEvents is how many events the detail shows.
const maxEvents = 20

func recentEvents(events []corev1.Event) []Event {
	last := func(e corev1.Event) time.Time {
		var series time.Time
		if e.Series != nil {
			series = e.Series.LastObservedTime.Time
		}
		for _, t := range []time.Time{series, e.LastTimestamp.Time, e.EventTime.Time, e.CreationTimestamp.Time} {
			if !t.IsZero() {
				return t
			}
		}
		return time.Time{}
	}
	slices.SortFunc(events, func(a, b corev1.Event) int { return last(b).Compare(last(a)) })
	var out []Event
	for _, e := range events[:min(len(events), maxEvents)] {
		count := e.Count
		if e.Series != nil {
			count = e.Series.Count
		}
		out = append(out, Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Time: last(e).UTC().Format(time.RFC3339), Count: max(count, 1)})
	}
	return out
}

func revisions(ro *v1alpha1.Rollout, rss []appsv1.ReplicaSet, pods []corev1.Pod) []Revision {
	var out []Revision
	for _, rs := range rss {
		hash := rs.Labels[v1alpha1.PodTemplateHashLabel]
		if ptr.Deref(rs.Spec.Replicas, 0) == 0 && rs.Status.Replicas == 0 && hash != ro.Status.StableRS && hash != ro.Status.CurrentPodHash {
			continue
		}
		role := "old"
		switch hash {
		case ro.Status.StableRS:
			role = "stable"
		case ro.Status.CurrentPodHash:
			role = "canary"
		}
		r := Revision{
			Revision: rs.Annotations[v1alpha1.RevisionAnnotation], Name: rs.Name, Hash: hash, Role: role,
			Images: images(rs.Spec.Template.Spec.Containers), Replicas: ptr.Deref(rs.Spec.Replicas, 0),
			Ready: rs.Status.ReadyReplicas, Available: rs.Status.AvailableReplicas,
		}
		for _, p := range pods {
			if metav1.IsControlledBy(&p, &rs) {
				r.Pods = append(r.Pods, Pod{Name: p.Name, Phase: string(p.Status.Phase), Ready: podReady(&p)})
			}
		}
		slices.SortFunc(r.Pods, func(a, b Pod) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, r)
	}
	rev := func(r Revision) int { n, _ := strconv.Atoi(r.Revision); return n }
	slices.SortFunc(out, func(a, b Revision) int { return rev(b) - rev(a) })
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func destination(w v1alpha1.WeightDestination) Destination {
	name := w.ServiceName
	if name == "" {
		name = w.PodTemplateHash
	}
	return Destination{Name: name, Weight: w.Weight}
}

// pauseDuration is the duration of the current pause step, 0 without one.
func pauseDuration(ro *v1alpha1.Rollout) time.Duration {
	c := ro.Spec.Strategy.Canary
	i := int(ptr.Deref(ro.Status.CurrentStepIndex, 0))
	if c == nil || i >= len(c.Steps) || c.Steps[i].Pause == nil || c.Steps[i].Pause.Duration == nil {
		return 0
	}
	d, err := v1alpha1.ParseSecondsOrDuration(*c.Steps[i].Pause.Duration)
	if err != nil {
		return 0
	}
	return d
}

func stepText(s v1alpha1.CanaryStep) (kind, text string) {
	k, err := s.Kind()
	if err != nil {
		return "invalid", err.Error()
	}
	switch {
	case s.SetWeight != nil:
		return string(k), fmt.Sprintf("setWeight %d", *s.SetWeight)
	case s.Pause != nil && s.Pause.Duration != nil:
		if d := s.Pause.Duration; d.Type == intstr.Int {
			return string(k), fmt.Sprintf("pause %ds", d.IntVal)
		}
		return string(k), "pause " + s.Pause.Duration.StrVal
	case s.Pause != nil:
		return string(k), "pause until promoted"
	case s.Analysis != nil:
		var names []string
		for _, t := range s.Analysis.Templates {
			names = append(names, t.TemplateName)
		}
		return string(k), "analysis " + strings.Join(names, ", ")
	case s.Experiment != nil:
		var names []string
		for _, t := range s.Experiment.Templates {
			names = append(names, t.Name)
		}
		return string(k), "experiment " + strings.Join(names, ", ")
	case s.SetCanaryScale != nil:
		switch cs := s.SetCanaryScale; {
		case cs.Replicas != nil:
			return string(k), fmt.Sprintf("setCanaryScale %d replicas", *cs.Replicas)
		case cs.Weight != nil:
			return string(k), fmt.Sprintf("setCanaryScale %d%%", *cs.Weight)
		}
		return string(k), "setCanaryScale matchTrafficWeight"
	case s.SetHeaderRoute != nil:
		return string(k), "setHeaderRoute " + s.SetHeaderRoute.Name
	case s.SetMirrorRoute != nil:
		return string(k), "setMirrorRoute " + s.SetMirrorRoute.Name
	}
	return string(k), string(k)
}

func images(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

func stamp(t metav1.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func microStamp(t *metav1.MicroTime) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// rolloutOf is the name of the Rollout that owns an object, or "".
func rolloutOf(refs []metav1.OwnerReference) string {
	for _, r := range refs {
		if r.Kind == "Rollout" && r.APIVersion == v1alpha1.GroupVersion.String() {
			return r.Name
		}
	}
	return ""
}

// runDetail is an AnalysisRun's page.
func runDetail(run *v1alpha1.AnalysisRun) AnalysisRunDetail {
	d := AnalysisRunDetail{
		RunSummary: RunSummary{Name: run.Name, Phase: string(run.Status.Phase), Message: run.Status.Message, Created: stamp(run.CreationTimestamp)},
		Namespace:  run.Namespace, Rollout: rolloutOf(run.OwnerReferences),
	}
	results := map[string]v1alpha1.MetricResult{}
	for _, r := range run.Status.MetricResults {
		results[r.Name] = r
	}
	for _, m := range run.Spec.Metrics {
		res := results[m.Name]
		metric := Metric{
			Name: m.Name, Phase: string(res.Phase), SuccessCondition: m.SuccessCondition, FailureCondition: m.FailureCondition,
			Thresholds: append(thresholds("success", m.SuccessCondition), thresholds("failure", m.FailureCondition)...),
		}
		for _, ms := range res.Measurements {
			metric.Measurements = append(metric.Measurements, Measurement{
				Phase: string(ms.Phase), Value: ms.Value, Number: number(ms.Value), Message: ms.Message,
				StartedAt: microStamp(ms.StartedAt), FinishedAt: microStamp(ms.FinishedAt),
			})
		}
		if m.Provider.Judge != nil && len(res.Measurements) > 0 {
			metric.Judge = judgment(res.Measurements[len(res.Measurements)-1].Value)
		}
		d.Metrics = append(d.Metrics, metric)
	}
	return d
}

// numberInCondition finds the numbers a condition compares with.
var numberInCondition = regexp.MustCompile(`(?:<=|>=|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)`)

func thresholds(kind, cond string) []Threshold {
	var out []Threshold
	for _, m := range numberInCondition.FindAllStringSubmatch(cond, -1) {
		if v, err := strconv.ParseFloat(m[1], 64); err == nil {
			out = append(out, Threshold{Kind: kind, Value: v})
		}
	}
	return out
}

// number reads a measurement's value: a number, or a list holding one.
func number(v string) *float64 {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return &f
	}
	var list []float64
	if err := json.Unmarshal([]byte(v), &list); err == nil && len(list) == 1 {
		return &list[0]
	}
	var judged struct {
		Score *float64 `json:"score"`
	}
	if err := json.Unmarshal([]byte(v), &judged); err == nil && judged.Score != nil {
		return judged.Score
	}
	return nil
}

func judgment(v string) *Judgment {
	var j Judgment
	if err := json.Unmarshal([]byte(v), &j); err != nil {
		return nil
	}
	return &j
}

// experimentDetail is an Experiment's page.
func experimentDetail(ex *v1alpha1.Experiment) ExperimentDetail {
	d := ExperimentDetail{
		RunSummary: RunSummary{Name: ex.Name, Phase: string(ex.Status.Phase), Message: ex.Status.Message, Created: stamp(ex.CreationTimestamp)},
		Namespace:  ex.Namespace, Rollout: rolloutOf(ex.OwnerReferences),
	}
	statuses := map[string]v1alpha1.TemplateStatus{}
	for _, s := range ex.Status.TemplateStatuses {
		statuses[s.Name] = s
	}
	for _, t := range ex.Spec.Templates {
		s := statuses[t.Name]
		d.Templates = append(d.Templates, ExperimentTemplate{Name: t.Name, Replicas: ptr.Deref(t.Replicas, 1), Available: s.AvailableReplicas, Status: string(s.Status)})
	}
	for _, a := range ex.Status.AnalysisRuns {
		d.Analyses = append(d.Analyses, RunSummary{Name: a.AnalysisRun, Phase: string(a.Phase), Message: a.Message})
	}
	return d
}
