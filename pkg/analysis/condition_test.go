package analysis

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestConditionSemantics(t *testing.T) {
	const (
		ok      = v1alpha1.AnalysisPhaseSuccessful
		failed  = v1alpha1.AnalysisPhaseFailed
		inconcl = v1alpha1.AnalysisPhaseInconclusive
	)
	rows := []struct {
		name             string
		success, failure string
		result           any
		want             v1alpha1.AnalysisPhase
	}{
		{"success only, holds", "result[0] >= 0.95", "", []float64{0.99}, ok},
		{"success only, does not hold", "result[0] >= 0.95", "", []float64{0.90}, failed},
		{"failure only, holds", "", "result > 0.01", 0.05, failed},
		{"failure only, does not hold", "", "result > 0.01", 0.001, ok},
		{"both, success", "result < 1", "result > 5", 0.5, ok},
		{"both, failure", "result < 1", "result > 5", 9.0, failed},
		{"both, neither", "result < 1", "result > 5", 3.0, inconcl},
		{"both hold: failure wins", "result > 0", "result > 5", 9.0, failed},
		{"neither set", "", "", 1.0, ok},
		{"JSON boolean", "result == true", "", true, ok},
		{"JSON object", "result.ok && result.count > 2", "", map[string]any{"ok": true, "count": 3.0}, ok},
		{"list of numbers", "result.all(x, x < 0.5)", "", []float64{0.1, 0.2, 0.7}, failed},
		{"isNaN", "!isNaN(result)", "", math.NaN(), failed},
		{"isInf", "", "isInf(result)", math.Inf(1), failed},
		{"isNaN of an integer", "!isNaN(result)", "", int64(3), ok},
		{"default replaces NaN", "default(result, 0.0) < 1.0", "", math.NaN(), ok},
		{"default replaces null", "default(result, 0.0) < 1.0", "", nil, ok},
		{"default keeps a value", "default(result, 0.0) < 1.0", "", 5.0, failed},
	}
	for _, r := range rows {
		c, err := CompileConditions(r.success, r.failure)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		got, err := c.Evaluate(r.result)
		if err != nil || got != r.want {
			t.Errorf("%s: got %s, %v; want %s", r.name, got, err, r.want)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	for _, r := range []struct{ success, want string }{
		{"result[0] >=", `successCondition "result[0] >=": ERROR: <input>:1:13: Syntax error`},
		{"result + ", "Syntax error"},
		{"'a' + 1 == 2", "no matching overload"},
		{"1 + 2", "must be a boolean expression"},
	} {
		_, err := CompileConditions(r.success, "")
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("CompileConditions(%q) = %v; want an error containing %q", r.success, err, r.want)
		}
	}
	c, err := CompileConditions("result[0] > 1", "")
	if err != nil {
		t.Fatal(err)
	}
	if phase, err := c.Evaluate([]float64{}); err == nil || phase != v1alpha1.AnalysisPhaseError {
		t.Errorf("indexing an empty result: %s, %v; want an Error", phase, err)
	}
	if phase, err := c.Evaluate("text"); err == nil || phase != v1alpha1.AnalysisPhaseError {
		t.Errorf("wrong result type: %s, %v; want an Error", phase, err)
	}
}

func TestConditionCostLimit(t *testing.T) {
	c, err := CompileConditions("result.all(x, result.all(y, x + y >= 0.0))", "")
	if err != nil {
		t.Fatal(err)
	}
	big := make([]float64, 5000)
	if _, err := c.Evaluate(big); err == nil || !strings.Contains(err.Error(), "cost") {
		t.Errorf("a quadratic condition over 5000 values ran: %v", err)
	}
}

// FuzzConditions compiles any pair of conditions and judges any result with
// them. Compiling and evaluating never panic, and whatever goes wrong is an
// Error with a message, never a verdict; the same conditions on the same
// result give the same answer every time (a runaway evaluation is the CEL
// cost limit's, which answers Error, and the fuzzing engine reports a hang);
// the verdict of both conditions follows from the verdicts of each alone (the rules of
// Evaluate); and Record sends a result without data (null, NaN, an empty
// list, a list of NaN or null only) through noDataPolicy whatever the
// conditions say, while any other result gets the conditions' verdict.
func FuzzConditions(f *testing.F) {
	// successCondition, failureCondition, a JSON document, a number, the
	// shape of the result (see fuzzResult) and the noDataPolicy.
	f.Add("result[0] >= 0.95", "", `[0.99]`, 0.0, uint8(0), uint8(0))
	f.Add("", "result > 0.01", ``, 0.05, uint8(1), uint8(1))
	f.Add("result < 1", "result > 5", ``, math.NaN(), uint8(1), uint8(2))
	f.Add("result.ok && result.count > 2", "", `{"ok": true, "count": 3}`, 0.0, uint8(0), uint8(3))
	f.Add("result.all(x, x < 0.5)", "isInf(result[0])", "\x01\x05\x00", 0.25, uint8(2), uint8(0))
	f.Add("default(result, 0.0) < 1.0", "", `null`, 0.0, uint8(0), uint8(4))
	f.Add("result.exists(x, !isNaN(x) && x > 0.9)", "size(result) == 0", "\x00\x00", 1.0, uint8(2), uint8(1))
	f.Add("result == true", "result.data.ok == false", `{"data": {"ok": false}}`, 0.0, uint8(0), uint8(2))
	f.Add("result.all(x, result.all(y, x + y >= 0.0))", "", strings.Repeat("x", 64), 2.0, uint8(2), uint8(0))
	f.Add("1 + 2", "result +", `1`, 0.0, uint8(0), uint8(0))
	f.Add("true", "false", ``, 0.0, uint8(7), uint8(3))
	f.Add("size(result) > 2", "result[0] == null", "\x00\x01\x02", 0.0, uint8(11), uint8(0))
	f.Add(`result.map(k, result[k]).size() > 0`, "", `{"a": [1], "b": "x"}`, 0.0, uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, success, failure, doc string, num float64, shape, policyByte uint8) {
		c, err := CompileConditions(success, failure)
		if _, again := CompileConditions(success, failure); errText(err) != errText(again) {
			t.Fatalf("compiling %q, %q: %v, then %v", success, failure, err, again)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "successCondition ") && !strings.HasPrefix(err.Error(), "failureCondition ") {
				t.Fatalf("compiling %q, %q: %v does not name the condition", success, failure, err)
			}
			return
		}
		result, data := fuzzResult(doc, num, shape)
		phase, err := c.Evaluate(result)
		switch {
		case (err != nil) != (phase == v1alpha1.AnalysisPhaseError):
			t.Fatalf("%q, %q on %#v: %s with error %v", success, failure, result, phase, err)
		case err == nil && phase != v1alpha1.AnalysisPhaseSuccessful && phase != v1alpha1.AnalysisPhaseFailed && phase != v1alpha1.AnalysisPhaseInconclusive:
			t.Fatalf("%q, %q on %#v: %s is no verdict", success, failure, result, phase)
		case err != nil && !strings.Contains(err.Error(), "successCondition") && !strings.Contains(err.Error(), "failureCondition"):
			t.Fatalf("%q, %q on %#v: %v does not name the condition", success, failure, result, err)
		}
		if again, err2 := c.Evaluate(result); again != phase || errText(err) != errText(err2) {
			t.Fatalf("%q, %q on %#v: %s (%v), then %s (%v)", success, failure, result, phase, err, again, err2)
		}
		if want := combinedVerdict(t, success, failure, result); phase != want {
			t.Fatalf("%q, %q on %#v: %s, but each alone gives %s", success, failure, result, phase, want)
		}

		policies := []v1alpha1.NoDataPolicy{"", v1alpha1.NoDataError, v1alpha1.NoDataInconclusive, v1alpha1.NoDataFail, v1alpha1.NoDataSkip}
		policy := policies[int(policyByte)%len(policies)]
		mr := &v1alpha1.MetricResult{Name: "m"}
		Record(&v1alpha1.Metric{Name: "m", Interval: "1m", NoDataPolicy: policy}, mr, c, Measured{Result: result}, 0)
		if !data {
			want := map[v1alpha1.NoDataPolicy]v1alpha1.AnalysisPhase{
				"": v1alpha1.AnalysisPhaseError, v1alpha1.NoDataError: v1alpha1.AnalysisPhaseError,
				v1alpha1.NoDataInconclusive: v1alpha1.AnalysisPhaseInconclusive, v1alpha1.NoDataFail: v1alpha1.AnalysisPhaseFailed,
			}[policy]
			switch {
			case policy == v1alpha1.NoDataSkip && len(mr.Measurements) != 0:
				t.Fatalf("%#v with noDataPolicy Skip: recorded %+v", result, mr.Measurements)
			case policy != v1alpha1.NoDataSkip && (len(mr.Measurements) != 1 || mr.Measurements[0].Phase != want || !strings.HasPrefix(mr.Measurements[0].Message, "No data: ")):
				t.Fatalf("%#v with noDataPolicy %q: recorded %+v, want one %s for no data", result, policy, mr.Measurements, want)
			}
			return
		}
		if len(mr.Measurements) != 1 || mr.Measurements[0].Phase != phase {
			t.Fatalf("%q, %q on %#v: recorded %+v, want one %s", success, failure, result, mr.Measurements, phase)
		}
		if m := mr.Measurements[0].Message; err != nil && m != err.Error() && !strings.HasPrefix(m, "measurement message is ") {
			t.Fatalf("%q, %q on %#v: recorded message %q, want %q", success, failure, result, m, err)
		}
	})
}

