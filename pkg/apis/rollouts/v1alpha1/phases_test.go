package v1alpha1

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestWorstFollowsTheDocumentedOrder(t *testing.T) {
	order := []AnalysisPhase{
		AnalysisPhaseSuccessful, AnalysisPhaseRunning, AnalysisPhasePending,
		AnalysisPhaseInconclusive, AnalysisPhaseError, AnalysisPhaseFailed,
	}
	for i, better := range order {
		for _, worse := range order[i:] {
			for _, pair := range [][2]AnalysisPhase{{better, worse}, {worse, better}} {
				got, err := Worst(pair[0], pair[1])
				if err != nil {
					t.Fatal(err)
				}
				if got != worse {
					t.Errorf("Worst(%s, %s) = %s, want %s", pair[0], pair[1], got, worse)
				}
			}
		}
	}
}

func TestWorstRejectsUnknownPhases(t *testing.T) {
	if _, err := Worst(AnalysisPhaseSuccessful, "Skipped"); err == nil {
		t.Error("an unknown phase was ranked instead of rejected")
	}
	if _, err := Worst("Bogus", AnalysisPhaseFailed); err == nil {
		t.Error("an unknown phase was ranked instead of rejected")
	}
}

func TestCompleted(t *testing.T) {
	got := map[AnalysisPhase]bool{}
	for _, p := range []AnalysisPhase{"", AnalysisPhasePending, AnalysisPhaseRunning, AnalysisPhaseSuccessful, AnalysisPhaseFailed, AnalysisPhaseError, AnalysisPhaseInconclusive} {
		got[p] = p.Completed()
	}
	want := map[AnalysisPhase]bool{
		"": false, AnalysisPhasePending: false, AnalysisPhaseRunning: false,
		AnalysisPhaseSuccessful: true, AnalysisPhaseFailed: true, AnalysisPhaseError: true, AnalysisPhaseInconclusive: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Completed (-want +got):\n%s", diff)
	}
}

func TestStepKind(t *testing.T) {
	rows := []struct {
		step    CanaryStep
		want    StepKind
		wantErr bool
	}{
		{CanaryStep{SetWeight: ptr.To[int32](10)}, StepSetWeight, false},
		{CanaryStep{Pause: &RolloutPause{}}, StepPause, false},
		{CanaryStep{Analysis: &RolloutAnalysis{}}, StepAnalysis, false},
		{CanaryStep{Experiment: &RolloutExperimentStep{}}, StepExperiment, false},
		{CanaryStep{SetCanaryScale: &SetCanaryScale{}}, StepSetCanaryScale, false},
		{CanaryStep{SetHeaderRoute: &SetHeaderRoute{}}, StepSetHeaderRoute, false},
		{CanaryStep{SetMirrorRoute: &SetMirrorRoute{}}, StepSetMirrorRoute, false},
		{CanaryStep{}, "", true},
		{CanaryStep{SetWeight: ptr.To[int32](10), Pause: &RolloutPause{}}, "", true},
	}
	for _, r := range rows {
		got, err := r.step.Kind()
		if (err != nil) != r.wantErr || got != r.want {
			t.Errorf("Kind() of %+v = %q, %v; want %q, error %v", r.step, got, err, r.want, r.wantErr)
		}
	}
}

func TestProviderKind(t *testing.T) {
	rows := []struct {
		p       MetricProvider
		want    ProviderKind
		wantErr bool
	}{
		{MetricProvider{Prometheus: &PrometheusMetric{}}, ProviderPrometheus, false},
		{MetricProvider{Web: &WebMetric{}}, ProviderWeb, false},
		{MetricProvider{Job: &JobMetric{}}, ProviderJob, false},
		{MetricProvider{Judge: &JudgeMetric{}}, ProviderJudge, false},
		{MetricProvider{}, "", true},
		{MetricProvider{Web: &WebMetric{}, Job: &JobMetric{}}, "", true},
	}
	for _, r := range rows {
		got, err := r.p.Kind()
		if (err != nil) != r.wantErr || got != r.want {
			t.Errorf("Kind() = %q, %v; want %q, error %v", got, err, r.want, r.wantErr)
		}
	}
}

func TestParseSecondsOrDuration(t *testing.T) {
	rows := []struct {
		in      intstr.IntOrString
		want    time.Duration
		wantErr bool
	}{
		{intstr.FromInt32(30), 30 * time.Second, false},
		{intstr.FromString("45"), 45 * time.Second, false},
		{intstr.FromString("1m30s"), 90 * time.Second, false},
		{intstr.FromString("250ms"), 250 * time.Millisecond, false},
		{intstr.FromString("soon"), 0, true},
	}
	for _, r := range rows {
		got, err := ParseSecondsOrDuration(r.in)
		if (err != nil) != r.wantErr || got != r.want {
			t.Errorf("ParseSecondsOrDuration(%v) = %v, %v; want %v, error %v", r.in.String(), got, err, r.want, r.wantErr)
		}
	}
	if d, err := Duration("").Parse(); d != 0 || err != nil {
		t.Errorf("empty Duration = %v, %v; want 0, nil", d, err)
	}
}
