package experiments

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// world plays the API server and the other controllers for the planner:
// ReplicaSets become available one tick after they are scaled, runs do what
// the test says, and the clock moves one second per tick.
type world struct {
	t         *testing.T
	ex        *v1alpha1.Experiment
	rss       map[string]*appsv1.ReplicaSet
	services  map[string]*corev1.Service
	runs      map[string]*v1alpha1.AnalysisRun
	templates map[string]*v1alpha1.AnalysisTemplateSpec
	now       time.Time
	last      Plan
	// broken templates never become available.
	broken map[string]bool
}

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(t *testing.T, spec v1alpha1.ExperimentSpec) *world {
	ex := &v1alpha1.Experiment{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp", Namespace: "default", UID: "uid-cmp", Generation: 1, CreationTimestamp: metav1.NewTime(start)},
		Spec:       spec,
	}
	return &world{
		t: t, ex: ex, now: start, broken: map[string]bool{},
		rss: map[string]*appsv1.ReplicaSet{}, services: map[string]*corev1.Service{}, runs: map[string]*v1alpha1.AnalysisRun{},
		templates: map[string]*v1alpha1.AnalysisTemplateSpec{"judge": {
			Args: []v1alpha1.AnalysisArg{{Name: "baseline"}, {Name: "canary"}},
			Metrics: []v1alpha1.Metric{{Name: "latency", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{
				URL: "http://judge/?baseline={{args.baseline}}&canary={{args.canary}}",
			}}}},
		}},
	}
}

func template(name string, replicas int32) v1alpha1.ExperimentTemplate {
	labels := map[string]string{"app": "web", "track": name}
	return v1alpha1.ExperimentTemplate{
		Name: name, Replicas: ptr.To(replicas),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "web", Image: "web:" + name, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
		},
	}
}

func judgeAnalysis(required bool) v1alpha1.ExperimentAnalysis {
	return v1alpha1.ExperimentAnalysis{
		Name: "judge", TemplateName: "judge", RequiredForCompletion: required,
		Args: []v1alpha1.AnalysisArg{
			{Name: "baseline", Value: ptr.To("{{templates.baseline.podTemplateHash}}")},
			{Name: "canary", Value: ptr.To("{{ templates.canary.podTemplateHash }}")},
		},
	}
}

func (w *world) tick() Plan {
	w.t.Helper()
	p := plan(Input{Experiment: w.ex.DeepCopy(), ReplicaSets: w.rss, Services: w.services, AnalysisRuns: w.runs, Templates: w.templates, Now: w.now})
	for _, rs := range p.CreateReplicaSets {
		w.rss[rs.Labels[v1alpha1.ExperimentTemplateLabel]] = rs.DeepCopy()
	}
	for _, svc := range p.CreateServices {
		w.services[svc.Labels[v1alpha1.ExperimentTemplateLabel]] = svc.DeepCopy()
	}
	for _, run := range p.CreateRuns {
		run = run.DeepCopy()
		run.Status.Phase = v1alpha1.AnalysisPhaseRunning
		w.runs[run.Labels[v1alpha1.ExperimentAnalysisLabel]] = run
	}
	for _, name := range p.TerminateRuns {
		for _, run := range w.runs {
			if run.Name == name {
				run.Spec.Terminate, run.Status.Phase = true, v1alpha1.AnalysisPhaseSuccessful
			}
		}
	}
	for _, name := range p.DeleteServices {
		for k, svc := range w.services {
			if svc.Name == name {
				delete(w.services, k)
			}
		}
	}
	for _, sc := range p.Scale {
		for _, rs := range w.rss {
			if rs.Name == sc.Name {
				rs.Spec.Replicas = ptr.To(sc.Replicas)
			}
		}
	}
	w.ex.Status = p.Status
	// The world moves: pods come up (or down) by the next tick.
	for name, rs := range w.rss {
		n := ptr.Deref(rs.Spec.Replicas, 0)
		rs.Status.Replicas = n
		rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n
		if w.broken[name] {
			rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = 0, 0
		}
	}
	w.now = w.now.Add(time.Second)
	w.last = p
	return p
}

