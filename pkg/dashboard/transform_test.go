package dashboard

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestTrimKeepsWhatThePagesShow: a Rollout's page and the change notices
// are the same from trimmed pods and ReplicaSets as from whole ones, and
// trimming again changes nothing.
func TestTrimKeepsWhatThePagesShow(t *testing.T) {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "ro-uid"},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			Steps: []v1alpha1.CanaryStep{{SetWeight: ptr.To[int32](50)}, {Pause: &v1alpha1.RolloutPause{}}},
		}}},
		Status: v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhasePaused, StableRS: "aaa", CurrentPodHash: "bbb", CurrentStepIndex: ptr.To[int32](1)},
	}
	rss := []appsv1.ReplicaSet{replicaSet(ro, "aaa", "1", "web:1", 1), replicaSet(ro, "bbb", "2", "web:2", 1)}
	pods := []corev1.Pod{
		pod(&rss[0], "web-aaa-x", corev1.ConditionTrue), pod(&rss[1], "web-bbb-y", corev1.ConditionFalse),
	}
	var trimmedRSs []appsv1.ReplicaSet
	for _, rs := range rss {
		trimmedRSs = append(trimmedRSs, *trimmed(t, trimReplicaSet, rs.DeepCopy()))
	}
	var trimmedPods []corev1.Pod
	for _, p := range pods {
		tp := trimmed(t, trimPod, p.DeepCopy())
		if diff := cmp.Diff(changeOf(&p), changeOf(tp)); diff != "" {
			t.Errorf("change notice of a trimmed pod (-whole +trimmed):\n%s", diff)
		}
		trimmedPods = append(trimmedPods, *tp)
	}
	actions := Actions{Check: func(string, *v1alpha1.Rollout) string { return "" }}
	whole := detail(ro, rss, pods, nil, nil, nil, actions)
	if diff := cmp.Diff(whole, detail(ro, trimmedRSs, trimmedPods, nil, nil, nil, actions)); diff != "" {
		t.Errorf("the Rollout's page (-whole +trimmed):\n%s", diff)
	}
	if len(whole.Revisions) != 2 || len(whole.Revisions[0].Pods) != 1 || whole.Revision != "2" {
		t.Fatalf("the page misses what the test gave it: %+v", whole)
	}
	if p := trimmedPods[0]; len(p.Spec.Containers) != 0 || len(p.Spec.Volumes) != 0 || len(p.Status.Conditions) != 1 || p.Annotations != nil {
		t.Errorf("the pod was not trimmed: %+v", p)
	}
	if rs := trimmedRSs[0]; rs.Spec.Template.Spec.Containers[0].Resources.Requests != nil || rs.Spec.Template.Labels != nil {
		t.Errorf("the ReplicaSet was not trimmed: %+v", rs)
	}
}

// trimmed applies a transform, twice: the second must change nothing.
func trimmed[T any](t *testing.T, trim func(any) (any, error), obj *T) *T {
	t.Helper()
	once, err := trim(obj)
	if err != nil {
		t.Fatal(err)
	}
	first := *once.(*T)
	twice, err := trim(once)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, *twice.(*T)); diff != "" {
		t.Errorf("trimming again changed (-once +twice):\n%s", diff)
	}
	return twice.(*T)
}

func replicaSet(ro *v1alpha1.Rollout, hash, revision, image string, replicas int32) appsv1.ReplicaSet {
	labels := map[string]string{"app": ro.Name, v1alpha1.PodTemplateHashLabel: hash}
	return appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ro.Namespace, Name: ro.Name + "-" + hash, UID: types.UID("rs-" + hash), Labels: labels,
			Annotations:     map[string]string{v1alpha1.RevisionAnnotation: revision},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Rollout", Name: ro.Name, UID: ro.UID, Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "rollouts"}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: image, Env: []corev1.EnvVar{{Name: "MODE", Value: "prod"}},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
				}}},
			},
		},
		Status: appsv1.ReplicaSetStatus{
			Replicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas,
			Conditions: []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionFalse}},
		},
	}
}

func pod(rs *appsv1.ReplicaSet, name string, ready corev1.ConditionStatus) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: rs.Namespace, Name: name, Labels: rs.Spec.Template.Labels,
			Annotations:     map[string]string{"kwok.x-k8s.io/node": "fake"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			Containers:  rs.Spec.Template.Spec.Containers,
			Volumes:     []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "127.1.0.1",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: ready},
				{Type: corev1.ContainersReady, Status: ready},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: ready == corev1.ConditionTrue}},
		},
	}
}
