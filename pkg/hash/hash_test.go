package hash

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestPodTemplate(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
	}
	base, err := PodTemplate(tmpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	labelled := tmpl.DeepCopy()
	labelled.Labels[v1alpha1.PodTemplateHashLabel] = "abc"
	labelled.Spec.Containers[0].Args = []string{} // empty values don't count
	if h, _ := PodTemplate(labelled, nil); h != base {
		t.Errorf("hash label or empty fields changed the hash: %s vs %s", h, base)
	}
	one := int32(1)
	salted1, _ := PodTemplate(tmpl, nil, "exp", "baseline")
	salted2, _ := PodTemplate(tmpl, nil, "exp", "canary")
	joined, _ := PodTemplate(tmpl, nil, "expbaseline")
	collided, _ := PodTemplate(tmpl, &one)
	seen := map[string]bool{}
	for _, h := range []string{base, salted1, salted2, joined, collided} {
		if seen[h] {
			t.Fatalf("two different inputs share hash %s", h)
		}
		seen[h] = true
	}
}