func (w *world) until(what string, limit int, cond func() bool) {
	w.t.Helper()
	for range limit {
		w.tick()
		if cond() {
			return
		}
	}
	w.t.Fatalf("not %s after %d ticks: status %+v", what, limit, w.ex.Status)
}

func (w *world) phase(p v1alpha1.AnalysisPhase) func() bool {
	return func() bool { return w.ex.Status.Phase == p }
}

func TestTemplatesComeUpThenAnalysesStart(t *testing.T) {
	spec := v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 2), template("canary", 2)}, Duration: "30s", Analyses: []v1alpha1.ExperimentAnalysis{judgeAnalysis(false)}}
	spec.Templates[1].Service = &v1alpha1.TemplateService{}
	w := newWorld(t, spec)
	p := w.tick()
	if len(p.CreateReplicaSets) != 2 || len(p.CreateRuns) != 0 || w.ex.Status.Phase != v1alpha1.AnalysisPhasePending {
		t.Fatalf("first plan: %d ReplicaSets, %d runs, phase %s", len(p.CreateReplicaSets), len(p.CreateRuns), w.ex.Status.Phase)
	}
	baseline, canary := w.rss["baseline"], w.rss["canary"]
	bh, ch := baseline.Labels[v1alpha1.PodTemplateHashLabel], canary.Labels[v1alpha1.PodTemplateHashLabel]
	if bh == "" || bh == ch || baseline.Spec.Selector.MatchLabels[v1alpha1.PodTemplateHashLabel] != bh || baseline.Spec.Template.Labels[v1alpha1.PodTemplateHashLabel] != bh {
		t.Fatalf("hash labels: baseline %q canary %q, selector %v", bh, ch, baseline.Spec.Selector.MatchLabels)
	}
	if ref := metav1.GetControllerOf(baseline); ref == nil || ref.Kind != "Experiment" || ref.Name != "cmp" {
		t.Fatalf("owner of the ReplicaSet: %+v", ref)
	}
	svc := w.services["canary"]
	if svc == nil || svc.Name != "cmp-canary" || svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != ch || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Fatalf("canary Service: %+v", svc)
	}
	if _, ok := w.services["baseline"]; ok {
		t.Fatal("a Service for a template that asked for none")
	}

	p = w.tick()
	if w.ex.Status.AvailableAt == nil || len(p.CreateRuns) != 1 || w.ex.Status.Phase != v1alpha1.AnalysisPhaseRunning {
		t.Fatalf("once available: availableAt %v, %d runs, phase %s", w.ex.Status.AvailableAt, len(p.CreateRuns), w.ex.Status.Phase)
	}
	url := w.runs["judge"].Spec.Metrics[0].Provider.Web.URL
	if want := "http://judge/?baseline=" + bh + "&canary=" + ch; url != want {
		t.Errorf("template hashes in args: %s, want %s", url, want)
	}
	if p.RequeueAfter != 30*time.Second {
		t.Errorf("requeue %s, want the duration", p.RequeueAfter)
	}
	ts := w.ex.Status.TemplateStatuses
	if diff := cmp.Diff([]string{"Running", "Running"}, []string{string(ts[0].Status), string(ts[1].Status)}); diff != "" || ts[1].ServiceName != "cmp-canary" {
		t.Errorf("template statuses %+v", ts)
	}

	// The duration passes: Successful, the run is terminated, and after the
	// delay the Service goes and the ReplicaSets are scaled down.
	w.until("Successful", 40, w.phase(v1alpha1.AnalysisPhaseSuccessful))
	if got := w.ex.Status.AvailableAt.Sub(start); got != time.Second {
		t.Errorf("availableAt %s after start", got)
	}
	if !w.runs["judge"].Spec.Terminate || len(w.services) != 1 {
		t.Fatalf("after the end: run terminated %v, services %d (kept until the scale-down)", w.runs["judge"].Spec.Terminate, len(w.services))
	}
	if ptr.Deref(w.rss["baseline"].Spec.Replicas, 0) != 2 {
		t.Fatal("scaled down before scaleDownDelaySeconds")
	}
	w.until("scaled down", 31, func() bool {
		return ptr.Deref(w.rss["baseline"].Spec.Replicas, 0) == 0 && ptr.Deref(w.rss["canary"].Spec.Replicas, 0) == 0
	})
	if len(w.services) != 0 {
		t.Fatal("the Service outlived the scale-down")
	}
	if w.ex.Status.TemplateStatuses[0].Status != v1alpha1.TemplateStatusSuccessful {
		t.Errorf("template status after success: %s", w.ex.Status.TemplateStatuses[0].Status)
	}
	if p := w.tick(); len(p.Scale)+len(p.CreateReplicaSets)+len(p.CreateRuns)+len(p.TerminateRuns) != 0 || p.RequeueAfter != 0 {
		t.Fatalf("a finished experiment still acts: %+v", p)
	}
}

