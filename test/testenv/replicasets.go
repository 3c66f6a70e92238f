package testenv

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PlayReplicaSets stands in for the ReplicaSet controller envtest lacks:
// until the test ends, every ReplicaSet in namespace gets all the pods it
// asks for, ready and available, a moment after it asks.
func (e *Env) PlayReplicaSets(t testing.TB, namespace string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			var list appsv1.ReplicaSetList
			if err := e.Client.List(ctx, &list, client.InNamespace(namespace)); err == nil {
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
