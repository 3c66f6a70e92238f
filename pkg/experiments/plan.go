package experiments

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/hash"
)

// ConditionCompleted is set once the Experiment has ended; its
// lastTransitionTime is when, which starts the scale-down delay.
const ConditionCompleted = "Completed"

// Input is everything the planner needs, gathered from the cache.
type Input struct {
	Experiment *v1alpha1.Experiment
	// ReplicaSets, Services and AnalysisRuns the Experiment owns, by
	// template or analysis name.
	ReplicaSets  map[string]*appsv1.ReplicaSet
	Services     map[string]*corev1.Service
	AnalysisRuns map[string]*v1alpha1.AnalysisRun
	// Templates are the analysis templates referenced, by
	// analysis.TemplateKey; a missing one is absent.
	Templates map[string]*v1alpha1.AnalysisTemplateSpec
	// WatchNamespace is the one namespace a namespaced controller watches
	// (empty in cluster mode): clusterScope references are invalid there.
	WatchNamespace string
	Now            time.Time
}

// Plan is what the applier does.
type Plan struct {
	CreateReplicaSets []*appsv1.ReplicaSet
	Scale             []Scale
	CreateServices    []*corev1.Service
	DeleteServices    []string
	CreateRuns        []*v1alpha1.AnalysisRun
	TerminateRuns     []string
	Status            v1alpha1.ExperimentStatus
	Events            []Event
	// RequeueAfter is when a deadline, the duration or a scale-down delay
	// ends; 0 means no timer.
	RequeueAfter time.Duration
}

// Scale sets the replicas of a ReplicaSet.
type Scale struct {
	Name     string
	Replicas int32
}

// Event is a Kubernetes event about the Experiment.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Event reasons.
const (
	ReasonTemplatesAvailable  = "TemplatesAvailable"
	ReasonExperimentCompleted = "ExperimentCompleted"
	ReasonExperimentFailed    = v1alpha1.ReasonExperimentFailed
)

func (p *Plan) after(d time.Duration) {
	if d > 0 && (p.RequeueAfter == 0 || d < p.RequeueAfter) {
		p.RequeueAfter = d
	}
}

// plan decides what to do with an Experiment. It is a pure function of its
// input: templates come up, then (once all are available) the analyses
// start and the duration counts; the Experiment ends Successful when the
// duration has passed or its required analyses succeeded, and with the
// worst analysis phase when one fails. After the end its runs are
// terminated, and once scaleDownDelaySeconds have passed its Services are
// deleted and its ReplicaSets scaled to 0.
func plan(in Input) Plan {
	ex := in.Experiment
	st := ex.Status.DeepCopy()
	st.ObservedGeneration = ex.Generation
	var p Plan
	if completed(st) == nil {
		if msg := invalidSpec(in); msg != "" {
			end(&p, st, v1alpha1.AnalysisPhaseError, msg, in.Now)
			p.Events[len(p.Events)-1].Reason = v1alpha1.ReasonInvalidSpec
		} else if hashes, err := templateHashes(ex); err != nil {
			end(&p, st, v1alpha1.AnalysisPhaseError, err.Error(), in.Now)
		} else {
			p.run(in, st, hashes)
		}
	}
	if at := completed(st); at != nil {
		p.wrapUp(in, st, *at)
	}
	p.Status = *st
	return p
}