// fuzzResult builds a result of the kinds providers give, and whether it
// holds data: by shape, parsed JSON (or the text itself when it is not
// JSON), a number, a vector of numbers (a byte divisible by 5 is NaN), or
// one of the forms without data: null, or a vector of NaN or a JSON list of
// null and NaN, as long as doc (so possibly empty).
func fuzzResult(doc string, num float64, shape uint8) (any, bool) {
	switch shape % 4 {
	case 0:
		var v any
		if json.Unmarshal([]byte(doc), &v) != nil {
			return doc, true
		}
		return v, hasData(v)
	case 1:
		return num, !math.IsNaN(num)
	case 2:
		vec := make([]float64, 0, len(doc))
		for i, b := range []byte(doc) {
			if b%5 == 0 {
				vec = append(vec, math.NaN())
			} else {
				vec = append(vec, num*float64(i)+float64(b))
			}
		}
		return vec, hasData(vec)
	}
	switch shape / 4 % 3 {
	case 0:
		return nil, false
	case 1:
		vec := make([]float64, len(doc))
		for i := range vec {
			vec[i] = math.NaN()
		}
		return vec, false
	}
	list := make([]any, len(doc))
	for i, b := range []byte(doc) {
		if b%2 == 1 {
			list[i] = math.NaN()
		}
	}
	return list, false
}

