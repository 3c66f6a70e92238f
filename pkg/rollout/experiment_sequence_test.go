package rollout

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

func experimentStepOf() v1alpha1.CanaryStep {
	latest, stable := v1alpha1.PodTemplateHashLatest, v1alpha1.PodTemplateHashStable
	return v1alpha1.CanaryStep{Experiment: &v1alpha1.RolloutExperimentStep{
		Duration: "1m",
		Templates: []v1alpha1.RolloutExperimentTemplate{
			{Name: "baseline", SpecRef: v1alpha1.SpecRefStable, Replicas: ptr.To[int32](2), Metadata: v1alpha1.PodMetadata{Labels: map[string]string{"track": "baseline"}}},
			{Name: "canary", SpecRef: v1alpha1.SpecRefCanary, Service: &v1alpha1.TemplateService{}},
		},
		Analyses: []v1alpha1.ExperimentAnalysis{{
			Name: "judge", TemplateName: "judge", RequiredForCompletion: true,
			Args: []v1alpha1.AnalysisArg{
				{Name: "stable", ValueFrom: &v1alpha1.ArgValueFrom{PodTemplateHashValue: &stable}},
				{Name: "latest", ValueFrom: &v1alpha1.ArgValueFrom{PodTemplateHashValue: &latest}},
				{Name: "baseline", Value: ptr.To("{{templates.baseline.podTemplateHash}}")},
			},
		}},
	}}
}

// finishExperiment gives the newest Experiment a phase.
func (s *sim) finishExperiment(phase v1alpha1.AnalysisPhase) {
	s.t.Helper()
	var newest *v1alpha1.Experiment
	for _, ex := range s.experiments {
		if strings.Contains(ex.Name, s.ro.Status.CurrentPodHash) {
			newest = ex
		}
	}
	if newest == nil {
		s.t.Fatalf("no experiment of the update; story:\n%s", s.story.String())
	}
	newest.Status.Phase, newest.Status.Message = phase, `analysis judge `+string(phase)
	s.say("world: experiment %s is %s", newest.Name, phase)
}

func TestSequenceExperimentStep(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "0", setWeight(25), experimentStepOf(), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentExperiment != nil })
	ex := s.experiments[s.ro.Status.Canary.CurrentExperiment.Name]
	if got := ex.Spec.Templates[0].Template.Spec.Containers[0].Image; got != "web:1" {
		t.Errorf("baseline copies %s, want the stable web:1", got)
	}
	if got := ex.Spec.Templates[1].Template.Spec.Containers[0].Image; got != "web:2" {
		t.Errorf("canary copies %s, want web:2", got)
	}
	if _, ok := ex.Spec.Templates[0].Template.Labels[v1alpha1.PodTemplateHashLabel]; ok {
		t.Error("the baseline template keeps the stable hash label")
	}
	if ex.Spec.Templates[0].Template.Labels["track"] != "baseline" || *ex.Spec.Templates[0].Replicas != 2 || *ex.Spec.Templates[1].Replicas != 1 {
		t.Errorf("template metadata/replicas: %+v", ex.Spec.Templates)
	}
	args := ex.Spec.Analyses[0].Args
	if *args[0].Value != s.ro.Status.StableRS || *args[1].Value != s.ro.Status.CurrentPodHash || *args[2].Value != "{{templates.baseline.podTemplateHash}}" {
		t.Errorf("analysis args %+v", args)
	}
	s.wait(5)
	if got := ptr.Deref(s.ro.Status.CurrentStepIndex, 0); got != 1 {
		t.Fatalf("left the experiment step before it ended: step %d", got)
	}
	s.finishExperiment(v1alpha1.AnalysisPhaseSuccessful)
	s.until("paused after the experiment", 5, pausedAt(2))
	s.request(v1alpha1.PromoteAnnotation, "go")
	s.until("Healthy on web:2", 20, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })

	// A failing experiment aborts the update.
	s.setImage("web:3")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool {
		return st.Canary.CurrentExperiment != nil && strings.Contains(st.Canary.CurrentExperiment.Name, st.CurrentPodHash)
	})
	s.finishExperiment(v1alpha1.AnalysisPhaseFailed)
	s.tick()
	if !s.ro.Status.Abort || !strings.Contains(s.ro.Status.Message, "Experiment") || !strings.Contains(s.ro.Status.Message, "judge Failed") {
		t.Fatalf("after a failing experiment: abort=%v %q", s.ro.Status.Abort, s.ro.Status.Message)
	}
	s.until("stable settled", 20, func(v1alpha1.RolloutStatus) bool { return s.stableSettled() })
	s.golden()
}