// invalidSpec is what the controller cannot run in the spec, checked before
// anything is created.
func invalidSpec(in Input) string {
	for i, a := range in.Experiment.Spec.Analyses {
		if a.ClusterScope {
			if msg := analysis.ClusterScopeRefused(in.WatchNamespace, fmt.Sprintf("spec.analyses[%d]", i), a.TemplateName); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// completed is when the Experiment ended, or nil.
func completed(st *v1alpha1.ExperimentStatus) *time.Time {
	c := meta.FindStatusCondition(st.Conditions, ConditionCompleted)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return &c.LastTransitionTime.Time
}

func end(p *Plan, st *v1alpha1.ExperimentStatus, phase v1alpha1.AnalysisPhase, msg string, now time.Time) {
	st.Phase, st.Message = phase, msg
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: ConditionCompleted, Status: metav1.ConditionTrue, Reason: string(phase), Message: msg,
		LastTransitionTime: metav1.NewTime(now),
	})
	e := Event{Reason: ReasonExperimentCompleted, Message: fmt.Sprintf("Experiment %s: %s", phase, msg)}
	if phase != v1alpha1.AnalysisPhaseSuccessful {
		e.Warning, e.Reason = true, ReasonExperimentFailed
	}
	p.Events = append(p.Events, e)
}

// run drives a running Experiment.
func (p *Plan) run(in Input, st *v1alpha1.ExperimentStatus, hashes map[string]string) {
	ex := in.Experiment
	available := true
	var waitingFor string
	for _, t := range ex.Spec.Templates {
		ts := templateStatus(st, t.Name)
		ts.PodTemplateHash = hashes[t.Name]
		want := ptr.Deref(t.Replicas, 1)
		rs := in.ReplicaSets[t.Name]
		switch {
		case rs == nil:
			p.CreateReplicaSets = append(p.CreateReplicaSets, newReplicaSet(ex, &t, hashes[t.Name], want))
		case ptr.Deref(rs.Spec.Replicas, 0) != want:
			p.Scale = append(p.Scale, Scale{Name: rs.Name, Replicas: want})
		}
		observe(ts, rs)
		if t.Service != nil {
			ts.ServiceName = serviceName(ex, &t)
			if in.Services[t.Name] == nil {
				p.CreateServices = append(p.CreateServices, newService(ex, &t, hashes[t.Name]))
			}
		}
		ready := rs != nil && rs.Status.ObservedGeneration >= rs.Generation && ts.AvailableReplicas >= want && ptr.Deref(rs.Spec.Replicas, 0) == want
		if ready {
			ts.Status, ts.Message = v1alpha1.TemplateStatusRunning, ""
		} else {
			ts.Status = v1alpha1.TemplateStatusProgressing
			ts.Message = fmt.Sprintf("%d/%d replicas available", ts.AvailableReplicas, want)
			available = false
			if waitingFor == "" {
				waitingFor = fmt.Sprintf("template %s: %s", t.Name, ts.Message)
			}
		}
	}

	if ex.Spec.Terminate {
		end(p, st, worstRun(st), "terminated", in.Now)
		return
	}
	if st.AvailableAt == nil {
		if !available {
			deadline := ex.CreationTimestamp.Add(time.Duration(ptr.Deref(ex.Spec.ProgressDeadlineSeconds, 600)) * time.Second)
			if !in.Now.Before(deadline) {
				end(p, st, v1alpha1.AnalysisPhaseFailed, fmt.Sprintf("progress deadline exceeded: %s", waitingFor), in.Now)
				return
			}
			p.after(deadline.Sub(in.Now))
			st.Phase, st.Message = v1alpha1.AnalysisPhasePending, "Waiting for "+waitingFor
			return
		}
		st.AvailableAt = &metav1.Time{Time: in.Now}
		p.Events = append(p.Events, Event{Reason: ReasonTemplatesAvailable, Message: "All templates are available: the experiment starts"})
	}

	st.Phase, st.Message = v1alpha1.AnalysisPhaseRunning, ""
	if err := p.analyses(in, st, hashes); err != nil {
		end(p, st, v1alpha1.AnalysisPhaseError, err.Error(), in.Now)
		return
	}
	if worst := worstRun(st); worst.Completed() && worst != v1alpha1.AnalysisPhaseSuccessful {
		end(p, st, worst, deciding(st, worst), in.Now)
		return
	}
	d, err := ex.Spec.Duration.Parse()
	if err != nil {
		end(p, st, v1alpha1.AnalysisPhaseError, fmt.Sprintf("duration: %v", err), in.Now)
		return
	}
	if d > 0 {
		left := st.AvailableAt.Add(d).Sub(in.Now)
		if left <= 0 {
			end(p, st, v1alpha1.AnalysisPhaseSuccessful, fmt.Sprintf("ran for %s", d), in.Now)
			return
		}
		p.after(left)
		return
	}
	if required, done := requiredDone(ex, st); required > 0 && done {
		end(p, st, v1alpha1.AnalysisPhaseSuccessful, "the required analyses succeeded", in.Now)
	}
}

// analyses starts each analysis once and follows its run.
func (p *Plan) analyses(in Input, st *v1alpha1.ExperimentStatus, hashes map[string]string) error {
	ex := in.Experiment
	for i := range ex.Spec.Analyses {
		a := &ex.Spec.Analyses[i]
		rs := runStatus(st, a.Name)
		rs.AnalysisRun = runName(ex, a.Name)
		run := in.AnalysisRuns[a.Name]
		if run == nil {
			created, err := newRun(ex, a, in.Templates, hashes, st)
			if err != nil {
				return fmt.Errorf("analysis %s: %w", a.Name, err)
			}
			p.CreateRuns = append(p.CreateRuns, created)
			rs.Phase = v1alpha1.AnalysisPhasePending
			continue
		}
		rs.Phase, rs.Message = run.Status.Phase, run.Status.Message
		if rs.Phase == "" {
			rs.Phase = v1alpha1.AnalysisPhasePending
		}
	}
	return nil
}

// worstRun is the worst phase among the analyses (Successful without any).
func worstRun(st *v1alpha1.ExperimentStatus) v1alpha1.AnalysisPhase {
	phase := v1alpha1.AnalysisPhaseSuccessful
	for _, rs := range st.AnalysisRuns {
		if w, err := v1alpha1.Worst(phase, rs.Phase); err == nil {
			phase = w
		}
	}
	if phase == v1alpha1.AnalysisPhasePending || phase == v1alpha1.AnalysisPhaseRunning {
		// Unfinished analyses of a terminated experiment end Successful.
		return v1alpha1.AnalysisPhaseSuccessful
	}
	return phase
}

// deciding names the analysis whose phase decided the Experiment's.
func deciding(st *v1alpha1.ExperimentStatus, phase v1alpha1.AnalysisPhase) string {
	for _, rs := range st.AnalysisRuns {
		if rs.Phase == phase {
			return fmt.Sprintf("analysis %s (AnalysisRun %s) %s: %s", rs.Name, rs.AnalysisRun, phase, rs.Message)
		}
	}
	return string(phase)
}

// requiredDone counts the analyses requiredForCompletion and reports whether
// all of them succeeded.
func requiredDone(ex *v1alpha1.Experiment, st *v1alpha1.ExperimentStatus) (int, bool) {
	n, done := 0, true
	for _, a := range ex.Spec.Analyses {
		if !a.RequiredForCompletion {
			continue
		}
		n++
		done = done && runStatus(st, a.Name).Phase == v1alpha1.AnalysisPhaseSuccessful
	}
	return n, done
}

// wrapUp cleans up after the end: unfinished runs are terminated, and after
// scaleDownDelaySeconds the Services are deleted and the ReplicaSets scaled
// to 0.
func (p *Plan) wrapUp(in Input, st *v1alpha1.ExperimentStatus, endedAt time.Time) {
	for _, name := range slices.Sorted(maps.Keys(in.AnalysisRuns)) {
		run := in.AnalysisRuns[name]
		if !run.Spec.Terminate && !run.Status.Phase.Completed() {
			p.TerminateRuns = append(p.TerminateRuns, run.Name)
		}
	}
	delay := time.Duration(ptr.Deref(in.Experiment.Spec.ScaleDownDelaySeconds, 30)) * time.Second
	left := endedAt.Add(delay).Sub(in.Now)
	if left <= 0 {
		// The Services go with the pods: a router may still send the
		// templates traffic until their owner takes it back.
		for _, name := range slices.Sorted(maps.Keys(in.Services)) {
			p.DeleteServices = append(p.DeleteServices, in.Services[name].Name)
		}
	} else if len(in.Services) > 0 {
		p.after(left)
	}
	code := v1alpha1.TemplateStatusSuccessful
	switch st.Phase {
	case v1alpha1.AnalysisPhaseFailed, v1alpha1.AnalysisPhaseInconclusive:
		code = v1alpha1.TemplateStatusFailed
	case v1alpha1.AnalysisPhaseError:
		code = v1alpha1.TemplateStatusError
	}
	for _, t := range in.Experiment.Spec.Templates {
		ts := templateStatus(st, t.Name)
		rs := in.ReplicaSets[t.Name]
		observe(ts, rs)
		ts.Status, ts.ServiceName = code, ""
		if rs == nil || ptr.Deref(rs.Spec.Replicas, 0) == 0 {
			continue
		}
		if left > 0 {
			p.after(left)
			ts.Message = fmt.Sprintf("scaling down in %s", left.Round(time.Second))
			continue
		}
		ts.Message = ""
		p.Scale = append(p.Scale, Scale{Name: rs.Name, Replicas: 0})
	}
}

func observe(ts *v1alpha1.TemplateStatus, rs *appsv1.ReplicaSet) {
	if rs == nil {
		ts.Replicas, ts.UpdatedReplicas, ts.ReadyReplicas, ts.AvailableReplicas = 0, 0, 0, 0
		return
	}
	ts.Replicas = rs.Status.Replicas
	ts.UpdatedReplicas = rs.Status.FullyLabeledReplicas
	ts.ReadyReplicas = rs.Status.ReadyReplicas
	ts.AvailableReplicas = rs.Status.AvailableReplicas
}

func templateStatus(st *v1alpha1.ExperimentStatus, name string) *v1alpha1.TemplateStatus {
	for i := range st.TemplateStatuses {
		if st.TemplateStatuses[i].Name == name {
			return &st.TemplateStatuses[i]
		}
	}
	st.TemplateStatuses = append(st.TemplateStatuses, v1alpha1.TemplateStatus{Name: name})
	return &st.TemplateStatuses[len(st.TemplateStatuses)-1]
}

func runStatus(st *v1alpha1.ExperimentStatus, name string) *v1alpha1.ExperimentAnalysisRunStatus {
	for i := range st.AnalysisRuns {
		if st.AnalysisRuns[i].Name == name {
			return &st.AnalysisRuns[i]
		}
	}
	st.AnalysisRuns = append(st.AnalysisRuns, v1alpha1.ExperimentAnalysisRunStatus{Name: name})
	return &st.AnalysisRuns[len(st.AnalysisRuns)-1]
}

// templateHashes names each template's pods. The Experiment and template
// names are mixed in, so a template copied from a Rollout's stable spec
// never shares a hash — and so a Service — with the Rollout's own pods.
func templateHashes(ex *v1alpha1.Experiment) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range ex.Spec.Templates {
		sel, err := metav1.LabelSelectorAsSelector(t.Selector)
		if err != nil {
			return nil, fmt.Errorf("template %s: selector: %w", t.Name, err)
		}
		if sel.Empty() || !sel.Matches(labels.Set(t.Template.Labels)) {
			return nil, fmt.Errorf("template %s: selector %s does not match the template's labels", t.Name, sel)
		}
		h, err := hash.PodTemplate(&t.Template, nil, ex.Name, t.Name)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", t.Name, err)
		}
		out[t.Name] = h
	}
	return out, nil
}