// hasData is DESIGN.md's rule: null, NaN, an empty list and a list of only
// NaN and null hold no data.
func hasData(v any) bool {
	empty := func(e any) bool {
		f, ok := e.(float64)
		return e == nil || ok && math.IsNaN(f)
	}
	switch v := v.(type) {
	case []float64:
		return slices.ContainsFunc(v, func(f float64) bool { return !empty(f) })
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return !empty(e) })
	}
	return !empty(v)
}

// combinedVerdict is what Evaluate must give for both conditions, from what
// each gives alone.
func combinedVerdict(t *testing.T, success, failure string, result any) v1alpha1.AnalysisPhase {
	t.Helper()
	alone := func(s, f string) v1alpha1.AnalysisPhase {
		if s == "" && f == "" {
			return ""
		}
		c, err := CompileConditions(s, f)
		if err != nil {
			t.Fatalf("%q, %q compile together but not %q, %q: %v", success, failure, s, f, err)
		}
		phase, _ := c.Evaluate(result)
		return phase
	}
	fail, succeed := alone("", failure), alone(success, "")
	switch {
	case fail == v1alpha1.AnalysisPhaseError || succeed == v1alpha1.AnalysisPhaseError:
		return v1alpha1.AnalysisPhaseError
	case fail == v1alpha1.AnalysisPhaseFailed:
		return v1alpha1.AnalysisPhaseFailed
	case succeed == v1alpha1.AnalysisPhaseSuccessful:
		return v1alpha1.AnalysisPhaseSuccessful
	case fail != "" && succeed != "":
		return v1alpha1.AnalysisPhaseInconclusive
	case succeed != "":
		return v1alpha1.AnalysisPhaseFailed
	}
	return v1alpha1.AnalysisPhaseSuccessful
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
