package analysis

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// outcome letters: s = 0.99 (passes), f = 0.5 (fails), i = 0.8
// (inconclusive), e = provider error, n = no data.
func measure(letter byte, at time.Time) Measured {
	m := Measured{Started: at, Finished: at.Add(time.Second)}
	switch letter {
	case 's':
		m.Result, m.Value = 0.99, "0.99"
	case 'f':
		m.Result, m.Value = 0.5, "0.5"
	case 'i':
		m.Result, m.Value = 0.8, "0.8"
	case 'e':
		m.Err = errors.New("connection refused")
	case 'n':
		m.NoData = true
	}
	return m
}

func TestLimitsAndPolicies(t *testing.T) {
	cond, err := CompileConditions("result > 0.9", "result < 0.7")
	if err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		name    string
		metric  v1alpha1.Metric
		letters string
		want    v1alpha1.AnalysisPhase
		counts  [5]int32 // count, successful, failed, inconclusive, error
	}{
		{"first failure fails", v1alpha1.Metric{Interval: "1m"}, "sf", v1alpha1.AnalysisPhaseFailed, [5]int32{2, 1, 1, 0, 0}},
		{"failureLimit tolerates", v1alpha1.Metric{Interval: "1m", FailureLimit: ptr.To[int32](2)}, "ffs", v1alpha1.AnalysisPhaseRunning, [5]int32{3, 1, 2, 0, 0}},
		{"failureLimit exceeded", v1alpha1.Metric{Interval: "1m", FailureLimit: ptr.To[int32](2)}, "fff", v1alpha1.AnalysisPhaseFailed, [5]int32{3, 0, 3, 0, 0}},
		{"inconclusive", v1alpha1.Metric{Interval: "1m"}, "si", v1alpha1.AnalysisPhaseInconclusive, [5]int32{2, 1, 0, 1, 0}},
		{"errors below the limit", v1alpha1.Metric{Interval: "1m"}, "eeee", v1alpha1.AnalysisPhaseRunning, [5]int32{0, 0, 0, 0, 4}},
		{"errors over the limit", v1alpha1.Metric{Interval: "1m"}, "eeeee", v1alpha1.AnalysisPhaseError, [5]int32{0, 0, 0, 0, 5}},
		{"a success resets the error streak", v1alpha1.Metric{Interval: "1m", ConsecutiveErrorLimit: ptr.To[int32](1)}, "esee", v1alpha1.AnalysisPhaseError, [5]int32{1, 1, 0, 0, 3}},
		{"count reached", v1alpha1.Metric{Interval: "1m", Count: ptr.To[int32](3)}, "ses", v1alpha1.AnalysisPhaseRunning, [5]int32{2, 2, 0, 0, 1}},
		{"count reached, errors don't count", v1alpha1.Metric{Interval: "1m", Count: ptr.To[int32](3)}, "sess", v1alpha1.AnalysisPhaseSuccessful, [5]int32{3, 3, 0, 0, 1}},
		{"consecutiveSuccessLimit", v1alpha1.Metric{Interval: "1m", ConsecutiveSuccessLimit: ptr.To[int32](2), InconclusiveLimit: ptr.To[int32](5)}, "sis", v1alpha1.AnalysisPhaseRunning, [5]int32{3, 2, 0, 1, 0}},
		{"consecutiveSuccessLimit reached", v1alpha1.Metric{Interval: "1m", ConsecutiveSuccessLimit: ptr.To[int32](2), InconclusiveLimit: ptr.To[int32](5)}, "siss", v1alpha1.AnalysisPhaseSuccessful, [5]int32{4, 3, 0, 1, 0}},
		{"single measurement", v1alpha1.Metric{}, "s", v1alpha1.AnalysisPhaseSuccessful, [5]int32{1, 1, 0, 0, 0}},
		{"no data is an Error by default", v1alpha1.Metric{Interval: "1m"}, "n", v1alpha1.AnalysisPhaseRunning, [5]int32{0, 0, 0, 0, 1}},
		{"no data: Inconclusive", v1alpha1.Metric{Interval: "1m", NoDataPolicy: v1alpha1.NoDataInconclusive}, "n", v1alpha1.AnalysisPhaseInconclusive, [5]int32{1, 0, 0, 1, 0}},
		{"no data: Fail", v1alpha1.Metric{Interval: "1m", NoDataPolicy: v1alpha1.NoDataFail}, "n", v1alpha1.AnalysisPhaseFailed, [5]int32{1, 0, 1, 0, 0}},
		{"no data: Skip", v1alpha1.Metric{Interval: "1m", NoDataPolicy: v1alpha1.NoDataSkip}, "nns", v1alpha1.AnalysisPhaseRunning, [5]int32{1, 1, 0, 0, 0}},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range rows {
		mr := &v1alpha1.MetricResult{Name: "m"}
		for i := range len(r.letters) {
			Record(&r.metric, mr, cond, measure(r.letters[i], start.Add(time.Duration(i)*time.Minute)), 0)
		}
		got := [5]int32{mr.Count, mr.Successful, mr.Failed, mr.Inconclusive, mr.Error}
		phase := mr.Phase
		if phase == "" {
			phase = v1alpha1.AnalysisPhaseRunning
		}
		if phase != r.want || got != r.counts {
			t.Errorf("%s: phase %s counts %v (message %q); want %s %v", r.name, phase, got, mr.Message, r.want, r.counts)
		}
	}
}