func replicaSetName(ex *v1alpha1.Experiment, template string) string {
	return ex.Name + "-" + template
}

func runName(ex *v1alpha1.Experiment, analysisName string) string {
	return ex.Name + "-" + analysisName
}

// serviceName is the template's Service name: the one given, or the
// ReplicaSet's name shortened to a DNS label.
func serviceName(ex *v1alpha1.Experiment, t *v1alpha1.ExperimentTemplate) string {
	if t.Service.Name != "" {
		return t.Service.Name
	}
	name := replicaSetName(ex, t.Name)
	if len(name) <= 63 {
		return name
	}
	h, _ := hash.Of(name)
	return strings.TrimRight(name[:62-len(h)], "-.") + "-" + h
}

func ownerRef(ex *v1alpha1.Experiment) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(ex, v1alpha1.GroupVersion.WithKind("Experiment"))}
}

func ownedLabels(ex *v1alpha1.Experiment, extra map[string]string) map[string]string {
	out := map[string]string{v1alpha1.ExperimentLabel: ex.Name}
	maps.Copy(out, extra)
	return out
}

func newReplicaSet(ex *v1alpha1.Experiment, t *v1alpha1.ExperimentTemplate, podHash string, replicas int32) *appsv1.ReplicaSet {
	tmpl := t.Template.DeepCopy()
	tmpl.Labels = ownedLabels(ex, tmpl.Labels)
	tmpl.Labels[v1alpha1.ExperimentTemplateLabel] = t.Name
	tmpl.Labels[v1alpha1.PodTemplateHashLabel] = podHash
	selector := t.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[v1alpha1.PodTemplateHashLabel] = podHash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            replicaSetName(ex, t.Name),
			Namespace:       ex.Namespace,
			Labels:          tmpl.Labels,
			OwnerReferences: ownerRef(ex),
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        ptr.To(replicas),
			MinReadySeconds: t.MinReadySeconds,
			Selector:        selector,
			Template:        *tmpl,
		},
	}
}

