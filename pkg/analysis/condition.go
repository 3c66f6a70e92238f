package analysis

import (
	"errors"
	"fmt"
	"math"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// conditionCostLimit bounds the work one condition may do on one result, so
// a condition over a huge result cannot stall a worker.
const conditionCostLimit = 1_000_000

// Conditions are a metric's success and failure conditions, compiled once
// per run.
type Conditions struct {
	success, failure cel.Program
}

// newEnv is the CEL environment of conditions: the variable result (a number,
// a list of numbers, or parsed JSON) and the helpers isNaN, isInf and
// default.
func newEnv() (*cel.Env, error) {
	isFloat := func(f func(float64) bool) func(ref.Val) ref.Val {
		return func(v ref.Val) ref.Val {
			d, ok := v.(types.Double)
			return types.Bool(ok && f(float64(d)))
		}
	}
	return cel.NewEnv(
		cel.Variable("result", cel.DynType),
		cel.Function("isNaN",
			cel.Overload("isNaN_dyn", []*cel.Type{cel.DynType}, cel.BoolType, cel.UnaryBinding(isFloat(math.IsNaN)))),
		cel.Function("isInf",
			cel.Overload("isInf_dyn", []*cel.Type{cel.DynType}, cel.BoolType, cel.UnaryBinding(isFloat(func(f float64) bool { return math.IsInf(f, 0) })))),
		cel.Function("default",
			cel.Overload("default_dyn_dyn", []*cel.Type{cel.DynType, cel.DynType}, cel.DynType, cel.BinaryBinding(func(v, fallback ref.Val) ref.Val {
				if v == types.NullValue {
					return fallback
				}
				if d, ok := v.(types.Double); ok && math.IsNaN(float64(d)) {
					return fallback
				}
				return v
			}))),
	)
}

// CompileConditions compiles the two conditions (either may be empty). A
// syntax or type error names the condition and its position.
func CompileConditions(success, failure string) (*Conditions, error) {
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	c := &Conditions{}
	for _, cond := range []struct {
		field, src string
		prog       *cel.Program
	}{{"successCondition", success, &c.success}, {"failureCondition", failure, &c.failure}} {
		if cond.src == "" {
			continue
		}
		ast, iss := env.Compile(cond.src)
		if iss.Err() != nil {
			return nil, fmt.Errorf("%s %q: %w", cond.field, cond.src, iss.Err())
		}
		if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
			return nil, fmt.Errorf("%s %q: must be a boolean expression, not %s", cond.field, cond.src, t)
		}
		prog, err := env.Program(ast, cel.CostLimit(conditionCostLimit))
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", cond.field, cond.src, err)
		}
		*cond.prog = prog
	}
	return c, nil
}

// Evaluate judges one measured result:
//   - only a success condition: Successful when it holds, else Failed;
//   - only a failure condition: Failed when it holds, else Successful;
//   - both: Failed when the failure condition holds, Successful when the
//     success condition does, Inconclusive when neither does;
//   - none: Successful.
//
// An evaluation error (a missing list element, a wrong type) is returned
// with the condition; the caller records it as an Error measurement.
func (c *Conditions) Evaluate(result any) (v1alpha1.AnalysisPhase, error) {
	failed, err := eval(c.failure, "failureCondition", result)
	if err != nil {
		return v1alpha1.AnalysisPhaseError, err
	}
	succeeded, err := eval(c.success, "successCondition", result)
	if err != nil {
		return v1alpha1.AnalysisPhaseError, err
	}
	switch {
	case c.failure != nil && failed:
		return v1alpha1.AnalysisPhaseFailed, nil
	case c.success != nil && succeeded:
		return v1alpha1.AnalysisPhaseSuccessful, nil
	case c.success != nil && c.failure != nil:
		return v1alpha1.AnalysisPhaseInconclusive, nil
	case c.success != nil:
		return v1alpha1.AnalysisPhaseFailed, nil
	}
	return v1alpha1.AnalysisPhaseSuccessful, nil
}

func eval(prog cel.Program, field string, result any) (bool, error) {
	if prog == nil {
		return false, nil
	}
	out, _, err := prog.Eval(map[string]any{"result": result})
	if err != nil {
		return false, fmt.Errorf("evaluating %s: %w", field, err)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errors.New(field + " did not evaluate to a boolean")
	}
	return bool(b), nil
}
