package judge

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Classification of one metric.
type Classification string

// Metric classifications. NoData metrics are not scored; NoDataFail (no
// data where data was required) counts as a failure.
const (
	Pass       Classification = "Pass"
	High       Classification = "High"
	Low        Classification = "Low"
	NoData     Classification = "NoData"
	NoDataFail Classification = "NoDataFail"
)

// Direction is the way a canary metric must not move.
type Direction string

// Directions.
const (
	Increase Direction = "increase"
	Decrease Direction = "decrease"
	Either   Direction = "either"
)

// Effect-size measures.
const (
	MeanRatio = "meanRatio"
	CLES      = "cles"
)

// Options configure the classification of one metric.
type Options struct {
	Direction Direction
	// Confidence of the interval (default 0.98).
	Confidence float64
	// Tolerance is the band around zero, as a share of |estimate|, that the
	// interval must clear (default 0.25).
	Tolerance float64
	// ReplaceNaN replaces NaN values with 0 instead of dropping them.
	ReplaceNaN bool
	// RemoveOutliers drops points outside the IQR fences.
	RemoveOutliers bool
	// EffectSize, when set, is the measure (MeanRatio or CLES) a difference
	// must also exceed: above AllowedIncrease for High, below
	// AllowedDecrease for Low.
	EffectSize                       string
	AllowedIncrease, AllowedDecrease float64
	// Critical: anything but Pass fails the whole comparison.
	Critical bool
	// MustHaveData: no data is NoDataFail rather than NoData.
	MustHaveData bool
}

// Result is the classification of one metric and the numbers behind it.
type Result struct {
	Classification Classification `json:"classification"`
	Reason         string         `json:"reason,omitempty"`
	CILower        float64        `json:"ciLower"`
	CIUpper        float64        `json:"ciUpper"`
	Estimate       float64        `json:"estimate"`
	MeanRatio      float64        `json:"meanRatio"`
	CLES           float64        `json:"cles"`
	BaselineCount  int            `json:"baselineCount"`
	CanaryCount    int            `json:"canaryCount"`
}

// Defaults fills unset options with the NetflixACAJudge defaults.
func (o Options) Defaults() Options {
	if o.Direction == "" {
		o.Direction = Either
	}
	if o.Confidence == 0 {
		o.Confidence = 0.98
	}
	if o.Tolerance == 0 {
		o.Tolerance = 0.25
	}
	if o.EffectSize != "" && o.AllowedIncrease == 0 && o.AllowedDecrease == 0 {
		o.AllowedIncrease, o.AllowedDecrease = 1, 1
		if o.EffectSize == CLES {
			o.AllowedIncrease, o.AllowedDecrease = 0.5, 0.5
		}
	}
	return o
}

// Classify compares a canary series with a baseline series: NaN points are
// dropped (or replaced with 0), outliers optionally removed; no data on
// either side is NoData (NoDataFail when data is required); identical data
// passes; otherwise a confidence interval on the shift that lies entirely
// beyond the tolerance band (a share of the estimated shift), in a
// direction the metric must not move and with a large enough effect, is
// High or Low, and anything else is Pass.
func Classify(canary, baseline []float64, o Options) (Result, error) {
	o = o.Defaults()
	c, b := clean(canary, o), clean(baseline, o)
	r := Result{CanaryCount: len(c), BaselineCount: len(b)}
	if len(c) == 0 || len(b) == 0 {
		r.Classification, r.Reason = NoData, "no data for the canary or the baseline"
		if o.MustHaveData || o.Critical {
			r.Classification = NoDataFail
		}
		return r, nil
	}
	r.MeanRatio = mean(c) / mean(b)
	r.CLES = cles(c, b)
	sc, sb := slices.Sorted(slices.Values(c)), slices.Sorted(slices.Values(b))
	if slices.Equal(sc, sb) {
		r.Classification, r.Reason = Pass, "the canary and baseline data are identical"
		return r, nil
	}
	if sc[0] == sc[len(sc)-1] && sb[0] == sb[len(sb)-1] && sc[0] == sb[0] {
		r.Classification, r.Reason = Pass, "every value is the same"
		return r, nil
	}
	iv, err := ShiftInterval(c, b, o.Confidence)
	if err != nil {
		return r, err
	}
	r.CILower, r.CIUpper, r.Estimate = iv.Lower, iv.Upper, iv.Estimate
	band := o.Tolerance * math.Abs(iv.Estimate)
	effect := r.MeanRatio
	if o.EffectSize == CLES {
		effect = r.CLES
	}
	switch {
	case o.Direction != Decrease && iv.Lower > band && (o.EffectSize == "" || effect > o.AllowedIncrease):
		r.Classification = High
		r.Reason = fmt.Sprintf("the canary is higher: shift %s..%s beyond the tolerance ±%s", num(iv.Lower), num(iv.Upper), num(band))
	case o.Direction != Increase && iv.Upper < -band && (o.EffectSize == "" || effect < o.AllowedDecrease):
		r.Classification = Low
		r.Reason = fmt.Sprintf("the canary is lower: shift %s..%s beyond the tolerance ±%s", num(iv.Lower), num(iv.Upper), num(band))
	default:
		r.Classification = Pass
	}
	return r, nil
}

