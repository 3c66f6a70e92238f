package judge

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

type golden struct {
	R     string `json:"r"`
	Call  string `json:"call"`
	Cases []struct {
		Name         string    `json:"name"`
		Confidence   float64   `json:"confidence"`
		X            []float64 `json:"x"`
		Y            []float64 `json:"y"`
		Lower, Upper float64
	} `json:"cases"`
}

// TestShiftIntervalMatchesR checks the interval against R's wilcox.test on
// the vectors of testdata/wilcox.json (made by testdata/wilcox.R, which
// records the R version and call).
func TestShiftIntervalMatchesR(t *testing.T) {
	raw, err := os.ReadFile("testdata/wilcox.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) < 12 {
		t.Fatalf("only %d golden vectors", len(g.Cases))
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := ShiftInterval(c.X, c.Y, c.Confidence)
			if err != nil {
				t.Fatal(err)
			}
			// R's end points carry uniroot's tolerance (1e-4 of the scaled
			// data, 1e-10 of the largest value here).
			scale := 0.0
			for _, v := range append(append([]float64(nil), c.X...), c.Y...) {
				scale = math.Max(scale, math.Abs(v))
			}
			tol := 1e-8 * scale
			if math.Abs(got.Lower-c.Lower) > tol || math.Abs(got.Upper-c.Upper) > tol {
				t.Errorf("interval [%.12g, %.12g], R says [%.12g, %.12g] (%s)", got.Lower, got.Upper, c.Lower, c.Upper, g.R)
			}
			if got.Estimate < got.Lower-tol || got.Estimate > got.Upper+tol {
				t.Errorf("estimate %g outside the interval [%g, %g]", got.Estimate, got.Lower, got.Upper)
			}
		})
	}
}

func TestShiftIntervalAllTied(t *testing.T) {
	for name, xy := range map[string][2][]float64{
		"all equal":                 {{2, 2, 2}, {2, 2}},
		"constant, different value": {{5, 5, 5, 5, 5, 5}, {3, 3, 3, 3, 3, 3, 3}},
	} {
		if _, err := ShiftInterval(xy[0], xy[1], 0.98); !errors.Is(err, ErrAllTied) {
			t.Errorf("%s: err %v, want ErrAllTied (R stops too)", name, err)
		}
	}
}

func TestHodgesLehmann(t *testing.T) {
	// Differences of {1, 4} − {0, 2}: 1, −1, 4, 2 → median (1 + 2) / 2.
	if got := hodgesLehmann([]float64{1, 4}, []float64{0, 2}); got != 1.5 {
		t.Fatalf("estimate %g, want 1.5", got)
	}
	if got := hodgesLehmann([]float64{10}, []float64{1, 2, 3}); got != 8 {
		t.Fatalf("estimate %g, want 8", got)
	}
}

func series(r *rand.Rand, n int, mean, sd float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = mean + sd*r.NormFloat64()
	}
	return out
}

func TestClassify(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := series(r, 40, 100, 10)
	same := series(r, 40, 100, 10)
	higher := series(r, 40, 140, 10)
	lower := series(r, 40, 60, 10)
	slightly := series(r, 40, 101, 10)
	nan := math.NaN()
	for _, tc := range []struct {
		name             string
		canary, baseline []float64
		o                Options
		want             Classification
	}{
		{"same distribution", same, base, Options{}, Pass},
		{"+40% either", higher, base, Options{}, High},
		{"+40% increase", higher, base, Options{Direction: Increase}, High},
		{"+40% but only decrease matters", higher, base, Options{Direction: Decrease}, Pass},
		{"-40% either", lower, base, Options{}, Low},
		{"-40% but only increase matters", lower, base, Options{Direction: Increase}, Pass},
		{"tiny shift inside the tolerance", slightly, base, Options{}, Pass},
		{"identical", base, base, Options{}, Pass},
		{"constant and equal", []float64{3, 3}, []float64{3, 3, 3}, Options{}, Pass},
		{"no canary data", nil, base, Options{}, NoData},
		{"only NaN", []float64{nan, nan}, base, Options{}, NoData},
		{"no data, required", nil, base, Options{MustHaveData: true}, NoDataFail},
		{"no data, critical", []float64{nan}, base, Options{Critical: true}, NoDataFail},
		{"NaN replaced by 0 makes it lower", []float64{nan, nan, nan, nan, nan, nan, 1, 1}, []float64{5, 6, 5, 6, 5, 6, 5, 6}, Options{ReplaceNaN: true}, Low},
		{"effect size gate blocks a small ratio", higher, base, Options{EffectSize: MeanRatio, AllowedIncrease: 1.5}, Pass},
		{"effect size gate lets a large ratio through", higher, base, Options{EffectSize: MeanRatio, AllowedIncrease: 1.2}, High},
		{"CLES gate", higher, base, Options{EffectSize: CLES}, High},
		{"CLES gate too strict", higher, base, Options{EffectSize: CLES, AllowedIncrease: 1}, Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Classify(tc.canary, tc.baseline, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got.Classification != tc.want {
				t.Fatalf("%s (%+v), want %s", got.Classification, got, tc.want)
			}
		})
	}
}

