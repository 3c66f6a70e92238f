package rollout

import (
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// withTemplate lets the Rollout reference the AnalysisTemplate name.
func (s *sim) withTemplate(name string) *sim {
	if s.templates == nil {
		s.templates = map[string]*v1alpha1.AnalysisTemplateSpec{}
	}
	s.templates[name] = &v1alpha1.AnalysisTemplateSpec{Metrics: []v1alpha1.Metric{{
		Name: "errors", Interval: "10s", SuccessCondition: "result < 0.01",
		Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://metrics/" + name}},
	}}}
	return s
}

func analysisOf(template string) *v1alpha1.RolloutAnalysis {
	return &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: template}}}
}

// applyRuns plays the AnalysisRun side of a plan: created runs start
// Running, terminated ones end Successful (as the analysis reconciler ends
// them), and runs beyond the history limits go.
func (s *sim) applyRuns(p Plan) {
	if s.runs == nil {
		s.runs = map[string]*v1alpha1.AnalysisRun{}
	}
	for _, run := range p.CreateRuns {
		if _, exists := s.runs[run.Name]; exists {
			s.t.Fatalf("plan creates AnalysisRun %s, which exists", run.Name)
		}
		run = run.DeepCopy()
		run.CreationTimestamp = metav1.NewTime(s.now)
		run.Status.Phase = v1alpha1.AnalysisPhaseRunning
		s.runs[run.Name] = run
		s.say("analysis: %s run %s created", run.Labels[v1alpha1.AnalysisKindLabel], run.Name)
	}
	for _, name := range p.TerminateRuns {
		run := s.runs[name]
		run.Spec.Terminate = true
		run.Status.Phase = v1alpha1.AnalysisPhaseSuccessful
		s.say("analysis: %s run %s terminated", run.Labels[v1alpha1.AnalysisKindLabel], name)
	}
	for _, name := range p.DeleteRuns {
		delete(s.runs, name)
		s.say("analysis: run %s deleted (history limit)", name)
	}
	if s.experiments == nil {
		s.experiments = map[string]*v1alpha1.Experiment{}
	}
	for _, ex := range p.CreateExperiments {
		if _, exists := s.experiments[ex.Name]; exists {
			s.t.Fatalf("plan creates Experiment %s, which exists", ex.Name)
		}
		ex = ex.DeepCopy()
		ex.Status.Phase = v1alpha1.AnalysisPhaseRunning
		s.experiments[ex.Name] = ex
		s.say("experiment: %s created", ex.Name)
	}
	for _, name := range p.TerminateExperiments {
		ex := s.experiments[name]
		ex.Spec.Terminate, ex.Status.Phase = true, v1alpha1.AnalysisPhaseSuccessful
		s.say("experiment: %s terminated", name)
	}
}

// finishRun gives the newest run of an analysis kind a phase, as its
// measurements would.
func (s *sim) finishRun(kind string, phase v1alpha1.AnalysisPhase) *v1alpha1.AnalysisRun {
	s.t.Helper()
	run := s.newestRun(kind)
	if run == nil {
		s.t.Fatalf("no %s run; story:\n%s", kind, s.story.String())
	}
	run.Status.Phase, run.Status.Message = phase, `Metric "errors" `+string(phase)
	s.say("world: %s run %s is %s", kind, run.Name, phase)
	return run
}

func (s *sim) newestRun(kind string) *v1alpha1.AnalysisRun {
	var newest *v1alpha1.AnalysisRun
	for _, run := range s.runs {
		if run.Labels[v1alpha1.AnalysisKindLabel] == kind && (newest == nil || !run.CreationTimestamp.Before(&newest.CreationTimestamp)) {
			newest = run
		}
	}
	return newest
}

