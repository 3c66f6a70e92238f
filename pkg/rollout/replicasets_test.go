package rollout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
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

// The scale-down deadline is written with whole seconds (RFC 3339), so it
// is rounded up: a ReplicaSet kept after a promotion or an abort waits the
// whole delay — a router still sends it requests until it has applied the
// switch — and at most a second more.
func TestScaleDownDeadlineKeepsTheWholeDelay(t *testing.T) {
	ro := canaryRollout(3, "25%", "25%")
	base := time.Date(2026, 12, 3, 9, 20, 56, 0, time.UTC)
	for _, frac := range []time.Duration{0, time.Nanosecond, 700 * time.Millisecond, time.Second - time.Nanosecond} {
		now := base.Add(frac)
		var out outcome
		kept := out.scaleDownLater(&rsView{name: "web-old", spec: 3}, 5, now)
		if kept != 3 || len(out.annotate) != 1 {
			t.Fatalf("at %s: kept %d, annotations %+v", now.Format(time.RFC3339Nano), kept, out.annotate)
		}
		// The next reconcile reads the deadline back from the annotation.
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{out.annotate[0].Key: out.annotate[0].Value}}}
		v := viewOf(rs, ro)
		if last := now.Add(5*time.Second - time.Nanosecond); !v.delayed(last) {
			t.Errorf("at %s: deadline %s is over before the 5 s delay is (at %s)", now.Format(time.RFC3339Nano), out.annotate[0].Value, last.Format(time.RFC3339Nano))
		}
		if v.delayed(now.Add(6 * time.Second)) {
			t.Errorf("at %s: deadline %s keeps the ReplicaSet more than a second past the delay", now.Format(time.RFC3339Nano), out.annotate[0].Value)
		}
		if woken := now.Add(out.requeueAfter); woken.Before(*v.scaleDownAt) {
			t.Errorf("at %s: wakes up at %s, before the deadline %s", now.Format(time.RFC3339Nano), woken.Format(time.RFC3339Nano), out.annotate[0].Value)
		}
	}
}
