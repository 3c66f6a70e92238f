package analysis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	stats "github.com/kubeseed/rollouts/pkg/analysis/judge"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Judge measures a metric by comparing canary and baseline series with the
// statistical judge: each compared metric is two range queries over the same
// window, classified Pass / High / Low / NoData, and the classifications are
// scored 0–100. Without success or failure conditions the score decides:
// Successful at thresholds.pass, Inconclusive at thresholds.marginal, Failed
// below; with conditions, they judge the JudgeResult.
type Judge struct {
	// Prometheus connects to the servers the queries go to.
	Prometheus *Prometheus
}

// JudgeResult is what a judge measurement found; its JSON form is the
// measurement's value and what conditions see as result.
type JudgeResult struct {
	Score          float64                `json:"score"`
	Classification v1alpha1.AnalysisPhase `json:"classification"`
	Reason         string                 `json:"reason,omitempty"`
	Groups         map[string]float64     `json:"groups,omitempty"`
	Metrics        []JudgedMetric         `json:"metrics"`
}

// JudgedMetric is one compared metric.
type JudgedMetric struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	stats.Result
}

// Measure implements Provider.
func (j *Judge) Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured {
	meas := Measured{Started: j.Prometheus.Now()}
	res, warnings, err := j.compare(ctx, run, m.Provider.Judge, meas.Started)
	meas.Finished = j.Prometheus.Now()
	if err != nil {
		meas.Err = err
		return meas
	}
	raw, err := json.Marshal(res)
	if err != nil {
		meas.Err = err
		return meas
	}
	meas.Value = string(raw)
	if m.SuccessCondition == "" && m.FailureCondition == "" {
		meas.Phase = res.Classification
		meas.Message = fmt.Sprintf("score %.1f: %s", res.Score, summary(res))
	} else {
		var generic map[string]any
		_ = json.Unmarshal(raw, &generic)
		meas.Result = generic
	}
	if len(warnings) > 0 {
		meas.Message = strings.TrimSpace(meas.Message + "; Prometheus warnings: " + strings.Join(warnings, "; "))
	}
	return meas
}

// summary names the metrics that did not pass.
func summary(res JudgeResult) string {
	var parts []string
	for _, m := range res.Metrics {
		if m.Classification != stats.Pass {
			parts = append(parts, fmt.Sprintf("%s %s", m.Name, m.Classification))
		}
	}
	if res.Reason != "" {
		parts = append([]string{res.Reason}, parts...)
	}
	if len(parts) == 0 {
		return "every metric passed"
	}
	return strings.Join(parts, ", ")
}

