//go:build integration

package rollout

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// createCanary creates the Services and a canary Rollout pausing at 50%
// in ns.
func createCanary(t *testing.T, ns string) client.ObjectKey {
	t.Helper()
	createServices(t, ns, "web-stable", "web-canary")
	ro := canaryRollout(2, "25%", "25%", setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(ro)
}

// TestIntegrationDeleteGivesServicesBack: the Rollout takes the cleanup
// finalizer before it first writes a Service, marks the Services as its own,
// and on delete removes the hash key and the mark before it goes. The
// user's own selector and metadata stay.
func TestIntegrationDeleteGivesServicesBack(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	key := createCanary(t, ns)
	got := waitRollout(t, key, "Services switched", func(r *v1alpha1.Rollout) bool { return r.Status.StableRS != "" })
	if !slices.Contains(got.Finalizers, v1alpha1.CleanupFinalizer) {
		t.Fatalf("finalizers %v lack %s", got.Finalizers, v1alpha1.CleanupFinalizer)
	}
	service := func(name string) *corev1.Service {
		t.Helper()
		var svc corev1.Service
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
			t.Fatal(err)
		}
		return &svc
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		svc := service("web-stable")
		return svc.Annotations[v1alpha1.ManagedByAnnotation] == "web" && svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != "", nil
	})
	if err != nil {
		t.Fatalf("Service not switched and marked: %+v", service("web-stable"))
	}

	if err := env.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, key, &v1alpha1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Rollout not gone after delete: %v", err)
	}
	for _, name := range []string{"web-stable", "web-canary"} {
		svc := service(name)
		if _, ok := svc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; ok || svc.Spec.Selector["app"] != "web" {
			t.Errorf("Service %s selector after delete: %v", name, svc.Spec.Selector)
		}
		if _, ok := svc.Annotations[v1alpha1.ManagedByAnnotation]; ok {
			t.Errorf("Service %s still marked: %v", name, svc.Annotations)
		}
	}
}

// TestIntegrationDeleteWithAServiceGone: a Service deleted before the
// Rollout does not hold the Rollout; the other Service is still given back.
func TestIntegrationDeleteWithAServiceGone(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	key := createCanary(t, ns)
	got := waitRollout(t, key, "finalizer", func(r *v1alpha1.Rollout) bool { return slices.Contains(r.Finalizers, v1alpha1.CleanupFinalizer) })
	if err := env.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-canary"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, key, &v1alpha1.Rollout{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Rollout held by its finalizer with a Service gone: %v", err)
	}
	var svc corev1.Service
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-stable"}, &svc); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; ok {
		t.Errorf("stable Service selector after delete: %v", svc.Spec.Selector)
	}
}