// running lists the unfinished runs.
func (s *sim) running() []string {
	var names []string
	for name, run := range s.runs {
		if !run.Status.Phase.Completed() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func TestSequenceBlueGreenPrePromotionAnalysis(t *testing.T) {
	s := newSim(t, blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PrePromotionAnalysis: analysisOf("smoke")})).withTemplate("smoke")
	s.until("Healthy", 10, healthyPhase)
	if len(s.runs) != 0 {
		t.Fatalf("runs on the first deploy: %v", s.running())
	}
	s.setImage("web:2")
	s.until("pre-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.BlueGreen.PrePromotionAnalysisRun != nil })
	s.wait(3)
	s.request(v1alpha1.PromoteAnnotation, "early")
	s.wait(2)
	if got := s.activeAndPreview(); got != [2]string{"web:1", "web:2"} {
		t.Fatalf("switched %v before the pre-promotion analysis passed", got)
	}
	s.finishRun(runOfPrePromotion, v1alpha1.AnalysisPhaseSuccessful)
	s.until("Healthy on web:2", 10, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("after a passing analysis active/preview select %v", got)
	}

	// A failing pre-promotion analysis aborts; the active Service stays.
	s.setImage("web:3")
	s.until("pre-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool {
		return st.BlueGreen.PrePromotionAnalysisRun != nil && strings.Contains(st.BlueGreen.PrePromotionAnalysisRun.Name, st.CurrentPodHash)
	})
	s.finishRun(runOfPrePromotion, v1alpha1.AnalysisPhaseFailed)
	s.tick()
	if !s.ro.Status.Abort || s.ro.Status.Phase != v1alpha1.RolloutPhaseDegraded || !strings.Contains(s.ro.Status.Message, "Failed") {
		t.Fatalf("after a failing analysis: abort=%v %s %q", s.ro.Status.Abort, s.ro.Status.Phase, s.ro.Status.Message)
	}
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("after a failing analysis active/preview select %v", got)
	}
	s.golden()
}

func TestSequenceBlueGreenPrePromotionInconclusive(t *testing.T) {
	s := newSim(t, blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PrePromotionAnalysis: analysisOf("smoke")})).withTemplate("smoke")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("pre-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.BlueGreen.PrePromotionAnalysisRun != nil })
	s.finishRun(runOfPrePromotion, v1alpha1.AnalysisPhaseInconclusive)
	s.until("paused", 3, pausedPhase)
	s.wait(3)
	if got := s.activeAndPreview(); got[0] != "web:1" {
		t.Fatalf("switched on an inconclusive analysis: %v", got)
	}
	s.request(v1alpha1.PromoteAnnotation, "accept")
	s.until("Healthy on web:2", 10, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
}

func TestSequenceBlueGreenPostPromotionAnalysis(t *testing.T) {
	s := newSim(t, blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PostPromotionAnalysis: analysisOf("smoke")})).withTemplate("smoke")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("post-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.BlueGreen.PostPromotionAnalysisRun != nil })
	// Switched, but web:1 stays stable and at full size until it passes.
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("post-promotion analysis runs while active/preview select %v", got)
	}
	s.wait(3)
	s.expectSizes(map[string]int32{"web:1": 2, "web:2": 2})
	if s.ro.Status.Phase == v1alpha1.RolloutPhaseHealthy {
		t.Fatal("Healthy before the post-promotion analysis passed")
	}
	s.finishRun(runOfPostPromotion, v1alpha1.AnalysisPhaseSuccessful)
	s.until("Healthy on web:2", 10, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })

	// A failing post-promotion analysis switches straight back.
	s.setImage("web:3")
	s.until("post-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool {
		return st.BlueGreen.PostPromotionAnalysisRun != nil && strings.Contains(st.BlueGreen.PostPromotionAnalysisRun.Name, st.CurrentPodHash)
	})
	s.finishRun(runOfPostPromotion, v1alpha1.AnalysisPhaseFailed)
	s.tick()
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("after a failing post-promotion analysis active/preview select %v", got)
	}
	if !s.ro.Status.Abort {
		t.Fatal("not aborted after a failing post-promotion analysis")
	}
	s.until("aborted revision scaled down", 40, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:3"] == 0 })
	s.golden()
}

func backgroundRollout(startingStep int32, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	ro := canaryRollout(4, "25%", "0", steps...)
	ro.Spec.Strategy.Canary.Analysis = &v1alpha1.BackgroundAnalysis{RolloutAnalysis: *analysisOf("errors"), StartingStep: ptr.To(startingStep)}
	return ro
}

