//go:build integration

package rollout

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// playReplicaSetsWithPods stands in for the ReplicaSet controller, pods
// included: until the test ends, every ReplicaSet in namespace gets pods
// made from its template as it is now (owned by it, with its labels and
// annotations) up to spec.replicas, loses its newest pods beyond that, and
// reports them all available.
func playReplicaSetsWithPods(t *testing.T, namespace string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		seq := 0
		for ; ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
			var rss appsv1.ReplicaSetList
			var pods corev1.PodList
			if env.Client.List(ctx, &rss, client.InNamespace(namespace)) != nil || env.Client.List(ctx, &pods, client.InNamespace(namespace)) != nil {
				continue
			}
			for i := range rss.Items {
				rs := &rss.Items[i]
				var own []corev1.Pod
				for _, p := range pods.Items {
					if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == rs.UID && p.DeletionTimestamp.IsZero() {
						own = append(own, p)
					}
				}
				slices.SortFunc(own, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
				n := ptr.Deref(rs.Spec.Replicas, 1)
				for ; int32(len(own)) < n; seq++ {
					p := corev1.Pod{
						ObjectMeta: metav1.ObjectMeta{
							Namespace: namespace, Name: fmt.Sprintf("%s-%d", rs.Name, seq),
							Labels: maps.Clone(rs.Spec.Template.Labels), Annotations: maps.Clone(rs.Spec.Template.Annotations),
							OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
						},
						Spec: rs.Spec.Template.Spec,
					}
					if err := env.Client.Create(ctx, &p); err != nil {
						break
					}
					own = append(own, p)
				}
				for int32(len(own)) > n {
					_ = env.Client.Delete(ctx, &own[len(own)-1])
					own = own[:len(own)-1]
				}
				if rs.Status.AvailableReplicas != n || rs.Status.Replicas != n || rs.Status.ObservedGeneration != rs.Generation {
					rs.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: n, AvailableReplicas: n, FullyLabeledReplicas: n, ObservedGeneration: rs.Generation}
					_ = env.Client.Status().Update(ctx, rs)
				}
			}
		}
	}()
}

// podsOfHash lists the live pods of the Rollout's ReplicaSet with hash.
func podsOfHash(t *testing.T, ns, hash string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.PodTemplateHashLabel: hash}); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return !p.DeletionTimestamp.IsZero() })
}

// waitPods waits until every pod of hash (at least one) and the pod template
// of its ReplicaSet carry want and none of the keys of gone; it returns the
// pods.
func waitPods(t *testing.T, ns, hash string, want map[string]string, gone ...string) []corev1.Pod {
	t.Helper()
	carries := func(m metav1.ObjectMeta) bool {
		for k, v := range want {
			if m.Labels[k] != v {
				return false
			}
		}
		for _, k := range gone {
			if _, ok := m.Labels[k]; ok {
				return false
			}
			if _, ok := m.Annotations[k]; ok {
				return false
			}
		}
		return true
	}
	var pods []corev1.Pod
	var rs appsv1.ReplicaSet
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-" + hash}, &rs); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		pods = podsOfHash(t, ns, hash)
		if len(pods) == 0 || !carries(rs.Spec.Template.ObjectMeta) {
			return false, nil
		}
		for _, p := range pods {
			if !carries(p.ObjectMeta) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var got []string
		for _, p := range pods {
			got = append(got, fmt.Sprintf("%s %v %v", p.Name, p.Labels, p.Annotations))
		}
		t.Fatalf("pods of %s never carried %v without %v: template %v, pods %v", hash, want, gone, rs.Spec.Template.Labels, got)
	}
	return pods
}

func uids(pods []corev1.Pod) []types.UID {
	var out []types.UID
	for _, p := range pods {
		out = append(out, p.UID)
	}
	slices.Sort(out)
	return out
}

// expectRelabelledInPlace: the pods that ran before are still there (same
// UIDs), their ReplicaSet keeps its selector, and the metadata was written
// by the controller's field manager.
func expectRelabelledInPlace(t *testing.T, ns, hash string, before []types.UID, after []corev1.Pod, selector *metav1.LabelSelector) {
	t.Helper()
	for _, uid := range before {
		if !slices.Contains(uids(after), uid) {
			t.Errorf("pod %s was replaced, not relabelled; pods now %v", uid, uids(after))
		}
	}
	for _, p := range after {
		if slices.Contains(before, p.UID) && !slices.ContainsFunc(p.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == v1alpha1.FieldManager }) {
			t.Errorf("pod %s: no managed fields of %s", p.Name, v1alpha1.FieldManager)
		}
	}
	var rs appsv1.ReplicaSet
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-" + hash}, &rs); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(rs.Spec.Selector, selector) {
		t.Errorf("ReplicaSet selector changed: %v, was %v", rs.Spec.Selector, selector)
	}
}

