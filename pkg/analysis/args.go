package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kubeseed/rollouts/internal/redaction"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// withArgs returns the metric a provider is given: a copy with the run's
// args substituted. Args from Secrets are read now, under secretValue's
// rule, and their values recorded in ctx for redact; the run itself keeps
// only the placeholders, so no value from a Secret is ever stored in it.
func (r *Reconciler) withArgs(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) (*v1alpha1.Metric, error) {
	used, err := argsUsed(m)
	if err != nil || len(used) == 0 {
		return m, err
	}
	values := map[string]string{}
	for _, a := range run.Spec.Args {
		if !used[a.Name] {
			continue
		}
		switch {
		case a.Value != nil:
			values[a.Name] = *a.Value
		case a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil:
			v, err := secretValue(ctx, r.APIReader, run.Namespace, *a.ValueFrom.SecretKeyRef)
			if err != nil {
				return nil, fmt.Errorf("arg %q: %w", a.Name, err)
			}
			values[a.Name] = v
		default:
			return nil, fmt.Errorf("arg %q: an AnalysisRun's args take a value or valueFrom.secretKeyRef", a.Name)
		}
	}
	out, err := substitute(*m, values, nil)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// argsUsed names the args a metric's placeholders refer to.
func argsUsed(m *v1alpha1.Metric) (map[string]bool, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, ref := range argRef.FindAllStringSubmatch(string(raw), -1) {
		used[ref[1]] = true
	}
	return used, nil
}

// redact hides Secret-derived values in everything a measurement shows —
// its error, message, value and metadata (internal/redaction has the forms).
func redact(meas Measured, secrets []string) Measured {
	hide := redaction.Replacer(secrets)
	if hide == nil {
		return meas
	}
	if meas.Err != nil {
		meas.Err = errors.New(hide.Replace(meas.Err.Error()))
	}
	meas.Message = hide.Replace(meas.Message)
	meas.Value = hide.Replace(meas.Value)
	if len(meas.Metadata) > 0 {
		md := make(map[string]string, len(meas.Metadata))
		for k, v := range meas.Metadata {
			md[hide.Replace(k)] = hide.Replace(v)
		}
		meas.Metadata = md
	}
	return meas
}