func TestFailingAnalysisEndsTheExperiment(t *testing.T) {
	for _, phase := range []v1alpha1.AnalysisPhase{v1alpha1.AnalysisPhaseFailed, v1alpha1.AnalysisPhaseError, v1alpha1.AnalysisPhaseInconclusive} {
		t.Run(string(phase), func(t *testing.T) {
			w := newWorld(t, v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{judgeAnalysis(true)}})
			w.until("running", 5, w.phase(v1alpha1.AnalysisPhaseRunning))
			w.tick()
			w.runs["judge"].Status.Phase, w.runs["judge"].Status.Message = phase, "latency High"
			w.tick()
			if w.ex.Status.Phase != phase || !strings.Contains(w.ex.Status.Message, "judge") || !strings.Contains(w.ex.Status.Message, "latency High") {
				t.Fatalf("phase %s %q", w.ex.Status.Phase, w.ex.Status.Message)
			}
			if !w.last.Events[len(w.last.Events)-1].Warning {
				t.Error("no warning event")
			}
		})
	}
}

func TestRequiredAnalysesEndTheExperiment(t *testing.T) {
	w := newWorld(t, v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{judgeAnalysis(true)}})
	w.until("running", 5, w.phase(v1alpha1.AnalysisPhaseRunning))
	w.tick()
	w.tick()
	if w.ex.Status.Phase != v1alpha1.AnalysisPhaseRunning {
		t.Fatalf("ended before the required analysis: %s", w.ex.Status.Phase)
	}
	w.runs["judge"].Status.Phase = v1alpha1.AnalysisPhaseSuccessful
	w.tick()
	if w.ex.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Fatalf("phase %s after the required analysis succeeded", w.ex.Status.Phase)
	}
}

func TestWithoutDurationOrRequiredAnalysesItRunsUntilTerminated(t *testing.T) {
	w := newWorld(t, v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{judgeAnalysis(false)}})
	w.until("running", 5, w.phase(v1alpha1.AnalysisPhaseRunning))
	w.tick()
	w.runs["judge"].Status.Phase = v1alpha1.AnalysisPhaseSuccessful
	for range 20 {
		w.tick()
	}
	if w.ex.Status.Phase != v1alpha1.AnalysisPhaseRunning {
		t.Fatalf("phase %s without duration or required analyses", w.ex.Status.Phase)
	}
	w.ex.Spec.Terminate = true
	w.tick()
	if w.ex.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || w.ex.Status.Message != "terminated" {
		t.Fatalf("after terminate: %s %q", w.ex.Status.Phase, w.ex.Status.Message)
	}
}

func TestProgressDeadline(t *testing.T) {
	d := int32(10)
	w := newWorld(t, v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 2)}, ProgressDeadlineSeconds: &d})
	w.broken["canary"] = true
	p := w.tick()
	if p.RequeueAfter != 10*time.Second {
		t.Errorf("requeue %s, want the deadline", p.RequeueAfter)
	}
	w.until("Failed", 12, w.phase(v1alpha1.AnalysisPhaseFailed))
	if got := w.ex.Status.Message; !strings.Contains(got, "template canary: 0/2 replicas available") {
		t.Errorf("message %q", got)
	}
	if w.ex.Status.AvailableAt != nil || len(w.runs) != 0 {
		t.Error("started although a template never became available")
	}
}

