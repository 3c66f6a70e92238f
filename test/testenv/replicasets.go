package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PlayReplicaSets stands in for the ReplicaSet and EndpointSlice
// controllers envtest lacks: until the test ends, every ReplicaSet in
// namespace gets all the pods it asks for, ready and available, a moment
// after it asks, and every Service with a selector an EndpointSlice that
// lists those pods of the ReplicaSets it selects, ready, the moment after.
// No pod objects exist: the endpoints name pods the way the ReplicaSet
// controller would (<replicaset>-<n>), with addresses nothing dials.
func (e *Env) PlayReplicaSets(t testing.TB, namespace string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			var list appsv1.ReplicaSetList
			if err := e.Client.List(ctx, &list, client.InNamespace(namespace)); err == nil {
				e.publishEndpoints(ctx, namespace, list.Items)
				for i := range list.Items {
					rs := &list.Items[i]
					n := ptr.Deref(rs.Spec.Replicas, 1)
					if rs.Status.AvailableReplicas != n || rs.Status.Replicas != n || rs.Status.ObservedGeneration != rs.Generation {
						rs.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: n, AvailableReplicas: n, FullyLabeledReplicas: n, ObservedGeneration: rs.Generation}
						_ = e.Client.Status().Update(ctx, rs)
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// playedSlice is the name suffix of the EndpointSlices PlayReplicaSets
// publishes, one per Service.
const playedSlice = "-played"

// publishEndpoints writes, for every Service in namespace with a selector,
// the EndpointSlice of the available pods of the ReplicaSets it selects.
func (e *Env) publishEndpoints(ctx context.Context, namespace string, rss []appsv1.ReplicaSet) {
	var services corev1.ServiceList
	if err := e.Client.List(ctx, &services, client.InNamespace(namespace)); err != nil {
		return
	}
	for _, svc := range services.Items {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		want := discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: svc.Name + playedSlice,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "testenv.rollouts.kubeseed.io"},
			},
			AddressType: discoveryv1.AddressTypeFQDN,
			Endpoints:   []discoveryv1.Endpoint{},
		}
		selector := labels.SelectorFromSet(svc.Spec.Selector)
		for _, rs := range rss {
			if !selector.Matches(labels.Set(rs.Spec.Template.Labels)) {
				continue
			}
			for i := range rs.Status.AvailableReplicas {
				pod := fmt.Sprintf("%s-%d", rs.Name, i)
				want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{
					Addresses:  []string{pod + ".pods.invalid"},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod},
				})
			}
		}
		var have discoveryv1.EndpointSlice
		switch err := e.Client.Get(ctx, client.ObjectKeyFromObject(&want), &have); {
		case apierrors.IsNotFound(err):
			_ = e.Client.Create(ctx, &want)
		case err == nil && !equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints):
			have.Endpoints = want.Endpoints
			_ = e.Client.Update(ctx, &have)
		}
	}
}
