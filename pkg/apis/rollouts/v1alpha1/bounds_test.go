package v1alpha1_test

import (
	"io/fs"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/manifests/crds"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestValidateRunBounds: the controller's checks of the bounds agree with
// the admission rules (TestIntegrationBounds) on both sides of each bound.
func TestValidateRunBounds(t *testing.T) {
	prom := func(timeout v1alpha1.Duration) v1alpha1.MetricProvider {
		return v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{Query: "up", PrometheusConnection: v1alpha1.PrometheusConnection{Timeout: timeout}}}
	}
	web := func(timeout v1alpha1.Duration) v1alpha1.MetricProvider {
		return v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x", Timeout: timeout}}
	}
	judge := func(timeout v1alpha1.Duration) v1alpha1.MetricProvider {
		return v1alpha1.MetricProvider{Judge: &v1alpha1.JudgeMetric{PrometheusConnection: v1alpha1.PrometheusConnection{Timeout: timeout}}}
	}
	job := func(deadline *int64) v1alpha1.MetricProvider {
		return v1alpha1.MetricProvider{Job: &v1alpha1.JobMetric{Spec: batchv1.JobSpec{ActiveDeadlineSeconds: deadline}}}
	}
	rows := []struct {
		name      string
		metric    v1alpha1.Metric
		retention int32
		want      string // "" means within the bounds
	}{
		{name: "no interval", metric: v1alpha1.Metric{Provider: prom("")}},
		{name: "interval 1s", metric: v1alpha1.Metric{Interval: "1s", Provider: prom("")}},
		{name: "interval 999ms", metric: v1alpha1.Metric{Interval: "999ms", Provider: prom("")}, want: `spec.metrics[m].interval: Invalid value: "999ms": ` + v1alpha1.MessageInterval},
		{name: "interval 0s", metric: v1alpha1.Metric{Interval: "0s", Provider: prom("")}, want: v1alpha1.MessageInterval},
		{name: "interval unparsable", metric: v1alpha1.Metric{Interval: "soon", Provider: prom("")}, want: `invalid duration "soon"`},
		{name: "prometheus timeout 60s", metric: v1alpha1.Metric{Provider: prom("60s")}},
		{name: "prometheus timeout 61s", metric: v1alpha1.Metric{Provider: prom("61s")}, want: `spec.metrics[m].provider.prometheus.timeout: Invalid value: "61s": ` + v1alpha1.MessageTimeout},
		{name: "web timeout 1m", metric: v1alpha1.Metric{Provider: web("1m")}},
		{name: "web timeout 1m0.5s", metric: v1alpha1.Metric{Provider: web("1m0.5s")}, want: "spec.metrics[m].provider.web.timeout: " + `Invalid value: "1m0.5s": ` + v1alpha1.MessageTimeout},
		{name: "judge timeout 2m", metric: v1alpha1.Metric{Provider: judge("2m")}, want: "spec.metrics[m].provider.judge.timeout: " + `Invalid value: "2m": ` + v1alpha1.MessageTimeout},
		{name: "job without a deadline", metric: v1alpha1.Metric{Provider: job(nil)}},
		{name: "job deadline 600", metric: v1alpha1.Metric{Provider: job(ptr.To[int64](600))}},
		{name: "job deadline 601", metric: v1alpha1.Metric{Provider: job(ptr.To[int64](601))}, want: "spec.metrics[m].provider.job.spec.activeDeadlineSeconds: Invalid value: 601: " + v1alpha1.MessageJobDeadline},
		{name: "retention 100", metric: v1alpha1.Metric{Provider: prom("")}, retention: 100},
		{name: "retention 101", metric: v1alpha1.Metric{Provider: prom("")}, retention: 101, want: "spec.measurementRetention[*].limit: Invalid value: 101: " + v1alpha1.MessageRetention},
	}
	for _, r := range rows {
		r.metric.Name = "m"
		spec := v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{r.metric}}
		if r.retention != 0 {
			spec.MeasurementRetention = []v1alpha1.MeasurementRetention{{MetricName: "*", Limit: r.retention}}
		}
		errs := v1alpha1.ValidateRunBounds(&spec, field.NewPath("spec"))
		switch {
		case r.want == "" && len(errs) > 0:
			t.Errorf("%s: %v; want no error", r.name, errs)
		case r.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), r.want)):
			t.Errorf("%s: %v; want one error containing %q", r.name, errs, r.want)
		}
	}
}

func TestValidateRolloutName(t *testing.T) {
	if errs := v1alpha1.ValidateRolloutName(strings.Repeat("r", 52)); len(errs) > 0 {
		t.Errorf("52 characters: %v", errs)
	}
	errs := v1alpha1.ValidateRolloutName(strings.Repeat("r", 53))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), v1alpha1.MessageRolloutNameLen+" (it has 53)") {
		t.Errorf("53 characters: %v", errs)
	}
}

// TestBoundMessagesInCRDs: the CRDs' rules use the controller's messages
// (the markers cannot refer to the constants).
func TestBoundMessagesInCRDs(t *testing.T) {
	rules := map[string]int{}
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs: %v", err)
	}
	for _, f := range files {
		data, err := fs.ReadFile(crds.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		collectMessages(doc, rules)
	}
	for _, msg := range []string{
		v1alpha1.MessageInterval, v1alpha1.MessageTimeout, v1alpha1.MessageRetention,
		v1alpha1.MessageJobDeadline, v1alpha1.MessageRolloutNameLen,
	} {
		if rules[msg] == 0 {
			t.Errorf("no CRD rule has the message %q", msg)
		}
	}
}

// collectMessages counts the messages of the x-kubernetes-validations in
// a schema.
func collectMessages(v any, into map[string]int) {
	switch v := v.(type) {
	case map[string]any:
		if rules, ok := v["x-kubernetes-validations"].([]any); ok {
			for _, r := range rules {
				if m, ok := r.(map[string]any)["message"].(string); ok {
					into[m]++
				}
			}
		}
		for _, c := range v {
			collectMessages(c, into)
		}
	case []any:
		for _, c := range v {
			collectMessages(c, into)
		}
	}
}
