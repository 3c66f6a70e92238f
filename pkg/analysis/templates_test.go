package analysis

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func promMetric(name, query string) v1alpha1.Metric {
	return v1alpha1.Metric{Name: name, SuccessCondition: "result[0] > 0.9",
		Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{Query: query}}}
}

func hashes(name string, from *v1alpha1.ArgValueFrom) (string, error) {
	switch {
	case from.PodTemplateHashValue != nil && *from.PodTemplateHashValue == v1alpha1.PodTemplateHashStable:
		return "s1", nil
	case from.PodTemplateHashValue != nil:
		return "c2", nil
	case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.name":
		return "web", nil
	}
	return "", errors.New("cannot resolve " + name)
}

func TestBuildRunSpec(t *testing.T) {
	rate := v1alpha1.AnalysisTemplateSpec{
		Args:    []v1alpha1.AnalysisArg{{Name: "service"}, {Name: "threshold", Value: ptr.To("0.95")}},
		Metrics: []v1alpha1.Metric{promMetric("rate", `sum(rate(http_requests_total{service="{{args.service}}",hash="{{ args.hash }}"}[1m]))`)},
		DryRun:  []v1alpha1.DryRun{{MetricName: "rate"}},
	}
	latency := v1alpha1.AnalysisTemplateSpec{
		Args:    []v1alpha1.AnalysisArg{{Name: "hash"}, {Name: "threshold", Value: ptr.To("0.95")}},
		Metrics: []v1alpha1.Metric{promMetric("latency", `p99{rollout="{{args.rollout}}",svc="{{args.service}}"}`)},
	}
	latency.Args = append(latency.Args, v1alpha1.AnalysisArg{Name: "rollout"}, v1alpha1.AnalysisArg{Name: "service"})
	args := []v1alpha1.AnalysisArg{
		{Name: "service", Value: ptr.To(`we"b`)},
		{Name: "hash", ValueFrom: &v1alpha1.ArgValueFrom{PodTemplateHashValue: ptr.To(v1alpha1.PodTemplateHashLatest)}},
		{Name: "rollout", ValueFrom: &v1alpha1.ArgValueFrom{FieldRef: &v1alpha1.FieldRef{FieldPath: "metadata.name"}}},
	}
	spec, err := BuildRunSpec([]v1alpha1.AnalysisTemplateSpec{rate, latency}, args, hashes)
	if err != nil {
		t.Fatal(err)
	}
	queries := []string{spec.Metrics[0].Provider.Prometheus.Query, spec.Metrics[1].Provider.Prometheus.Query}
	// The value lands as is (a quote included): substitution escapes it only
	// for the JSON it passes through.
	want := []string{`sum(rate(http_requests_total{service="we"b",hash="c2"}[1m]))`, `p99{rollout="web",svc="we"b"}`}
	if diff := cmp.Diff(want, queries); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
	}
	var argNames []string
	for _, a := range spec.Args {
		argNames = append(argNames, a.Name+"="+*a.Value)
	}
	if diff := cmp.Diff([]string{"hash=c2", "rollout=web", `service=we"b`, "threshold=0.95"}, argNames); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if len(spec.DryRun) != 1 {
		t.Errorf("dry-run settings not carried: %v", spec.DryRun)
	}
}

