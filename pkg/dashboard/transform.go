package dashboard

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/internal/cachetransform"
)

// The informers keep of pods and ReplicaSets, the objects there are most
// of (a namespace of 1000 Rollouts has some 2000 pods), only what the pages
// show: the dashboard is to stay small beside what it watches (issue 20:
// under 150 MB for 1000 Rollouts). Nothing is written back from the cache,
// so what is dropped is never sent.

// trimPod keeps a pod's metadata but its annotations, its phase and its
// Ready condition.
func trimPod(obj any) (any, error) {
	obj, err := cachetransform.Trim(obj)
	p, ok := obj.(*corev1.Pod)
	if err != nil || !ok {
		return obj, err
	}
	p.Annotations = nil
	ready := slices.DeleteFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type != corev1.PodReady })
	p.Spec = corev1.PodSpec{}
	p.Status = corev1.PodStatus{Phase: p.Status.Phase, Conditions: ready}
	return p, nil
}

// trimReplicaSet keeps a ReplicaSet's metadata, replicas and status, and
// of its pod template the containers' names and images.
func trimReplicaSet(obj any) (any, error) {
	obj, err := cachetransform.Trim(obj)
	rs, ok := obj.(*appsv1.ReplicaSet)
	if err != nil || !ok {
		return obj, err
	}
	containers := make([]corev1.Container, len(rs.Spec.Template.Spec.Containers))
	for i, c := range rs.Spec.Template.Spec.Containers {
		containers[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	rs.Spec = appsv1.ReplicaSetSpec{Replicas: rs.Spec.Replicas, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: containers}}}
	rs.Status.Conditions = nil
	return rs, nil
}
