package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestNoData: every form of a result without data goes through
// noDataPolicy, whatever the conditions are. The conditions are chosen to
// judge any result they saw Successful, which no policy gives, so a form
// that slips through to them shows.
func TestNoData(t *testing.T) {
	nan := math.NaN()
	forms := []struct {
		name string
		meas Measured
		what string
	}{
		{"empty vector, no series, nothing selected", Measured{NoData: true}, "empty"},
		{"JSON null", Measured{Result: nil, Value: "null"}, "null"},
		{"NaN", Measured{Result: nan}, "NaN"},
		{"empty list of numbers", Measured{Result: []float64{}, Value: "[]"}, "an empty list"},
		{"vector of NaN only", Measured{Result: []float64{nan, nan}}, "a list of NaN or null only"},
		{"empty JSON list", Measured{Result: []any{}, Value: "[]"}, "an empty list"},
		{"JSON list of null", Measured{Result: []any{nil, nil}, Value: "[null,null]"}, "a list of NaN or null only"},
	}
	conditions := []struct{ name, success, failure string }{
		{"only successCondition", "true", ""},
		{"only failureCondition", "", "false"},
		{"both", "true", "false"},
		{"only failureCondition on a number", "", "result < 0.01"},
		{"neither", "", ""},
	}
	policies := []struct {
		policy v1alpha1.NoDataPolicy
		want   v1alpha1.AnalysisPhase // "" means not recorded
		shown  v1alpha1.NoDataPolicy
	}{
		{"", v1alpha1.AnalysisPhaseError, v1alpha1.NoDataError},
		{v1alpha1.NoDataError, v1alpha1.AnalysisPhaseError, v1alpha1.NoDataError},
		{v1alpha1.NoDataInconclusive, v1alpha1.AnalysisPhaseInconclusive, v1alpha1.NoDataInconclusive},
		{v1alpha1.NoDataFail, v1alpha1.AnalysisPhaseFailed, v1alpha1.NoDataFail},
		{v1alpha1.NoDataSkip, "", v1alpha1.NoDataSkip},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range forms {
		for _, c := range conditions {
			cond, err := CompileConditions(c.success, c.failure)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range policies {
				name := fmt.Sprintf("%s, %s, noDataPolicy %q", f.name, c.name, p.policy)
				m := &v1alpha1.Metric{Interval: "1m", NoDataPolicy: p.policy}
				mr := &v1alpha1.MetricResult{Name: "m"}
				meas := f.meas
				meas.Started, meas.Finished = start, start.Add(time.Second)
				Record(m, mr, cond, meas, 0)
				if p.want == "" {
					if len(mr.Measurements) != 0 || mr.Count+mr.Error != 0 || !strings.Contains(mr.Message, "noDataPolicy: Skip") {
						t.Errorf("%s: recorded %+v; want nothing", name, mr)
					}
					continue
				}
				want := fmt.Sprintf("No data: the result is %s (noDataPolicy: %s)", f.what, p.shown)
				if len(mr.Measurements) != 1 || mr.Measurements[0].Phase != p.want || mr.Measurements[0].Message != want {
					t.Errorf("%s: measurements %+v; want one %s with message %q", name, mr.Measurements, p.want, want)
				}
			}
		}
	}
}

// TestDataAmongNaN: a list with numbers among NaN values is data, for the
// conditions to judge.
func TestDataAmongNaN(t *testing.T) {
	cond, err := CompileConditions("result.exists(x, !isNaN(x) && x > 0.9)", "")
	if err != nil {
		t.Fatal(err)
	}
	mr := &v1alpha1.MetricResult{Name: "m"}
	Record(&v1alpha1.Metric{}, mr, cond, Measured{Result: []float64{math.NaN(), 0.95}}, 0)
	if mr.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("[NaN, 0.95]: %+v; want Successful", mr)
	}
}

// TestMeasurementSize: a value or message over 1 KiB is never stored; the
// measurement is an Error saying how long it was.
func TestMeasurementSize(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	long := func(n int) string { return strings.Repeat("x", n) }
	rows := []struct {
		name    string
		meas    Measured
		want    v1alpha1.AnalysisPhase
		value   string
		message string
	}{
		{"value of 1 KiB", Measured{Result: 1.0, Value: long(1024)}, v1alpha1.AnalysisPhaseSuccessful, long(1024), ""},
		{"value of 5000 bytes", Measured{Result: 1.0, Value: long(5000)}, v1alpha1.AnalysisPhaseError, "", "measurement value is 5000 bytes, more than the 1 KiB allowed"},
		{"value of 1025 bytes without data", Measured{NoData: true, Value: long(1025)}, v1alpha1.AnalysisPhaseError, "", "measurement value is 1025 bytes, more than the 1 KiB allowed"},
		{"error with a long value", Measured{Err: errors.New("bad answer"), Value: long(2000)}, v1alpha1.AnalysisPhaseError, "", "bad answer"},
		{"message of 1 KiB", Measured{Result: 1.0, Value: "1", Message: long(1024)}, v1alpha1.AnalysisPhaseSuccessful, "1", long(1024)},
		{"message of 2000 bytes", Measured{Result: 1.0, Value: "1", Message: long(2000)}, v1alpha1.AnalysisPhaseError, "1", "measurement message is 2000 bytes, more than the 1 KiB allowed"},
		{"long provider verdict", Measured{Phase: v1alpha1.AnalysisPhaseFailed, Message: "Job j-1 failed: " + long(3000)}, v1alpha1.AnalysisPhaseError, "", "measurement message is 3016 bytes, more than the 1 KiB allowed"},
		{"long error", Measured{Err: errors.New(long(1500))}, v1alpha1.AnalysisPhaseError, "", "measurement message is 1500 bytes, more than the 1 KiB allowed"},
		{"long message in flight", Measured{Phase: v1alpha1.AnalysisPhaseRunning, Message: long(1100)}, v1alpha1.AnalysisPhaseRunning, "", "measurement message is 1100 bytes, more than the 1 KiB allowed"},
	}
	cond, err := CompileConditions("result > 0.5", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		mr := &v1alpha1.MetricResult{Name: "m"}
		meas := r.meas
		meas.Started, meas.Finished = start, start
		Record(&v1alpha1.Metric{Interval: "1m"}, mr, cond, meas, 0)
		if len(mr.Measurements) != 1 {
			t.Errorf("%s: %d measurements", r.name, len(mr.Measurements))
			continue
		}
		got := mr.Measurements[0]
		if got.Phase != r.want || got.Value != r.value || got.Message != r.message {
			t.Errorf("%s: %s, value of %d bytes, message %.80q; want %s, value of %d bytes, message %.80q",
				r.name, got.Phase, len(got.Value), got.Message, r.want, len(r.value), r.message)
		}
		if len(mr.Message) > v1alpha1.MaxMeasurementBytes {
			t.Errorf("%s: the metric's message has %d bytes", r.name, len(mr.Message))
		}
	}
}
