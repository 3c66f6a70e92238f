package rollout

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestNewReplicaSet(t *testing.T) {
	ro := canaryRollout(3, "25%", "25%")
	ro.Spec.MinReadySeconds = 7
	rs := newReplicaSet(ro, "abc", "", 2, 4)
	if rs.Name != "web-abc" || *rs.Spec.Replicas != 2 || rs.Spec.MinReadySeconds != 7 {
		t.Errorf("name %s replicas %d minReadySeconds %d", rs.Name, *rs.Spec.Replicas, rs.Spec.MinReadySeconds)
	}
	for what, labels := range map[string]map[string]string{"labels": rs.Labels, "selector": rs.Spec.Selector.MatchLabels, "pod labels": rs.Spec.Template.Labels} {
		if labels[v1alpha1.PodTemplateHashLabel] != "abc" || labels["app"] != "web" {
			t.Errorf("%s %v lack the hash or the app label", what, labels)
		}
	}
	if rs.Annotations[v1alpha1.RevisionAnnotation] != "4" {
		t.Errorf("revision %q, want 4", rs.Annotations[v1alpha1.RevisionAnnotation])
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != ro.UID || ref.Kind != "Rollout" {
		t.Errorf("controller reference %+v", ref)
	}
	if ro.Spec.Template.Labels[v1alpha1.PodTemplateHashLabel] != "" {
		t.Error("newReplicaSet modified the Rollout's template")
	}
}

func TestAntiAffinity(t *testing.T) {
	term := corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.PodTemplateHashLabel: "stable"}},
		TopologyKey:   corev1.LabelHostname,
	}
	rows := []struct {
		name   string
		aa     *v1alpha1.AntiAffinity
		stable string
		want   *corev1.Affinity
	}{
		{"none asked", nil, "stable", nil},
		{"first deploy", &v1alpha1.AntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1alpha1.RequiredAntiAffinity{}}, "", nil},
		{"preferred", &v1alpha1.AntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: &v1alpha1.PreferredAntiAffinity{Weight: 40}}, "stable",
			&corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 40, PodAffinityTerm: term}}}}},
		{"required", &v1alpha1.AntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1alpha1.RequiredAntiAffinity{}}, "stable",
			&corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}}}},
	}
	for _, r := range rows {
		ro := canaryRollout(3, "25%", "25%")
		ro.Spec.Strategy.Canary.AntiAffinity = r.aa
		rs := newReplicaSet(ro, "new", r.stable, 1, 1)
		if diff := cmp.Diff(r.want, rs.Spec.Template.Spec.Affinity); diff != "" {
			t.Errorf("%s (-want +got):\n%s", r.name, diff)
		}
	}
}

func TestTemplateHashIsStable(t *testing.T) {
	ro := canaryRollout(3, "25%", "25%")
	h1, err := templateHash(ro.Spec.Template, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: a change here restarts every Rollout when the controller is
	// upgraded.
	if h1 != "794686fc5b" {
		t.Errorf("hash of the reference template changed: %s", h1)
	}
	// Explicit zero values and the hash label do not change it.
	t2 := ro.Spec.Template.DeepCopy()
	t2.Labels[v1alpha1.PodTemplateHashLabel] = "x"
	t2.Spec.Containers[0].Stdin = false
	t2.Spec.Containers[0].Args = []string{}
	if h2, _ := templateHash(t2, nil); h2 != h1 {
		t.Errorf("zero values changed the hash: %s vs %s", h2, h1)
	}
	// A collision count does.
	if h3, _ := templateHash(ro.Spec.Template, ptrInt32(1)); h3 == h1 {
		t.Error("the collision count does not change the hash")
	}
	t4 := ro.Spec.Template.DeepCopy()
	t4.Spec.Containers[0].Image = "web:2"
	if h4, _ := templateHash(t4, nil); h4 == h1 {
		t.Error("a new image does not change the hash")
	}
}
