package analysis

import (
	"fmt"
	"math"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// defaultRetention is how many measurements of a metric are kept.
const defaultRetention = 10

// errorRetry is when an Error measurement is retried without an interval.
const errorRetry = 10 * time.Second

// Measured is the outcome of asking a provider once.
type Measured struct {
	// Result is the value the conditions see: a number, a list, or JSON.
	Result any
	// Value is the result as text, for the status.
	Value string
	// NoData: the provider answered with nothing (an empty vector).
	NoData bool
	// Err is a failure to measure (unreachable, bad answer).
	Err error
	// Phase is set by providers that judge for themselves (a Job): Running
	// while the measurement is in flight, then Successful, Failed or
	// Inconclusive; the metric's conditions are not evaluated. Empty: the
	// conditions judge Result.
	Phase v1alpha1.AnalysisPhase
	// Message is shown with the measurement (Prometheus warnings, a Job's
	// outcome).
	Message string
	// Metadata is kept with the measurement (the Job's name).
	Metadata map[string]string
	// Started and Finished bound the measurement; Finished is unset while it
	// is in flight.
	Started, Finished time.Time
}

// Record judges a measurement and adds it to the metric's result: counters,
// the measurement itself (the last limit ones are kept), and the metric's
// phase. A result without data (see noData) counts as noDataPolicy says: an
// Error (default), Inconclusive, Failed, or nothing at all (Skip); the
// conditions never see it. A value or message longer than 1 KiB is never
// stored: the measurement is an Error saying how long it was. A
// measurement in flight (Phase Running) is kept as the last one, without
// counting, until a later Record of its outcome replaces it.
func Record(m *v1alpha1.Metric, mr *v1alpha1.MetricResult, cond *Conditions, meas Measured, limit int) {
	if inFlight(mr) != nil {
		mr.Measurements = mr.Measurements[:len(mr.Measurements)-1]
	}
	if meas.Phase == v1alpha1.AnalysisPhaseRunning {
		// Still in flight (a Job runs on): its outcome decides, later.
		if long := tooLong("message", meas.Message); long != "" {
			meas.Message = long
		}
		started := metav1.NewMicroTime(meas.Started)
		keep(mr, v1alpha1.Measurement{Phase: meas.Phase, StartedAt: &started, Message: meas.Message, Metadata: meas.Metadata}, limit)
		mr.Phase, mr.Message = v1alpha1.AnalysisPhaseRunning, meas.Message
		return
	}
	phase, msg := judge(m, cond, meas)
	if msg == "" {
		msg = meas.Message
	}
	if long := tooLong("message", msg); long != "" {
		phase, msg = v1alpha1.AnalysisPhaseError, long
	}
	value := meas.Value
	if tooLong("value", value) != "" {
		value = ""
	}
	if phase == "" { // skipped
		mr.Message = "The last measurement returned no data (noDataPolicy: Skip)"
		skipped := metav1.NewMicroTime(meas.Finished)
		mr.SkippedAt = &skipped
		return
	}
	switch phase {
	case v1alpha1.AnalysisPhaseError:
		mr.Error++
		mr.ConsecutiveError++
		mr.ConsecutiveSuccess = 0
	default:
		mr.Count++
		mr.ConsecutiveError = 0
		switch phase {
		case v1alpha1.AnalysisPhaseSuccessful:
			mr.Successful++
			mr.ConsecutiveSuccess++
		case v1alpha1.AnalysisPhaseFailed:
			mr.Failed++
			mr.ConsecutiveSuccess = 0
		case v1alpha1.AnalysisPhaseInconclusive:
			mr.Inconclusive++
			mr.ConsecutiveSuccess = 0
		}
	}
	started, finished := metav1.NewMicroTime(meas.Started), metav1.NewMicroTime(meas.Finished)
	keep(mr, v1alpha1.Measurement{
		Phase: phase, Value: value, StartedAt: &started, FinishedAt: &finished, Message: msg, Metadata: meas.Metadata,
	}, limit)
	mr.Phase, mr.Message = metricPhase(m, mr)
	if msg != "" && mr.Phase != v1alpha1.AnalysisPhaseSuccessful {
		mr.Message = msg
	}
}

// keep appends a measurement and drops the oldest beyond limit.
func keep(mr *v1alpha1.MetricResult, meas v1alpha1.Measurement, limit int) {
	mr.Measurements = append(mr.Measurements, meas)
	if limit <= 0 {
		limit = defaultRetention
	}
	if n := len(mr.Measurements); n > limit {
		mr.Measurements = append([]v1alpha1.Measurement(nil), mr.Measurements[n-limit:]...)
	}
}

// inFlight returns the metric's measurement still in progress (a Job that
// has not finished), or nil.
func inFlight(mr *v1alpha1.MetricResult) *v1alpha1.Measurement {
	if n := len(mr.Measurements); n > 0 && mr.Measurements[n-1].Phase == v1alpha1.AnalysisPhaseRunning {
		return &mr.Measurements[n-1]
	}
	return nil
}

// tooLong says why s, a measurement's value or message, is too long to be
// stored, or "".
func tooLong(what, s string) string {
	if len(s) <= v1alpha1.MaxMeasurementBytes {
		return ""
	}
	return fmt.Sprintf("measurement %s is %d bytes, more than the 1 KiB allowed", what, len(s))
}

// noData describes a result that holds no data: the provider found none (an
// empty vector, no series, nothing selected), or it is JSON null, NaN, an
// empty list, or a list of only NaN and null. A list with some numbers
// among NaN values is data: conditions can test for NaN with isNaN.
func noData(meas Measured) (string, bool) {
	if meas.NoData {
		return "empty", true
	}
	nan := func(v any) bool {
		f, ok := v.(float64)
		return v == nil || ok && math.IsNaN(f)
	}
	switch r := meas.Result.(type) {
	case nil:
		return "null", true
	case float64:
		if math.IsNaN(r) {
			return "NaN", true
		}
	case []float64:
		if !slices.ContainsFunc(r, func(f float64) bool { return !math.IsNaN(f) }) {
			return listNoData(len(r)), true
		}
	case []any:
		if !slices.ContainsFunc(r, func(v any) bool { return !nan(v) }) {
			return listNoData(len(r)), true
		}
	}
	return "", false
}

func listNoData(n int) string {
	if n == 0 {
		return "an empty list"
	}
	return "a list of NaN or null only"
}

// judge turns a measurement into a phase and a message; "" means skipped.
func judge(m *v1alpha1.Metric, cond *Conditions, meas Measured) (v1alpha1.AnalysisPhase, string) {
	if meas.Err != nil {
		return v1alpha1.AnalysisPhaseError, meas.Err.Error()
	}
	if long := tooLong("value", meas.Value); long != "" {
		return v1alpha1.AnalysisPhaseError, long
	}
	switch meas.Phase {
	case "": // judged by the conditions below
	case v1alpha1.AnalysisPhaseSuccessful, v1alpha1.AnalysisPhaseFailed, v1alpha1.AnalysisPhaseInconclusive:
		return meas.Phase, meas.Message
	default:
		return v1alpha1.AnalysisPhaseError, fmt.Sprintf("a provider cannot end a measurement %s", meas.Phase)
	}
	if what, ok := noData(meas); ok {
		policy := m.NoDataPolicy
		if policy == "" {
			policy = v1alpha1.NoDataError
		}
		msg := fmt.Sprintf("No data: the result is %s (noDataPolicy: %s)", what, policy)
		switch policy {
		case v1alpha1.NoDataError:
			return v1alpha1.AnalysisPhaseError, msg
		case v1alpha1.NoDataInconclusive:
			return v1alpha1.AnalysisPhaseInconclusive, msg
		case v1alpha1.NoDataFail:
			return v1alpha1.AnalysisPhaseFailed, msg
		case v1alpha1.NoDataSkip:
			return "", ""
		}
		return v1alpha1.AnalysisPhaseError, fmt.Sprintf("No data, and unknown noDataPolicy %q", policy)
	}
	phase, err := cond.Evaluate(meas.Result)
	if err != nil {
		return v1alpha1.AnalysisPhaseError, err.Error()
	}
	return phase, ""
}

// metricPhase applies the limits: more failures than failureLimit fail the
// metric, more inconclusives than inconclusiveLimit make it Inconclusive,
// more errors in a row than consecutiveErrorLimit make it an Error; it
// succeeds after consecutiveSuccessLimit successes in a row, after count
// verdicts, or after its single measurement when it has neither count nor
// interval.
func metricPhase(m *v1alpha1.Metric, mr *v1alpha1.MetricResult) (v1alpha1.AnalysisPhase, string) {
	switch {
	case mr.Failed > ptr.Deref(m.FailureLimit, 0):
		return v1alpha1.AnalysisPhaseFailed, fmt.Sprintf("%d failed measurements, more than failureLimit %d", mr.Failed, ptr.Deref(m.FailureLimit, 0))
	case mr.Inconclusive > ptr.Deref(m.InconclusiveLimit, 0):
		return v1alpha1.AnalysisPhaseInconclusive, fmt.Sprintf("%d inconclusive measurements, more than inconclusiveLimit %d", mr.Inconclusive, ptr.Deref(m.InconclusiveLimit, 0))
	case mr.ConsecutiveError > ptr.Deref(m.ConsecutiveErrorLimit, 4):
		return v1alpha1.AnalysisPhaseError, fmt.Sprintf("%d errors in a row, more than consecutiveErrorLimit %d", mr.ConsecutiveError, ptr.Deref(m.ConsecutiveErrorLimit, 4))
	case m.ConsecutiveSuccessLimit != nil && *m.ConsecutiveSuccessLimit > 0 && mr.ConsecutiveSuccess >= *m.ConsecutiveSuccessLimit:
		return v1alpha1.AnalysisPhaseSuccessful, fmt.Sprintf("%d successes in a row", mr.ConsecutiveSuccess)
	case m.Count != nil && *m.Count > 0 && mr.Count >= *m.Count:
		return v1alpha1.AnalysisPhaseSuccessful, fmt.Sprintf("%d measurements", mr.Count)
	case m.Count == nil && m.Interval == "" && mr.Count > 0:
		return v1alpha1.AnalysisPhaseSuccessful, ""
	}
	return v1alpha1.AnalysisPhaseRunning, ""
}

// NextMeasurement is when the metric is measured next: initialDelay after
// the run started, then interval after the last measurement (an Error is
// retried after interval, or 10 s without one). While a measurement is in
// flight no other is taken: the zero time says it is looked at on every
// reconcile instead (a Job's changes trigger them) and needs no timer.
func NextMeasurement(m *v1alpha1.Metric, mr *v1alpha1.MetricResult, runStarted time.Time) (time.Time, error) {
	if len(mr.Measurements) == 0 && mr.SkippedAt == nil {
		d, err := m.InitialDelay.Parse()
		return runStarted.Add(d), err
	}
	if inFlight(mr) != nil {
		return time.Time{}, nil
	}
	interval, err := m.Interval.Parse()
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	if n := len(mr.Measurements); n > 0 {
		lm := mr.Measurements[n-1]
		last = lm.FinishedAt.Time
		if interval == 0 && lm.Phase == v1alpha1.AnalysisPhaseError {
			interval = errorRetry
		}
	}
	if s := mr.SkippedAt; s != nil && s.After(last) {
		// A skipped measurement waits like any other; without an
		// interval, like an error, so no data cannot make a hot loop.
		last = s.Time
		if interval == 0 {
			interval = errorRetry
		}
	}
	return last.Add(interval), nil
}