func TestClassifyOutliers(t *testing.T) {
	base := []float64{10, 11, 10, 12, 11, 10, 11, 12, 10, 11}
	canary := []float64{10, 11, 10, 12, 11, 10, 11, 12, 10, 11, 900, 1000}
	kept, err := Classify(canary, base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := Classify(canary, base, Options{RemoveOutliers: true})
	if err != nil {
		t.Fatal(err)
	}
	if kept.CanaryCount != 12 || removed.CanaryCount != 10 || removed.Classification != Pass || removed.MeanRatio != 1 {
		t.Fatalf("kept %+v, removed %+v", kept, removed)
	}
}

func TestScoreMetrics(t *testing.T) {
	m := func(name, group string, c Classification, critical bool) Scored {
		return Scored{Name: name, Group: group, Critical: critical, Result: Result{Classification: c}}
	}
	for _, tc := range []struct {
		name    string
		metrics []Scored
		weights map[string]float64
		want    float64
	}{
		{"all pass", []Scored{m("a", "a", Pass, false), m("b", "b", Pass, false)}, nil, 100},
		{"one of two groups fails", []Scored{m("a", "a", Pass, false), m("b", "b", High, false)}, nil, 50},
		{"group share", []Scored{m("a1", "g", Pass, false), m("a2", "g", Pass, false), m("a3", "g", Low, false), m("a4", "g", Pass, false)}, nil, 75},
		{"weights", []Scored{m("a", "lat", Pass, false), m("b", "err", High, false)}, map[string]float64{"lat": 70, "err": 30}, 70},
		{"unweighted groups share the rest", []Scored{m("a", "lat", Pass, false), m("b", "err", Pass, false), m("c", "cpu", High, false)}, map[string]float64{"lat": 50}, 75},
		{"NoData doesn't count", []Scored{m("a", "g", Pass, false), m("b", "g", Pass, false), m("c", "g", NoData, false)}, nil, 100},
		{"NoDataFail counts as a failure", []Scored{m("a", "g", Pass, false), m("b", "g", Pass, false), m("c", "g", Pass, false), m("d", "g", NoDataFail, false)}, nil, 75},
		{"critical failure forces 0", []Scored{m("a", "a", Pass, false), m("b", "b", Pass, false), m("c", "c", High, true)}, nil, 0},
		{"half NoData forces 0", []Scored{m("a", "a", Pass, false), m("b", "b", NoData, false)}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ScoreMetrics(tc.metrics, tc.weights)
			if math.Abs(got.Score-tc.want) > 1e-9 {
				t.Fatalf("score %g (%+v), want %g", got.Score, got, tc.want)
			}
		})
	}
}

// FuzzJudge: identical distributions pass, a shift far beyond the
// tolerance is High or Low with the right sign, and scores stay in [0, 100].
func FuzzJudge(f *testing.F) {
	f.Add(uint64(1), uint8(20), uint8(20), 100.0, 10.0)
	f.Add(uint64(7), uint8(3), uint8(50), 0.001, 0.0002)
	f.Add(uint64(9), uint8(100), uint8(5), -50.0, 3.0)
	f.Fuzz(func(t *testing.T, seed uint64, n, m uint8, mu, sd float64) {
		if n < 2 || m < 2 || math.IsNaN(mu) || math.IsInf(mu, 0) || math.Abs(mu) > 1e9 || !(sd > 1e-9*math.Max(1, math.Abs(mu))) || sd > 1e6 {
			return // not a meaningful series
		}
		r := rand.New(rand.NewPCG(seed, 1))
		base := series(r, int(n), mu, sd)
		if got, err := Classify(base, base, Options{}); err != nil || got.Classification != Pass {
			t.Fatalf("identical data: %v %+v", err, got)
		}
		// A shift of 50 standard deviations is far beyond any tolerance.
		up := make([]float64, len(base))
		down := make([]float64, len(base))
		other := series(r, int(m), mu, sd)
		for i, v := range base {
			up[i], down[i] = v+50*sd+math.Abs(mu), v-50*sd-math.Abs(mu)
		}
		hi, err := Classify(up, other, Options{})
		if err != nil || hi.Classification != High || hi.Estimate <= 0 {
			t.Fatalf("shifted up: %v %+v", err, hi)
		}
		lo, err := Classify(down, other, Options{})
		if err != nil || lo.Classification != Low || lo.Estimate >= 0 {
			t.Fatalf("shifted down: %v %+v", err, lo)
		}
		same, err := Classify(other, base, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := ScoreMetrics([]Scored{{Name: "hi", Group: "a", Result: hi}, {Name: "lo", Group: "b", Result: lo}, {Name: "same", Group: "c", Result: same}}, map[string]float64{"a": float64(seed % 100)})
		if s.Score < 0 || s.Score > 100 || math.IsNaN(s.Score) {
			t.Fatalf("score %g out of [0, 100]", s.Score)
		}
	})
}