func TestRetention(t *testing.T) {
	cond, _ := CompileConditions("result > 0.9", "")
	m := &v1alpha1.Metric{Interval: "1s"}
	mr := &v1alpha1.MetricResult{}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 15 {
		meas := measure('s', start.Add(time.Duration(i)*time.Second))
		meas.Value = fmt.Sprint(i)
		Record(m, mr, cond, meas, 0)
	}
	if len(mr.Measurements) != defaultRetention || mr.Measurements[0].Value != "5" || mr.Count != 15 {
		t.Errorf("kept %d measurements starting at %q (count %d); want the last 10 of 15", len(mr.Measurements), mr.Measurements[0].Value, mr.Count)
	}
	Record(m, mr, cond, measure('s', start.Add(time.Minute)), 3)
	if len(mr.Measurements) != 3 {
		t.Errorf("a limit of 3 kept %d", len(mr.Measurements))
	}
}

func TestNextMeasurement(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cond, _ := CompileConditions("result > 0.9", "")
	m := &v1alpha1.Metric{InitialDelay: "30s", Interval: "1m"}
	mr := &v1alpha1.MetricResult{}
	if got, _ := NextMeasurement(m, mr, start); !got.Equal(start.Add(30 * time.Second)) {
		t.Errorf("first measurement at %s, want after initialDelay", got)
	}
	Record(m, mr, cond, measure('s', start.Add(30*time.Second)), 0)
	if got, _ := NextMeasurement(m, mr, start); !got.Equal(start.Add(91 * time.Second)) {
		t.Errorf("next at %s, want interval after the last one finished", got)
	}
	once := &v1alpha1.Metric{Count: ptr.To[int32](3), ConsecutiveErrorLimit: ptr.To[int32](9)}
	mr = &v1alpha1.MetricResult{}
	Record(once, mr, cond, measure('e', start), 0)
	if got, _ := NextMeasurement(once, mr, start); !got.Equal(start.Add(time.Second + errorRetry)) {
		t.Errorf("an error without interval retried at %s, want %s later", got, errorRetry)
	}

	// No data skipped: not counted, but the next measurement still waits,
	// an interval, or without one as long as after an error.
	for _, tc := range []struct {
		interval v1alpha1.Duration
		wait     time.Duration
	}{{"1m", time.Minute}, {"", errorRetry}} {
		skip := &v1alpha1.Metric{Interval: tc.interval, NoDataPolicy: v1alpha1.NoDataSkip}
		mr = &v1alpha1.MetricResult{}
		Record(skip, mr, cond, measure('n', start), 0)
		if mr.Count != 0 || len(mr.Measurements) != 0 {
			t.Errorf("a skipped measurement was counted: %+v", mr)
		}
		if got, _ := NextMeasurement(skip, mr, start); !got.Equal(start.Add(time.Second + tc.wait)) {
			t.Errorf("interval %q: after a skip the next is due at %s, want %s after it", tc.interval, got, tc.wait)
		}
		Record(skip, mr, cond, measure('s', start.Add(time.Hour)), 0)
		if got, _ := NextMeasurement(skip, mr, start); tc.interval != "" && !got.Equal(start.Add(time.Hour+time.Second+tc.wait)) {
			t.Errorf("interval %q: after a measurement that follows a skip the next is due at %s", tc.interval, got)
		}
	}
}

