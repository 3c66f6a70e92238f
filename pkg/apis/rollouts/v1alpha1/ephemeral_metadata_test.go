package v1alpha1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateEphemeralMetadata(t *testing.T) {
	canary := func(m *PodMetadata) RolloutStrategy {
		return RolloutStrategy{Canary: &CanaryStrategy{CanaryMetadata: m, StableMetadata: &PodMetadata{Labels: map[string]string{"role": "stable"}}}}
	}
	labels := func(kv ...string) *PodMetadata {
		m := &PodMetadata{Labels: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			m.Labels[kv[i]] = kv[i+1]
		}
		return m
	}
	selector := &metav1.LabelSelector{
		MatchLabels:      map[string]string{"app": "web"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}},
	}
	template := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{
		Labels:      map[string]string{"app": "web", "tier": "front", "team": "shop"},
		Annotations: map[string]string{"prometheus.io/scrape": "true"},
	}}
	rows := []struct {
		name     string
		strategy RolloutStrategy
		template *corev1.PodTemplateSpec
		want     []string
	}{
		{"valid", canary(labels("role", "canary", "example.com/track", "canary")), template, nil},
		{"no metadata", RolloutStrategy{Canary: &CanaryStrategy{}}, template, nil},
		{"selector matchLabels key", canary(labels("app", "x")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels[app]: Forbidden: is a key of the Rollout's selector`}},
		{"selector matchExpressions key", canary(labels("tier", "x")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels[tier]: Forbidden: is a key of the Rollout's selector`}},
		{"hash label", canary(labels(PodTemplateHashLabel, "abc")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels[rollouts.kubeseed.io/pod-template-hash]: Forbidden: is the controller's own label`}},
		{"label set by the template", canary(labels("team", "x")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels[team]: Forbidden: is set by the pod template`}},
		{"label set by a workloadRef's template is only known to the controller", canary(labels("team", "x")), nil, nil},
		{"invalid key", canary(labels("not a key", "x")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels: Invalid value: "not a key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`}},
		{"invalid value", canary(labels("role", "-x-")), template,
			[]string{`spec.strategy.canary.canaryMetadata.labels: Invalid value: "-x-": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`}},
		{"record annotation", canary(&PodMetadata{Annotations: map[string]string{EphemeralMetadataAnnotation: "{}"}}), template,
			[]string{`spec.strategy.canary.canaryMetadata.annotations[rollouts.kubeseed.io/ephemeral-metadata]: Forbidden: is the controller's record of the ephemeral metadata`}},
		{"annotation set by the template", canary(&PodMetadata{Annotations: map[string]string{"prometheus.io/scrape": "false"}}), template,
			[]string{`spec.strategy.canary.canaryMetadata.annotations[prometheus.io/scrape]: Forbidden: is set by the pod template`}},
		{"blue-green, sorted", RolloutStrategy{BlueGreen: &BlueGreenStrategy{PreviewMetadata: labels("app", "x"), ActiveMetadata: labels("tier", "x")}}, template,
			[]string{
				`spec.strategy.blueGreen.activeMetadata.labels[tier]: Forbidden: is a key of the Rollout's selector`,
				`spec.strategy.blueGreen.previewMetadata.labels[app]: Forbidden: is a key of the Rollout's selector`,
			}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			spec := &RolloutSpec{Selector: selector, Template: row.template, Strategy: row.strategy}
			var got []string
			for _, e := range ValidateEphemeralMetadata(spec) {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(row.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
