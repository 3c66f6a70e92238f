package analysis

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// argRef matches {{args.name}} (spaces allowed inside the braces).
var argRef = regexp.MustCompile(`\{\{\s*args\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}`)

// ArgResolver gives the value of an arg taken from elsewhere (valueFrom).
type ArgResolver func(name string, from *v1alpha1.ArgValueFrom) (string, error)

// BuildRunSpec composes templates into the spec of an AnalysisRun: their
// metrics (names must be unique across templates), dry-run and retention
// settings, and args — a template's default value, overridden by the
// referrer's args — with every {{args.name}} in the metrics substituted. An
// arg from a Secret (valueFrom.secretKeyRef) stays a reference: it is kept in
// the run's args and its placeholders in the metrics, for the AnalysisRun
// reconciler to fill in at measurement time, so the value never enters the
// run. An arg without a value, an arg the metrics use but nobody declares,
// and two templates giving one arg different defaults are errors naming the
// arg; a run that breaks a bound (v1alpha1.ValidateRunBounds) is a
// *field.Error naming the metric.
func BuildRunSpec(templates []v1alpha1.AnalysisTemplateSpec, args []v1alpha1.AnalysisArg, resolve ArgResolver) (v1alpha1.AnalysisRunSpec, error) {
	var spec v1alpha1.AnalysisRunSpec
	declared := map[string]v1alpha1.AnalysisArg{}
	seen := map[string]bool{}
	for _, t := range templates {
		for _, a := range t.Args {
			if prev, ok := declared[a.Name]; ok && !sameDefault(prev, a) {
				return spec, fmt.Errorf("arg %q has different defaults in two templates", a.Name)
			}
			declared[a.Name] = a
		}
		for _, m := range t.Metrics {
			if seen[m.Name] {
				return spec, fmt.Errorf("metric %q is defined by more than one template", m.Name)
			}
			seen[m.Name] = true
			spec.Metrics = append(spec.Metrics, *m.DeepCopy())
		}
		spec.DryRun = append(spec.DryRun, t.DryRun...)
		spec.MeasurementRetention = append(spec.MeasurementRetention, t.MeasurementRetention...)
	}
	for _, a := range args {
		declared[a.Name] = a
	}
	values := map[string]string{}
	secret := map[string]bool{}
	names := make([]string, 0, len(declared))
	for name := range declared {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := declared[name]
		switch {
		case a.Value != nil:
			values[name] = *a.Value
		case a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil:
			secret[name] = true
			spec.Args = append(spec.Args, v1alpha1.AnalysisArg{Name: name, ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: a.ValueFrom.SecretKeyRef.DeepCopy()}})
			continue
		case a.ValueFrom != nil:
			v, err := resolve(name, a.ValueFrom)
			if err != nil {
				return spec, fmt.Errorf("arg %q: %w", name, err)
			}
			values[name] = v
		default:
			return spec, fmt.Errorf("arg %q has no value: give it one in the Rollout's args", name)
		}
		spec.Args = append(spec.Args, v1alpha1.AnalysisArg{Name: name, Value: ptrString(values[name])})
	}
	for i := range spec.Metrics {
		m, err := substitute(spec.Metrics[i], values, secret)
		if err != nil {
			return spec, err
		}
		spec.Metrics[i] = m
	}
	// The run would be refused at admission; a template stored before the
	// bounds existed breaks them here, with the same message.
	if errs := v1alpha1.ValidateRunBounds(&spec, nil); len(errs) > 0 {
		return spec, errs[0]
	}
	return spec, nil
}

func sameDefault(a, b v1alpha1.AnalysisArg) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// substitute replaces {{args.name}} everywhere in a metric with values;
// the placeholders of the args in later are left for later.
func substitute(m v1alpha1.Metric, values map[string]string, later map[string]bool) (v1alpha1.Metric, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return m, err
	}
	var missing []string
	out := argRef.ReplaceAllStringFunc(string(raw), func(ref string) string {
		name := argRef.FindStringSubmatch(ref)[1]
		v, ok := values[name]
		if !ok {
			if !later[name] {
				missing = append(missing, name)
			}
			return ref
		}
		quoted, _ := json.Marshal(v) // escape for the JSON string it lands in
		return strings.TrimSuffix(strings.TrimPrefix(string(quoted), `"`), `"`)
	})
	if len(missing) > 0 {
		return m, fmt.Errorf("metric %q uses unknown arg %q: declare it in the template's args", m.Name, missing[0])
	}
	var res v1alpha1.Metric
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return m, fmt.Errorf("metric %q after substituting args: %w", m.Name, err)
	}
	return res, nil
}

func ptrString(s string) *string { return &s }