func TestBuildRunSpecErrors(t *testing.T) {
	base := v1alpha1.AnalysisTemplateSpec{Args: []v1alpha1.AnalysisArg{{Name: "service"}}, Metrics: []v1alpha1.Metric{promMetric("rate", `up{s="{{args.service}}"}`)}}
	rows := []struct {
		name      string
		templates []v1alpha1.AnalysisTemplateSpec
		args      []v1alpha1.AnalysisArg
		want      string
	}{
		{"arg without value", []v1alpha1.AnalysisTemplateSpec{base}, nil, `arg "service" has no value`},
		{"unknown arg", []v1alpha1.AnalysisTemplateSpec{{Metrics: []v1alpha1.Metric{promMetric("rate", `up{s="{{args.nope}}"}`)}}}, nil, `metric "rate" uses unknown arg "nope"`},
		{"duplicate metric", []v1alpha1.AnalysisTemplateSpec{base, base}, []v1alpha1.AnalysisArg{{Name: "service", Value: ptr.To("x")}}, `metric "rate" is defined by more than one template`},
		{"conflicting defaults", []v1alpha1.AnalysisTemplateSpec{
			{Args: []v1alpha1.AnalysisArg{{Name: "t", Value: ptr.To("1")}}},
			{Args: []v1alpha1.AnalysisArg{{Name: "t", Value: ptr.To("2")}}},
		}, nil, `arg "t" has different defaults`},
		{"unresolvable valueFrom", []v1alpha1.AnalysisTemplateSpec{base}, []v1alpha1.AnalysisArg{{Name: "service", ValueFrom: &v1alpha1.ArgValueFrom{FieldRef: &v1alpha1.FieldRef{FieldPath: "spec.nothing"}}}}, `arg "service": cannot resolve service`},
		// Templates stored before the bounds existed.
		{"interval below 1s", []v1alpha1.AnalysisTemplateSpec{{Metrics: []v1alpha1.Metric{func() v1alpha1.Metric {
			m := promMetric("rate", "up")
			m.Interval = "100ms"
			return m
		}()}}}, nil, `metrics[rate].interval: Invalid value: "100ms": interval must be at least 1s`},
		{"retention above 100", []v1alpha1.AnalysisTemplateSpec{{
			Metrics:              []v1alpha1.Metric{promMetric("rate", "up")},
			MeasurementRetention: []v1alpha1.MeasurementRetention{{MetricName: "rate", Limit: 500}},
		}}, nil, `measurementRetention[rate].limit: Invalid value: 500: measurementRetention limit must be at most 100`},
	}
	for _, r := range rows {
		_, err := BuildRunSpec(r.templates, r.args, hashes)
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: got %v, want an error containing %q", r.name, err, r.want)
		}
	}
}

// TestBuildRunSpecSecretArgs: an arg from a Secret stays a reference in the
// run — its valueFrom in the args, its placeholders in the metrics — for the
// reconciler to fill in when measuring; args nobody declares still fail.
func TestBuildRunSpecSecretArgs(t *testing.T) {
	ref := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}, Key: "token"}
	tmpl := v1alpha1.AnalysisTemplateSpec{
		Args: []v1alpha1.AnalysisArg{{Name: "token", ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: ref}}, {Name: "service"}},
		Metrics: []v1alpha1.Metric{{Name: "health", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{
			URL:     "http://{{args.service}}/health?token={{ args.token }}",
			Headers: []v1alpha1.Header{{Key: "Authorization", Value: ptr.To("Bearer {{args.token}}")}},
		}}}},
	}
	spec, err := BuildRunSpec([]v1alpha1.AnalysisTemplateSpec{tmpl}, []v1alpha1.AnalysisArg{{Name: "service", Value: ptr.To("web")}}, hashes)
	if err != nil {
		t.Fatal(err)
	}
	web := spec.Metrics[0].Provider.Web
	if web.URL != "http://web/health?token={{ args.token }}" || *web.Headers[0].Value != "Bearer {{args.token}}" {
		t.Errorf("url %q header %q: want the service filled in and the token left as a placeholder", web.URL, *web.Headers[0].Value)
	}
	want := []v1alpha1.AnalysisArg{
		{Name: "service", Value: ptr.To("web")},
		{Name: "token", ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: ref}},
	}
	if diff := cmp.Diff(want, spec.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}

	// The referrer may also pass a Secret for a template's arg.
	tmpl.Args[0] = v1alpha1.AnalysisArg{Name: "token"}
	spec, err = BuildRunSpec([]v1alpha1.AnalysisTemplateSpec{tmpl}, []v1alpha1.AnalysisArg{
		{Name: "service", Value: ptr.To("web")},
		{Name: "token", ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: ref}},
	}, hashes)
	if err != nil || spec.Args[1].ValueFrom == nil || spec.Args[1].Value != nil {
		t.Errorf("a Secret arg from the referrer: %v %+v", err, spec.Args)
	}

	tmpl.Metrics[0].Provider.Web.URL += "&also={{args.undeclared}}"
	if _, err := BuildRunSpec([]v1alpha1.AnalysisTemplateSpec{tmpl}, []v1alpha1.AnalysisArg{
		{Name: "service", Value: ptr.To("web")}, {Name: "token", ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: ref}},
	}, hashes); err == nil || !strings.Contains(err.Error(), `unknown arg "undeclared"`) {
		t.Errorf("an undeclared arg next to a Secret one: %v", err)
	}
}