func TestSequenceBackgroundAnalysis(t *testing.T) {
	s := newSim(t, backgroundRollout(1, setWeight(25), pause(""), setWeight(50), pause("5s"))).withTemplate("errors")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused at step 1", 20, pausedAt(1))
	s.tick()
	bg := s.ro.Status.Canary.CurrentBackgroundAnalysisRun
	if bg == nil {
		t.Fatal("no background run from step 1")
	}
	if created := s.newestRun(runOfBackground).CreationTimestamp.Sub(s.start); created < 4e9 {
		t.Errorf("background run created at %s, before startingStep", created)
	}
	s.request(v1alpha1.PromoteAnnotation, "go")
	s.until("Healthy on web:2", 30, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
	if r := s.running(); len(r) != 0 {
		t.Fatalf("runs still running after the promotion: %v", r)
	}
	if !s.newestRun(runOfBackground).Spec.Terminate {
		t.Error("the background run was not terminated on promotion")
	}

	// A failing background run aborts during a pause.
	s.setImage("web:3")
	s.until("paused at step 1", 20, pausedAt(1))
	s.tick()
	s.finishRun(runOfBackground, v1alpha1.AnalysisPhaseFailed)
	s.tick()
	if !s.ro.Status.Abort || !strings.Contains(s.ro.Status.Message, "AnalysisRun") {
		t.Fatalf("after a failing background run: abort=%v %q", s.ro.Status.Abort, s.ro.Status.Message)
	}
	s.until("stable settled", 20, func(v1alpha1.RolloutStatus) bool { return s.stableSettled() })
	s.golden()
}

func TestSequenceBackgroundInconclusiveHoldsUntilPromoted(t *testing.T) {
	s := newSim(t, backgroundRollout(0, setWeight(25), pause("3s"), setWeight(50), pause("3s"))).withTemplate("errors")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("background run started", 5, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentBackgroundAnalysisRun != nil })
	first := s.finishRun(runOfBackground, v1alpha1.AnalysisPhaseInconclusive)
	s.until("paused", 3, pausedPhase)
	held := ptr.Deref(s.ro.Status.CurrentStepIndex, 0)
	s.wait(8)
	if got := ptr.Deref(s.ro.Status.CurrentStepIndex, 0); got != held || s.ro.Status.Phase != v1alpha1.RolloutPhasePaused {
		t.Fatalf("an inconclusive background run let the steps go on: step %d → %d, %s", held, got, s.ro.Status.Phase)
	}
	s.request(v1alpha1.PromoteAnnotation, "accept")
	s.tick()
	if bg := s.ro.Status.Canary.CurrentBackgroundAnalysisRun; bg == nil || bg.Name == first.Name {
		t.Fatalf("promote did not start a new background run: %+v", bg)
	}
	s.until("Healthy on web:2", 30, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) && st.StableRS == st.CurrentPodHash })
}

func TestSequenceStepRunTerminatedWhenPromotedPast(t *testing.T) {
	ro := canaryRollout(4, "25%", "0", setWeight(25), v1alpha1.CanaryStep{Analysis: analysisOf("errors")}, pause(""))
	s := newSim(t, ro).withTemplate("errors")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("step run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentStepAnalysisRun != nil })
	s.request(v1alpha1.PromoteAnnotation, "skip")
	s.until("paused at step 2", 5, pausedAt(2))
	if r := s.running(); len(r) != 0 {
		t.Fatalf("the skipped step's run still runs: %v", r)
	}
}

func TestSequenceAnalysisRunHistory(t *testing.T) {
	ro := canaryRollout(2, "1", "0", v1alpha1.CanaryStep{Analysis: analysisOf("errors")})
	ro.Spec.Analysis = &v1alpha1.AnalysisRunHistory{SuccessfulRunHistoryLimit: ptr.To[int32](2), UnsuccessfulRunHistoryLimit: ptr.To[int32](1)}
	s := newSim(t, ro).withTemplate("errors")
	s.until("Healthy", 10, healthyPhase)
	for i, phase := range []v1alpha1.AnalysisPhase{"Successful", "Failed", "Successful", "Failed", "Successful"} {
		s.setImage("web:" + string(rune('2'+i)))
		s.until("step run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentStepAnalysisRun != nil })
		s.finishRun(runOfStep, phase)
		s.until("settled", 30, func(st v1alpha1.RolloutStatus) bool { return healthyPhase(st) || st.Abort && s.stableSettled() })
	}
	s.tick()
	var kept []string
	for _, run := range s.runs {
		kept = append(kept, string(run.Status.Phase)+" "+run.Spec.Metrics[0].Name)
	}
	sort.Strings(kept)
	if want := []string{"Failed errors", "Successful errors", "Successful errors"}; strings.Join(kept, ",") != strings.Join(want, ",") {
		t.Fatalf("runs kept %v, want %v; story:\n%s", kept, want, s.story.String())
	}
}