// newService fronts a template's pods, with the ports its containers
// declare (headless when they declare none).
func newService(ex *v1alpha1.Experiment, t *v1alpha1.ExperimentTemplate, podHash string) *corev1.Service {
	selector := map[string]string{v1alpha1.PodTemplateHashLabel: podHash}
	maps.Copy(selector, t.Selector.MatchLabels)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            serviceName(ex, t),
			Namespace:       ex.Namespace,
			Labels:          ownedLabels(ex, map[string]string{v1alpha1.ExperimentTemplateLabel: t.Name}),
			OwnerReferences: ownerRef(ex),
		},
		Spec: corev1.ServiceSpec{Selector: selector},
	}
	for _, c := range t.Template.Spec.Containers {
		for _, port := range c.Ports {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
				Name: port.Name, Protocol: port.Protocol, Port: port.ContainerPort, TargetPort: intstr.FromInt32(port.ContainerPort),
			})
		}
	}
	if len(svc.Spec.Ports) == 0 {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	return svc
}

// templateRef matches {{templates.<name>.podTemplateHash}} and
// {{templates.<name>.serviceName}} in analysis args.
var templateRef = regexp.MustCompile(`\{\{\s*templates\.([A-Za-z0-9_.-]+?)\.(podTemplateHash|serviceName)\s*\}\}`)

