package analysis

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func secretArg(name, secret, key string) v1alpha1.AnalysisArg {
	return v1alpha1.AnalysisArg{Name: name, ValueFrom: &v1alpha1.ArgValueFrom{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

func TestWithArgs(t *testing.T) {
	secret := analysisSecret("shop", "api", map[string]string{"token": "s3cr&t"})
	r := &Reconciler{APIReader: fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(secret).Build()}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}, Spec: v1alpha1.AnalysisRunSpec{Args: []v1alpha1.AnalysisArg{
		{Name: "service", Value: ptr.To("web")},
		secretArg("token", "api", "token"),
		secretArg("nosecret", "missing", "token"),
		secretArg("nokey", "api", "password"),
		{Name: "hash", ValueFrom: &v1alpha1.ArgValueFrom{PodTemplateHashValue: ptr.To(v1alpha1.PodTemplateHashStable)}},
	}}}
	metric := func(url string) *v1alpha1.Metric {
		return &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url}}}
	}
	ctx, secrets := withRevealed(context.Background())

	m := metric("http://{{args.service}}/x?t={{args.token}}")
	got, err := r.withArgs(ctx, run, m)
	if err != nil || got.Provider.Web.URL != "http://web/x?t=s3cr&t" || len(secrets.all()) != 1 || secrets.all()[0] != "s3cr&t" {
		t.Errorf("withArgs: %v %v %v", got, secrets.all(), err)
	}
	if m.Provider.Web.URL != "http://{{args.service}}/x?t={{args.token}}" {
		t.Errorf("the run's metric was changed to %q", m.Provider.Web.URL)
	}
	// Secrets the metric does not use are not read.
	if _, err := r.withArgs(ctx, run, metric("http://{{args.service}}")); err != nil {
		t.Errorf("a metric without Secret args: %v", err)
	}
	if got, err := r.withArgs(ctx, run, metric("http://plain")); err != nil || got.Provider.Web.URL != "http://plain" {
		t.Errorf("a metric without placeholders: %v", err)
	}
	for url, want := range map[string]string{
		"http://x/{{args.nosecret}}": `arg "nosecret": reading key "token" of Secret missing: analysis reads only Secrets that are in the run's namespace (shop) and labelled rollouts.kubeseed.io/analysis-secret: "true"`,
		"http://x/{{args.nokey}}":    `arg "nokey": secret api has no key "password"`,
		"http://x/{{args.hash}}":     `arg "hash": an AnalysisRun's args take a value or valueFrom.secretKeyRef`,
		"http://x/{{args.nobody}}":   `uses unknown arg "nobody"`,
	} {
		if _, err := r.withArgs(ctx, run, metric(url)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", url, err, want)
		}
	}
}

func TestRedact(t *testing.T) {
	secret := `to ken/"x"`
	meas := redact(Measured{
		Err:      errors.New(`web: Get "http://x/?t=to+ken%2F%22x%22": refused; path http://x/to%20ken%2F%22x%22`),
		Message:  "echo " + base64.StdEncoding.EncodeToString([]byte(secret)),
		Value:    `{"echo":"to ken/\"x\""}`,
		Metadata: map[string]string{"job": "a-" + secret},
	}, []string{"", secret})
	for _, s := range []string{meas.Err.Error(), meas.Message, meas.Value, meas.Metadata["job"]} {
		if strings.Contains(s, "ken") || strings.Contains(s, "dG8ga2Vu") {
			t.Errorf("the secret shows in %q", s)
		}
		if !strings.Contains(s, "***") {
			t.Errorf("nothing redacted in %q", s)
		}
	}
	if plain := redact(Measured{Value: "0.9"}, nil); plain.Value != "0.9" {
		t.Errorf("no secrets changed the value to %q", plain.Value)
	}
	if empty := redact(Measured{Value: "0.9"}, []string{""}); empty.Value != "0.9" {
		t.Errorf("an empty secret changed the value to %q", empty.Value)
	}
}

// analysisSecret is a Secret analysis may read: labelled for it.
func analysisSecret(namespace, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{v1alpha1.AnalysisSecretLabel: "true"}}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}