func (j *Judge) compare(ctx context.Context, run *v1alpha1.AnalysisRun, spec *v1alpha1.JudgeMetric, now time.Time) (JudgeResult, []string, error) {
	var res JudgeResult
	api, err := j.Prometheus.client(ctx, run.Namespace, spec.PrometheusConnection)
	if err != nil {
		return res, nil, err
	}
	window, err := rangeOf(spec.Window, now)
	if err != nil {
		return res, nil, fmt.Errorf("judge window: %w", err)
	}
	timeout, err := spec.Timeout.Parse()
	if err != nil {
		return res, nil, err
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	var warnings []string
	var scored []stats.Scored
	for _, q := range spec.Metrics {
		opts, err := judgeOptions(q)
		if err != nil {
			return res, nil, fmt.Errorf("judge metric %s: %w", q.Name, err)
		}
		canary, w1, err := seriesValues(ctx, api, q.CanaryQuery, window, timeout)
		if err != nil {
			return res, nil, fmt.Errorf("judge metric %s, canary query: %w", q.Name, err)
		}
		baseline, w2, err := seriesValues(ctx, api, q.BaselineQuery, window, timeout)
		if err != nil {
			return res, nil, fmt.Errorf("judge metric %s, baseline query: %w", q.Name, err)
		}
		warnings = append(append(warnings, w1...), w2...)
		r, err := stats.Classify(canary, baseline, opts)
		if err != nil {
			return res, nil, fmt.Errorf("judge metric %s: %w", q.Name, err)
		}
		group := q.Group
		if group == "" {
			group = q.Name
		}
		res.Metrics = append(res.Metrics, JudgedMetric{Name: q.Name, Group: group, Result: r})
		scored = append(scored, stats.Scored{Name: q.Name, Group: group, Critical: q.Critical, Result: r})
	}
	weights := map[string]float64{}
	for _, g := range spec.Groups {
		weights[g.Name] = float64(g.Weight)
	}
	score := stats.ScoreMetrics(scored, weights)
	res.Score, res.Groups, res.Reason = score.Score, score.Groups, score.Reason
	pass, marginal := spec.Thresholds.Pass, spec.Thresholds.Marginal
	if pass == 0 && marginal == 0 {
		pass, marginal = 95, 75
	}
	switch {
	case res.Score >= float64(pass):
		res.Classification = v1alpha1.AnalysisPhaseSuccessful
	case res.Score >= float64(marginal):
		res.Classification = v1alpha1.AnalysisPhaseInconclusive
	default:
		res.Classification = v1alpha1.AnalysisPhaseFailed
	}
	return res, warnings, nil
}

// judgeOptions turns a metric's settings into the judge's options.
func judgeOptions(q v1alpha1.JudgeMetricQuery) (stats.Options, error) {
	o := stats.Options{
		Direction:      stats.Direction(q.Direction),
		Critical:       q.Critical,
		MustHaveData:   q.MustHaveData,
		ReplaceNaN:     q.NaNStrategy == "replace",
		RemoveOutliers: q.Outliers == "remove",
	}
	var err error
	if o.Confidence, err = decimal(q.Confidence, "confidence"); err != nil {
		return o, err
	}
	if o.Confidence != 0 && o.Confidence >= 1 {
		return o, fmt.Errorf("confidence %s must be below 1", q.Confidence)
	}
	if o.Tolerance, err = decimal(q.Tolerance, "tolerance"); err != nil {
		return o, err
	}
	if e := q.EffectSize; e != nil {
		o.EffectSize = e.Measure
		if o.EffectSize == "" {
			o.EffectSize = stats.MeanRatio
		}
		if o.AllowedIncrease, err = decimal(e.AllowedIncrease, "effectSize.allowedIncrease"); err != nil {
			return o, err
		}
		if o.AllowedDecrease, err = decimal(e.AllowedDecrease, "effectSize.allowedDecrease"); err != nil {
			return o, err
		}
	}
	return o, nil
}

func decimal(d v1alpha1.Decimal, field string) (float64, error) {
	if d == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(string(d), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %q is not a non-negative number", field, d)
	}
	return v, nil
}

// rangeOf is the window of a range query ending end before now.
func rangeOf(r v1alpha1.PrometheusRange, now time.Time) (promv1.Range, error) {
	start, err := r.Start.Parse()
	if err != nil {
		return promv1.Range{}, err
	}
	end, err := r.End.Parse()
	if err != nil {
		return promv1.Range{}, err
	}
	step, err := r.Step.Parse()
	if err != nil || step <= 0 {
		return promv1.Range{}, fmt.Errorf("step must be a positive duration")
	}
	if start <= end {
		return promv1.Range{}, fmt.Errorf("start (%s) must be further back than end (%s)", r.Start, r.End)
	}
	return promv1.Range{Start: now.Add(-start), End: now.Add(-end), Step: step}, nil
}

// seriesValues runs a range query and pools the values of every series it
// returns; no series is no data (an empty list).
func seriesValues(ctx context.Context, api promv1.API, query string, window promv1.Range, timeout time.Duration) ([]float64, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, warnings, _, err := api.QueryRange(ctx, query, window)
	if err != nil {
		return nil, warnings, err
	}
	matrix, ok := v.(model.Matrix)
	if !ok {
		return nil, warnings, fmt.Errorf("a range query returned %s, not a matrix", v.Type())
	}
	var out []float64
	for _, series := range matrix {
		for _, pt := range series.Values {
			out = append(out, float64(pt.Value))
		}
	}
	return out, warnings, nil
}
