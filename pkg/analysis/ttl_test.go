package analysis

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestTTLDeadline(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	all := &v1alpha1.TTLStrategy{SecondsAfterCompletion: ptr.To[int32](60), SecondsAfterSuccess: ptr.To[int32](10), SecondsAfterFailure: ptr.To[int32](600)}
	completionOnly := &v1alpha1.TTLStrategy{SecondsAfterCompletion: ptr.To[int32](60)}
	successOnly := &v1alpha1.TTLStrategy{SecondsAfterSuccess: ptr.To[int32](0)}
	rows := []struct {
		name      string
		ttl       *v1alpha1.TTLStrategy
		phase     v1alpha1.AnalysisPhase
		completed bool
		want      time.Duration // -1: kept
	}{
		{"no ttlStrategy", nil, v1alpha1.AnalysisPhaseSuccessful, true, -1},
		{"success", all, v1alpha1.AnalysisPhaseSuccessful, true, 10 * time.Second},
		{"failure", all, v1alpha1.AnalysisPhaseFailed, true, 600 * time.Second},
		{"error counts as failure", all, v1alpha1.AnalysisPhaseError, true, 600 * time.Second},
		{"inconclusive counts as failure", all, v1alpha1.AnalysisPhaseInconclusive, true, 600 * time.Second},
		{"success falls back to completion", completionOnly, v1alpha1.AnalysisPhaseSuccessful, true, 60 * time.Second},
		{"failure falls back to completion", completionOnly, v1alpha1.AnalysisPhaseFailed, true, 60 * time.Second},
		{"zero seconds", successOnly, v1alpha1.AnalysisPhaseSuccessful, true, 0},
		{"success ttl only: a failure is kept", successOnly, v1alpha1.AnalysisPhaseFailed, true, -1},
		{"still running", all, v1alpha1.AnalysisPhaseRunning, false, -1},
		{"completed without completedAt", all, v1alpha1.AnalysisPhaseSuccessful, false, -1},
	}
	for _, r := range rows {
		run := &v1alpha1.AnalysisRun{Spec: v1alpha1.AnalysisRunSpec{TTLStrategy: r.ttl}, Status: v1alpha1.AnalysisRunStatus{Phase: r.phase}}
		if r.completed {
			run.Status.CompletedAt = &metav1.Time{Time: done}
		}
		got, ok := ttlDeadline(run)
		switch {
		case r.want < 0 && ok:
			t.Errorf("%s: deleted at %s, want kept", r.name, got)
		case r.want >= 0 && (!ok || !got.Equal(done.Add(r.want))):
			t.Errorf("%s: deadline %s (%v), want %s after completion", r.name, got, ok, r.want)
		}
	}
}