// newRun builds the AnalysisRun of an analysis; arg values may name the
// templates' pod hashes and Service names.
func newRun(ex *v1alpha1.Experiment, a *v1alpha1.ExperimentAnalysis, templates map[string]*v1alpha1.AnalysisTemplateSpec, hashes map[string]string, st *v1alpha1.ExperimentStatus) (*v1alpha1.AnalysisRun, error) {
	specs, err := analysis.TemplateSpecs([]v1alpha1.AnalysisTemplateRef{{TemplateName: a.TemplateName, ClusterScope: a.ClusterScope}}, templates)
	if err != nil {
		return nil, err
	}
	args := make([]v1alpha1.AnalysisArg, 0, len(a.Args))
	for _, arg := range a.Args {
		arg = *arg.DeepCopy()
		if arg.Value != nil {
			var bad error
			v := templateRef.ReplaceAllStringFunc(*arg.Value, func(ref string) string {
				m := templateRef.FindStringSubmatch(ref)
				h, ok := hashes[m[1]]
				if !ok {
					bad = fmt.Errorf("arg %q refers to template %q, which the experiment does not have", arg.Name, m[1])
					return ref
				}
				if m[2] == "serviceName" {
					return templateStatus(st, m[1]).ServiceName
				}
				return h
			})
			if bad != nil {
				return nil, bad
			}
			arg.Value = &v
		}
		args = append(args, arg)
	}
	spec, err := analysis.BuildRunSpec(specs, args, func(_ string, from *v1alpha1.ArgValueFrom) (string, error) {
		if from.FieldRef != nil {
			return analysis.FieldOf(ex, from.FieldRef.FieldPath)
		}
		return "", fmt.Errorf("only value and valueFrom.fieldRef (or secretKeyRef) args are supported in experiments")
	})
	if err != nil {
		return nil, err
	}
	spec.DryRun = append(spec.DryRun, ex.Spec.DryRun...)
	spec.MeasurementRetention = append(spec.MeasurementRetention, ex.Spec.MeasurementRetention...)
	return &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:            runName(ex, a.Name),
			Namespace:       ex.Namespace,
			Labels:          ownedLabels(ex, map[string]string{v1alpha1.ExperimentAnalysisLabel: a.Name}),
			OwnerReferences: ownerRef(ex),
		},
		Spec: spec,
	}, nil
}
