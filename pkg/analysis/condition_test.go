package analysis

import (
	"math"
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