func selectorOf(t *testing.T, ns, hash string) *metav1.LabelSelector {
	t.Helper()
	var rs appsv1.ReplicaSet
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-" + hash}, &rs); err != nil {
		t.Fatal(err)
	}
	return rs.Spec.Selector
}

func setImage(t *testing.T, ro *v1alpha1.Rollout, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":%q}]}}}}`, image)
	if err := env.Client.Patch(context.Background(), ro, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

func promote(t *testing.T, ro *v1alpha1.Rollout, token string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.PromoteAnnotation, token)
	if err := env.Client.Patch(context.Background(), ro, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationEphemeralMetadataCanary: on the real API server, canary
// pods carry role=canary during the update and, after promotion, the same
// pods (same UIDs) carry role=stable, the canary-only label gone.
func TestIntegrationEphemeralMetadataCanary(t *testing.T) {
	startReconciler(t)
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	playReplicaSetsWithPods(t, ns)
	ro := canaryRollout(2, "1", "0", setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	ro.Spec.Strategy.Canary.CanaryMetadata = &v1alpha1.PodMetadata{Labels: map[string]string{"role": "canary", "track": "canary"}}
	ro.Spec.Strategy.Canary.StableMetadata = &v1alpha1.PodMetadata{Labels: map[string]string{"role": "stable"}}
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	first := waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	waitPods(t, ns, first.Status.StableRS, map[string]string{"role": "stable"}, "track")

	setImage(t, ro, "web:2")
	paused := waitRollout(t, key, "paused at the pause step", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == 1
	})
	canaryHash := paused.Status.CurrentPodHash
	canaryPods := waitPods(t, ns, canaryHash, map[string]string{"role": "canary", "track": "canary"})
	waitPods(t, ns, paused.Status.StableRS, map[string]string{"role": "stable"}, "track")
	before, selector := uids(canaryPods), selectorOf(t, ns, canaryHash)

	promote(t, ro, "p1")
	waitRollout(t, key, "promoted and Healthy", func(r *v1alpha1.Rollout) bool {
		return r.Status.StableRS == canaryHash && r.Status.Phase == v1alpha1.RolloutPhaseHealthy
	})
	after := waitPods(t, ns, canaryHash, map[string]string{"role": "stable"}, "track")
	expectRelabelledInPlace(t, ns, canaryHash, before, after, selector)
}

// TestIntegrationEphemeralMetadataBlueGreen: preview pods carry
// role=preview until the switch, then the same pods carry role=active.
func TestIntegrationEphemeralMetadataBlueGreen(t *testing.T) {
	startReconciler(t)
	ns := env.Namespace(t)
	createServices(t, ns, "web-active", "web-preview")
	playReplicaSetsWithPods(t, ns)
	ro := blueGreenRollout(2, v1alpha1.BlueGreenStrategy{
		AutoPromotionEnabled: ptr.To(false),
		ActiveMetadata:       &v1alpha1.PodMetadata{Labels: map[string]string{"role": "active"}},
		PreviewMetadata:      &v1alpha1.PodMetadata{Labels: map[string]string{"role": "preview"}, Annotations: map[string]string{"example.com/preview": "yes"}},
	})
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	first := waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	waitPods(t, ns, first.Status.StableRS, map[string]string{"role": "active"}, "example.com/preview")

	setImage(t, ro, "web:2")
	paused := waitRollout(t, key, "paused with the preview ready", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && r.Status.CurrentPodHash != r.Status.StableRS
	})
	previewHash := paused.Status.CurrentPodHash
	previewPods := waitPods(t, ns, previewHash, map[string]string{"role": "preview"})
	if previewPods[0].Annotations["example.com/preview"] != "yes" {
		t.Errorf("preview pod annotations %v", previewPods[0].Annotations)
	}
	before, selector := uids(previewPods), selectorOf(t, ns, previewHash)

	promote(t, ro, "p1")
	waitRollout(t, key, "switched", func(r *v1alpha1.Rollout) bool {
		return r.Status.StableRS == previewHash && r.Status.BlueGreen.ActiveSelector == previewHash
	})
	after := waitPods(t, ns, previewHash, map[string]string{"role": "active"}, "example.com/preview")
	expectRelabelledInPlace(t, ns, previewHash, before, after, selector)
}