func TestInvalidExperimentsCreateNothing(t *testing.T) {
	bad := template("canary", 1)
	bad.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
	unknownTemplate := judgeAnalysis(false)
	unknownTemplate.Args[1].Value = ptr.To("{{templates.candidate.podTemplateHash}}")
	missing := judgeAnalysis(false)
	missing.TemplateName = "nope"
	for name, tc := range map[string]struct {
		spec v1alpha1.ExperimentSpec
		want string
	}{
		"selector":         {v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), bad}}, "template canary: selector app=other does not match"},
		"unknown template": {v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{unknownTemplate}}, `template "candidate", which the experiment does not have`},
		"missing analysis": {v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1), template("canary", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{missing}}, `AnalysisTemplate "nope" was not found`},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, tc.spec)
			w.until("Error", 5, w.phase(v1alpha1.AnalysisPhaseError))
			if !strings.Contains(w.ex.Status.Message, tc.want) {
				t.Errorf("message %q, want %q", w.ex.Status.Message, tc.want)
			}
			if len(w.runs) != 0 {
				t.Error("runs created for an invalid experiment")
			}
			if name == "selector" && len(w.rss) != 0 {
				t.Error("ReplicaSets created for an invalid template")
			}
		})
	}
}

func TestServiceNameFitsADNSLabel(t *testing.T) {
	ex := &v1alpha1.Experiment{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("checkout-", 6) + "abc123-2"}}
	tmpl := template("baseline", 1)
	tmpl.Service = &v1alpha1.TemplateService{}
	name := serviceName(ex, &tmpl)
	if len(name) > 63 || !strings.HasPrefix(name, "checkout-") {
		t.Fatalf("service name %q (%d chars)", name, len(name))
	}
	tmpl.Service.Name = "mine"
	if got := serviceName(ex, &tmpl); got != "mine" {
		t.Fatalf("explicit service name %q", got)
	}
}

// TestClusterScopeInNamespacedMode: a namespaced controller cannot read
// ClusterAnalysisTemplates, so an Experiment that names one ends at once,
// InvalidSpec, before creating anything.
func TestClusterScopeInNamespacedMode(t *testing.T) {
	shared := judgeAnalysis(false)
	shared.TemplateName, shared.ClusterScope = "shared", true
	ex := &v1alpha1.Experiment{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp", Namespace: "team-a", CreationTimestamp: metav1.NewTime(start)},
		Spec:       v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{template("baseline", 1)}, Analyses: []v1alpha1.ExperimentAnalysis{judgeAnalysis(false), shared}},
	}
	p := plan(Input{Experiment: ex, WatchNamespace: "team-a", Now: start})
	want := `spec.analyses[1] refers to ClusterAnalysisTemplate "shared", but the controller runs namespaced (--namespace=team-a) and cannot read cluster-scoped templates`
	if p.Status.Phase != v1alpha1.AnalysisPhaseError || p.Status.Message != want {
		t.Errorf("phase %s message %q, want Error %q", p.Status.Phase, p.Status.Message, want)
	}
	if len(p.Events) != 1 || p.Events[0].Reason != v1alpha1.ReasonInvalidSpec || !p.Events[0].Warning {
		t.Errorf("events %+v, want one InvalidSpec warning", p.Events)
	}
	if len(p.CreateReplicaSets) != 0 || len(p.CreateRuns) != 0 || len(p.CreateServices) != 0 {
		t.Errorf("an invalid Experiment creates objects: %+v", p)
	}
	if p := plan(Input{Experiment: ex, Now: start}); len(p.CreateReplicaSets) != 1 || p.Status.Phase == v1alpha1.AnalysisPhaseError {
		t.Errorf("cluster mode: phase %s, ReplicaSets %d; want the experiment to start", p.Status.Phase, len(p.CreateReplicaSets))
	}
}
