package v1alpha1

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Bounds that keep one tenant's analysis and Rollouts from costing the
// controller or the cluster more than their share (docs/security-bounds.md).
// The CRDs' rules refuse objects that break them, with the messages below;
// the controllers check them again, with the same messages, because objects
// stored before the rules existed are never validated again.
const (
	// MinInterval is the shortest interval between two measurements.
	MinInterval = time.Second
	// MaxProviderTimeout is the longest a prometheus, web or judge
	// measurement may wait for its answer.
	MaxProviderTimeout = 60 * time.Second
	// MaxMeasurementRetention is the most measurements of a metric a run
	// keeps in its status.
	MaxMeasurementRetention = 100
	// JobDeadlineSeconds is the measurement timeout of a job metric: the
	// Job's activeDeadlineSeconds when its spec sets none, and the most it
	// may set.
	JobDeadlineSeconds = 600
	// MaxMeasurementBytes bounds a measurement's value and its message.
	MaxMeasurementBytes = 1024
	// MaxRolloutNameLength leaves room for the suffixes of the names derived
	// from a Rollout's (ReplicaSets, AnalysisRuns, Jobs) within the 63
	// characters of a DNS label.
	MaxRolloutNameLength = 52
)

// The messages of the bounds, the same at admission and in the controllers.
const (
	MessageInterval       = "interval must be at least 1s"
	MessageTimeout        = "timeout must be at most 60s"
	MessageRetention      = "measurementRetention limit must be at most 100"
	MessageJobDeadline    = "activeDeadlineSeconds of a job metric must be at most 600 (10 minutes)"
	MessageRolloutNameLen = "a Rollout name must be at most 52 characters: the names of its ReplicaSets and AnalysisRuns are derived from it"
)

// ValidateRunBounds checks the bounds of the spec of an AnalysisRun, at
// path (nil: the spec is the root): those of each metric and of
// measurementRetention. Metrics and retentions are named by key, so that
// errors about a run composed from templates name what the templates say.
func ValidateRunBounds(spec *AnalysisRunSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range spec.Metrics {
		errs = append(errs, ValidateMetricBounds(&spec.Metrics[i], path.Child("metrics").Key(spec.Metrics[i].Name))...)
	}
	for _, r := range spec.MeasurementRetention {
		if r.Limit > MaxMeasurementRetention {
			errs = append(errs, field.Invalid(path.Child("measurementRetention").Key(r.MetricName).Child("limit"), r.Limit, MessageRetention))
		}
	}
	return errs
}

// ValidateMetricBounds checks a metric's interval, its provider's timeout
// and, for a job metric, the Job's activeDeadlineSeconds.
func ValidateMetricBounds(m *Metric, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(d Duration, p *field.Path, ok func(time.Duration) bool, msg string) {
		if d == "" {
			return
		}
		v, err := d.Parse()
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p, d, err.Error()))
		case !ok(v):
			errs = append(errs, field.Invalid(p, d, msg))
		}
	}
	atLeastInterval := func(d time.Duration) bool { return d >= MinInterval }
	atMostTimeout := func(d time.Duration) bool { return d <= MaxProviderTimeout }
	check(m.Interval, path.Child("interval"), atLeastInterval, MessageInterval)
	provider := path.Child("provider")
	p := m.Provider
	if p.Prometheus != nil {
		check(p.Prometheus.Timeout, provider.Child("prometheus", "timeout"), atMostTimeout, MessageTimeout)
	}
	if p.Web != nil {
		check(p.Web.Timeout, provider.Child("web", "timeout"), atMostTimeout, MessageTimeout)
	}
	if p.Judge != nil {
		check(p.Judge.Timeout, provider.Child("judge", "timeout"), atMostTimeout, MessageTimeout)
	}
	if p.Job != nil {
		if d := p.Job.Spec.ActiveDeadlineSeconds; d != nil && *d > JobDeadlineSeconds {
			errs = append(errs, field.Invalid(provider.Child("job", "spec", "activeDeadlineSeconds"), *d, MessageJobDeadline))
		}
	}
	return errs
}

// ValidateRolloutName checks the length of a Rollout's name.
func ValidateRolloutName(name string) field.ErrorList {
	if len(name) > MaxRolloutNameLength {
		return field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name, fmt.Sprintf("%s (it has %d)", MessageRolloutNameLen, len(name)))}
	}
	return nil
}