func TestSequenceExperimentTerminatedOnAbort(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "0", setWeight(25), experimentStepOf(), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentExperiment != nil })
	s.tick()
	s.request(v1alpha1.AbortAnnotation, "stop")
	s.tick()
	ex := s.experiments[s.ro.Status.Canary.CurrentExperiment.Name]
	if !ex.Spec.Terminate {
		t.Fatal("the experiment of an aborted update was not terminated")
	}
}

func TestSequenceExperimentInconclusivePauses(t *testing.T) {
	s := newSim(t, canaryRollout(4, "25%", "0", setWeight(25), experimentStepOf(), setWeight(50)))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentExperiment != nil })
	s.tick()
	s.finishExperiment(v1alpha1.AnalysisPhaseInconclusive)
	s.until("paused", 3, pausedPhase)
	if pc := s.ro.Status.PauseConditions; len(pc) != 1 || pc[0].Reason != v1alpha1.PauseReasonInconclusiveExperiment {
		t.Fatalf("pause conditions %+v", pc)
	}
	s.request(v1alpha1.PromoteAnnotation, "accept")
	s.until("Healthy on web:2", 20, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
}

// TestSequenceWeightedExperiment: with traffic routing, the experiment's
// weighted templates get their share once available (taken from the
// stable's), and the routers are told to drop them when the step ends.
func TestSequenceWeightedExperiment(t *testing.T) {
	step := experimentStepOf()
	step.Experiment.Templates[0].Weight = ptr.To[int32](5)
	step.Experiment.Templates[1].Weight = ptr.To[int32](5)
	s := newSim(t, routedRollout(4, setWeight(20), step, pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentExperiment != nil })
	ex := s.experiments[s.ro.Status.Canary.CurrentExperiment.Name]
	if ex.Spec.Templates[0].Service == nil {
		t.Fatal("a weighted template without a Service")
	}
	if p := s.tick(); len(p.TrafficExtra) != 0 {
		t.Fatalf("traffic to templates that are not available: %+v", p.TrafficExtra)
	}
	// The Experiment's templates come up.
	ex.Status.AvailableAt = ptr.To(metav1.NewTime(s.now))
	ex.Status.TemplateStatuses = []v1alpha1.TemplateStatus{
		{Name: "baseline", Status: v1alpha1.TemplateStatusRunning, ServiceName: "exp-baseline", PodTemplateHash: "b1"},
		{Name: "canary", Status: v1alpha1.TemplateStatusRunning, ServiceName: "exp-canary", PodTemplateHash: "c1"},
	}
	p := s.tick()
	want := []traffic.Destination{{Service: "exp-baseline", Weight: 5}, {Service: "exp-canary", Weight: 5}}
	if diff := cmp.Diff(want, p.TrafficExtra); diff != "" || ptr.Deref(p.TrafficWeight, -1) != 20 {
		t.Fatalf("during the experiment: weight %v, extra (-want +got):\n%s", ptr.Deref(p.TrafficWeight, -1), diff)
	}
	if w := s.ro.Status.Canary.Weights; w.Stable.Weight != 70 || len(w.Additional) != 2 || w.Additional[1].PodTemplateHash != "c1" {
		t.Fatalf("status weights %+v", w)
	}
	s.finishExperiment(v1alpha1.AnalysisPhaseSuccessful)
	p = s.tick()
	want = []traffic.Destination{{Service: "exp-baseline"}, {Service: "exp-canary"}}
	if diff := cmp.Diff(want, p.TrafficExtra); diff != "" {
		t.Fatalf("after the experiment, extra (-want +got):\n%s", diff)
	}
	if w := s.ro.Status.Canary.Weights; w.Stable.Weight != 80 || len(w.Additional) != 0 {
		t.Fatalf("status weights after the experiment %+v", w)
	}
}
