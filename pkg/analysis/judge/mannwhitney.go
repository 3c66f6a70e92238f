// Package judge compares a canary's metric series with a baseline's, the
// way Kayenta's NetflixACAJudge does: each metric is classified Pass, High,
// Low or NoData from a Mann–Whitney U confidence interval on the shift
// between the two, and the classifications are scored 0–100 by group.
package judge

import (
	"errors"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// Interval is a confidence interval on the location shift canary −
// baseline, with the Hodges–Lehmann estimate of the shift.
type Interval struct {
	Lower, Upper float64
	Estimate     float64
}

// ErrAllTied says every observation has the same value at the interval's
// bounds: the rank-sum statistic has no variance and no interval exists.
var ErrAllTied = errors.New("all observations are tied: no confidence interval")

// relTol is the relative precision of the interval's end points.
const relTol = 1e-12

// ShiftInterval computes the two-sided confidence interval of the
// Wilcoxon rank-sum (Mann–Whitney U) test on the shift between x (canary)
// and y (baseline), with the normal approximation, the tie correction of
// the variance and the continuity correction — what R's
// wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE) reports
// — and the Hodges–Lehmann estimate (the median of all differences
// x[i] − y[j]). Each end point is the shift d at which the standardised
// statistic of (x − d, y) crosses the normal quantile; the statistic only
// changes where x[i] − d meets a y[j], so it is found by bisection down to
// a relative tolerance.
func ShiftInterval(x, y []float64, confidence float64) (Interval, error) {
	if len(x) == 0 || len(y) == 0 {
		return Interval{}, errors.New("both samples need at least one value")
	}
	if confidence <= 0 || confidence >= 1 {
		return Interval{}, errors.New("confidence must be between 0 and 1")
	}
	s := newShifter(x, y)
	lo := slices.Min(x) - slices.Max(y)
	hi := slices.Max(x) - slices.Min(y)
	zq := distuv.UnitNormal.Quantile(1 - (1-confidence)/2)
	lower, err := s.root(lo, hi, zq)
	if err != nil {
		return Interval{}, err
	}
	upper, err := s.root(lo, hi, -zq)
	if err != nil {
		return Interval{}, err
	}
	return Interval{Lower: lower, Upper: upper, Estimate: hodgesLehmann(x, y)}, nil
}

// shifter evaluates the standardised rank-sum statistic of (x − d, y).
type shifter struct {
	x, y []float64
	// scratch space, reused across evaluations
	vals []value
}

type value struct {
	v float64
	x bool
}

func newShifter(x, y []float64) *shifter {
	return &shifter{x: x, y: y, vals: make([]value, len(x)+len(y))}
}

// z is (W − n·m/2 − correction) / σ for the shift d, where W is the rank sum
// of x − d minus n(n+1)/2, σ carries the tie correction, and the
// continuity correction is sign(W − n·m/2)·½.
func (s *shifter) z(d float64) (float64, error) {
	n, m := float64(len(s.x)), float64(len(s.y))
	for i, v := range s.x {
		s.vals[i] = value{v - d, true}
	}
	for j, v := range s.y {
		s.vals[len(s.x)+j] = value{v, false}
	}
	sort.Slice(s.vals, func(a, b int) bool { return s.vals[a].v < s.vals[b].v })
	var rankSum, ties float64
	for i := 0; i < len(s.vals); {
		j := i
		for j < len(s.vals) && s.vals[j].v == s.vals[i].v {
			j++
		}
		// Tied values share the average of ranks i+1 … j.
		rank := float64(i+1+j) / 2
		t := float64(j - i)
		ties += t*t*t - t
		for k := i; k < j; k++ {
			if s.vals[k].x {
				rankSum += rank
			}
		}
		i = j
	}
	dz := rankSum - n*(n+1)/2 - n*m/2
	sigma := math.Sqrt(n * m / 12 * ((n + m + 1) - ties/((n+m)*(n+m-1))))
	if sigma == 0 || math.IsNaN(sigma) {
		return 0, ErrAllTied
	}
	correction := 0.0
	switch {
	case dz > 0:
		correction = 0.5
	case dz < 0:
		correction = -0.5
	}
	return (dz - correction) / sigma, nil
}

// root finds the shift at which z(d) = zq between lo and hi. z falls as d
// grows; when it is already below zq at lo (or above at hi) the end of the
// range is the answer.
func (s *shifter) root(lo, hi, zq float64) (float64, error) {
	zlo, err := s.z(lo)
	if err != nil {
		return 0, err
	}
	if zlo-zq <= 0 {
		return lo, nil
	}
	zhi, err := s.z(hi)
	if err != nil {
		return 0, err
	}
	if zhi-zq >= 0 {
		return hi, nil
	}
	for range 200 {
		mid := lo + (hi-lo)/2
		if hi-lo <= relTol*math.Max(math.Abs(lo), math.Abs(hi)) || mid == lo || mid == hi {
			break
		}
		zm, err := s.z(mid)
		if err != nil {
			return 0, err
		}
		if zm-zq > 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + (hi-lo)/2, nil
}

// hodgesLehmann is the median of all pairwise differences x[i] − y[j].
func hodgesLehmann(x, y []float64) float64 {
	diffs := make([]float64, 0, len(x)*len(y))
	for _, a := range x {
		for _, b := range y {
			diffs = append(diffs, a-b)
		}
	}
	slices.Sort(diffs)
	n := len(diffs)
	if n%2 == 1 {
		return diffs[n/2]
	}
	return (diffs[n/2-1] + diffs[n/2]) / 2
}

// cles is the common-language effect size: the chance that a random canary
// value exceeds a random baseline value (ties count half).
func cles(x, y []float64) float64 {
	var wins float64
	for _, a := range x {
		for _, b := range y {
			switch {
			case a > b:
				wins++
			case a == b:
				wins += 0.5
			}
		}
	}
	return wins / float64(len(x)*len(y))
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