func num(v float64) string { return fmt.Sprintf("%.4g", v) }

// clean drops or replaces NaN points and, if asked, outliers.
func clean(v []float64, o Options) []float64 {
	out := make([]float64, 0, len(v))
	for _, x := range v {
		switch {
		case !math.IsNaN(x):
			out = append(out, x)
		case o.ReplaceNaN:
			out = append(out, 0)
		}
	}
	if o.RemoveOutliers {
		out = withoutOutliers(out)
	}
	return out
}

// outlierFactor is how many interquartile ranges beyond the quartiles a
// point must lie to be an outlier.
const outlierFactor = 3.0

// withoutOutliers drops points beyond factor × IQR from the quartiles. With
// no spread between the quartiles nothing is dropped: a mostly constant
// series keeps its rare values rather than losing them all.
func withoutOutliers(v []float64) []float64 {
	if len(v) < 4 {
		return v
	}
	s := slices.Sorted(slices.Values(v))
	q1, q3 := quantile(s, 0.25), quantile(s, 0.75)
	iqr := q3 - q1
	if iqr == 0 {
		return v
	}
	lo, hi := q1-outlierFactor*iqr, q3+outlierFactor*iqr
	out := v[:0:0]
	for _, x := range v {
		if x >= lo && x <= hi {
			out = append(out, x)
		}
	}
	return out
}

// quantile interpolates linearly between order statistics (R's type 7).
func quantile(sorted []float64, p float64) float64 {
	h := float64(len(sorted)-1) * p
	i := int(math.Floor(h))
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-float64(i))*(sorted[i+1]-sorted[i])
}

// Scored is a classified metric with the group it scores in.
type Scored struct {
	Name     string
	Group    string
	Critical bool
	Result   Result
}

// Score is the verdict of a comparison.
type Score struct {
	// Score is 0–100.
	Score float64 `json:"score"`
	// Groups are the group scores, by name; a group with only NoData
	// metrics has none.
	Groups map[string]float64 `json:"groups"`
	// Reason explains a forced 0.
	Reason string `json:"reason,omitempty"`
}

// ScoreMetrics scores classified metrics: each group scores the share of
// Pass among its classified metrics (NoData doesn't count, NoDataFail counts
// as a failure), and the score is the sum of group scores weighted by
// weights (in percent; groups without a weight share what is left equally).
// A critical metric that isn't Pass, or NoData for half the metrics or more,
// forces 0.
func ScoreMetrics(metrics []Scored, weights map[string]float64) Score {
	type tally struct{ pass, total int }
	groups := map[string]*tally{}
	var noData int
	var critical string
	for _, m := range metrics {
		g := groups[m.Group]
		if g == nil {
			g = &tally{}
			groups[m.Group] = g
		}
		switch m.Result.Classification {
		case Pass:
			g.pass++
			g.total++
		case High, Low, NoDataFail:
			g.total++
		}
		if m.Result.Classification == NoData || m.Result.Classification == NoDataFail {
			noData++
		}
		if m.Critical && m.Result.Classification != Pass && critical == "" {
			critical = m.Name
		}
	}
	out := Score{Groups: map[string]float64{}}
	var listed float64
	var unweighted int
	for name := range groups {
		if w, ok := weights[name]; ok {
			listed += w
		} else {
			unweighted++
		}
	}
	share := 0.0
	if unweighted > 0 {
		share = math.Max(0, 100-listed) / float64(unweighted)
	}
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := groups[name]
		if g.total == 0 {
			continue
		}
		score := 100 * float64(g.pass) / float64(g.total)
		out.Groups[name] = score
		w, ok := weights[name]
		if !ok {
			w = share
		}
		out.Score += score * w / 100
	}
	out.Score = math.Min(100, math.Max(0, out.Score))
	switch {
	case critical != "":
		out.Score, out.Reason = 0, fmt.Sprintf("critical metric %s failed", critical)
	case len(metrics) > 0 && 2*noData >= len(metrics):
		out.Score, out.Reason = 0, fmt.Sprintf("%d of %d metrics have no data", noData, len(metrics))
	}
	return out
}