// TestInFlight follows a measurement that outlives a reconcile (a Job): it
// is kept as the last measurement without counting, nothing else is taken
// meanwhile, and its outcome replaces it.
func TestInFlight(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cond, _ := CompileConditions("", "")
	m := &v1alpha1.Metric{Interval: "1m", Count: ptr.To[int32](2)}
	mr := &v1alpha1.MetricResult{Name: "m", Phase: v1alpha1.AnalysisPhasePending}
	running := Measured{Phase: v1alpha1.AnalysisPhaseRunning, Message: "Job j-1 is running", Metadata: map[string]string{jobNameKey: "j-1"}, Started: start}

	Record(m, mr, cond, running, 0)
	Record(m, mr, cond, running, 0) // looked at again, still running
	if len(mr.Measurements) != 1 || mr.Count != 0 || mr.Phase != v1alpha1.AnalysisPhaseRunning || inFlight(mr) == nil {
		t.Fatalf("in flight: %d measurements, count %d, phase %s", len(mr.Measurements), mr.Count, mr.Phase)
	}
	if in := inFlight(mr); in.FinishedAt != nil || in.Metadata[jobNameKey] != "j-1" {
		t.Errorf("the measurement in flight is %+v", in)
	}
	if due, err := NextMeasurement(m, mr, start); err != nil || !due.IsZero() {
		t.Errorf("a measurement in flight schedules the next at %s (%v); want none", due, err)
	}

	done := Measured{Phase: v1alpha1.AnalysisPhaseSuccessful, Message: "Job j-1 completed", Metadata: running.Metadata, Started: start, Finished: start.Add(time.Minute)}
	Record(m, mr, cond, done, 0)
	if len(mr.Measurements) != 1 || mr.Count != 1 || mr.Successful != 1 || mr.Measurements[0].Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Measurements[0].Metadata[jobNameKey] != "j-1" {
		t.Fatalf("after the outcome: %+v", mr)
	}
	if due, _ := NextMeasurement(m, mr, start); !due.Equal(start.Add(2 * time.Minute)) {
		t.Errorf("next measurement at %s, want interval after the Job finished", due)
	}

	// The provider's own verdict is not judged by the conditions: a
	// failure condition that would hold for any result does not apply.
	strict, _ := CompileConditions("", "true")
	Record(m, mr, strict, Measured{Phase: v1alpha1.AnalysisPhaseSuccessful, Started: start, Finished: start}, 0)
	if mr.Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Failed != 0 {
		t.Errorf("a provider's Successful was judged again: %s, %d failed", mr.Phase, mr.Failed)
	}

	mr = &v1alpha1.MetricResult{Name: "m"}
	Record(m, mr, cond, running, 0)
	Record(m, mr, cond, Measured{Phase: v1alpha1.AnalysisPhaseFailed, Message: "Job j-1 failed: BackoffLimitExceeded", Started: start, Finished: start}, 0)
	if mr.Phase != v1alpha1.AnalysisPhaseFailed || mr.Message != "Job j-1 failed: BackoffLimitExceeded" || len(mr.Measurements) != 1 {
		t.Errorf("a failed Job: phase %s message %q, %d measurements", mr.Phase, mr.Message, len(mr.Measurements))
	}

	mr = &v1alpha1.MetricResult{Name: "m"}
	Record(m, mr, cond, Measured{Phase: v1alpha1.AnalysisPhaseInconclusive, Started: start, Finished: start}, 0)
	if mr.Inconclusive != 1 || mr.Phase != v1alpha1.AnalysisPhaseInconclusive {
		t.Errorf("a provider's Inconclusive: %+v", mr)
	}
	mr = &v1alpha1.MetricResult{Name: "m"}
	Record(m, mr, cond, Measured{Phase: v1alpha1.AnalysisPhasePending, Started: start, Finished: start}, 0)
	if mr.Error != 1 || !strings.Contains(mr.Measurements[0].Message, "cannot end a measurement Pending") {
		t.Errorf("a provider phase that is no outcome: %+v", mr)
	}
}
