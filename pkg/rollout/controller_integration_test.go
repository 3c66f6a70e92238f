//go:build integration

package rollout

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// startReconciler runs the Rollout reconciler in a manager against envtest
// (there is no ReplicaSet controller here: the tests play it).
func startReconciler(t *testing.T) {
	t.Helper()
	startReconcilerWith(t, nil)
}

// startReconcilerWith runs the reconciler with the given traffic routers.
func startReconcilerWith(t *testing.T, routers traffic.Registry) {
	t.Helper()
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		return (&Reconciler{Client: mgr.GetClient(), Routers: routers}).SetupWithManager(mgr, opts)
	})
}

// createServices creates Services selecting app=web.
func createServices(t *testing.T, ns string, names ...string) {
	t.Helper()
	for _, name := range names {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
		if err := env.Client.Create(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
	}
}

func waitRollout(t *testing.T, key client.ObjectKey, what string, cond func(*v1alpha1.Rollout) bool) *v1alpha1.Rollout {
	t.Helper()
	var ro v1alpha1.Rollout
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, key, &ro); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return cond(&ro), nil
	})
	if err != nil {
		t.Fatalf("%s: not reached; status %+v", what, ro.Status)
	}
	return &ro
}

// TestIntegrationHashCollision: a ReplicaSet that isn't ours holds the name
// <rollout>-<hash>; the reconciler counts a collision and uses another hash.
func TestIntegrationHashCollision(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := canaryRollout(2, "25%", "25%")
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	createServices(t, ns, "web-stable", "web-canary")
	hash, err := templateHash(ro.Spec.Template, nil)
	if err != nil {
		t.Fatal(err)
	}
	squatter := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%s", hash), Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "other"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
			},
		},
	}
	if err := env.Client.Create(ctx, squatter); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	got := waitRollout(t, client.ObjectKeyFromObject(ro), "a collision counted and a ReplicaSet created", func(r *v1alpha1.Rollout) bool {
		return ptr.Deref(r.Status.CollisionCount, 0) == 1 && r.Status.CurrentPodHash != "" && r.Status.CurrentPodHash != hash
	})
	var rs appsv1.ReplicaSet
	key := client.ObjectKey{Namespace: ns, Name: "web-" + got.Status.CurrentPodHash}
	if err := env.Client.Get(ctx, key, &rs); err != nil {
		t.Fatalf("ReplicaSet %s: %v", key.Name, err)
	}
	if owner := metav1.GetControllerOf(&rs); owner == nil || owner.Name != "web" {
		t.Errorf("ReplicaSet %s not owned by the Rollout: %+v", rs.Name, owner)
	}
}

// TestIntegrationStatusAndServices: on the real API server the reconciler
// creates the first ReplicaSet, injects the hash into both Services, and
// reports Healthy once the ReplicaSet (played by the test) is available.
func TestIntegrationStatusAndServices(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := canaryRollout(3, "25%", "25%", setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	createServices(t, ns, "web-stable", "web-canary")
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	got := waitRollout(t, client.ObjectKeyFromObject(ro), "first ReplicaSet", func(r *v1alpha1.Rollout) bool {
		return r.Status.StableRS != "" && r.Status.ObservedGeneration == r.Generation
	})
	var rs appsv1.ReplicaSet
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-" + got.Status.StableRS}, &rs); err != nil {
		t.Fatal(err)
	}
	if *rs.Spec.Replicas != 3 {
		t.Errorf("first ReplicaSet at %d replicas, want 3", *rs.Spec.Replicas)
	}
	for _, name := range []string{"web-stable", "web-canary"} {
		var svc corev1.Service
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
			t.Fatal(err)
		}
		if svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != got.Status.StableRS || svc.Spec.Selector["app"] != "web" {
			t.Errorf("Service %s selector %v", name, svc.Spec.Selector)
		}
	}
	// Play the ReplicaSet controller: all pods available.
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3, FullyLabeledReplicas: 3, ObservedGeneration: rs.Generation}
	if err := env.Client.Status().Update(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	healthy := waitRollout(t, client.ObjectKeyFromObject(ro), "Healthy", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhaseHealthy
	})
	want := map[string]metav1.ConditionStatus{
		v1alpha1.ConditionReady: metav1.ConditionTrue, v1alpha1.ConditionProgressing: metav1.ConditionTrue,
		v1alpha1.ConditionPaused: metav1.ConditionFalse, v1alpha1.ConditionDegraded: metav1.ConditionFalse,
		v1alpha1.ConditionReconciling: metav1.ConditionFalse, v1alpha1.ConditionStalled: metav1.ConditionFalse,
	}
	for _, c := range healthy.Status.Conditions {
		if want[c.Type] != c.Status {
			t.Errorf("condition %s=%s, want %s", c.Type, c.Status, want[c.Type])
		}
		if c.ObservedGeneration != healthy.Generation {
			t.Errorf("condition %s observedGeneration %d, want %d", c.Type, c.ObservedGeneration, healthy.Generation)
		}
		delete(want, c.Type)
	}
	if len(want) > 0 {
		t.Errorf("missing conditions %v", want)
	}
	if healthy.Status.HPAReplicas != 3 || healthy.Status.Selector != "app=web" {
		t.Errorf("scale status: HPAReplicas %d selector %q", healthy.Status.HPAReplicas, healthy.Status.Selector)
	}
}

// TestIntegrationScaleIsGuardedBySpecOnly: a scale applies only from the
// replicas the plan saw, and a status change in between (the ReplicaSet
// controller's daily work) does not make it fail.
func TestIntegrationScaleIsGuardedBySpecOnly(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	labels := map[string]string{"app": "web"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-abc"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			},
		},
	}
	if err := env.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rs.Status.Replicas = 2
	if err := env.Client.Status().Update(ctx, rs); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Clock: clock.RealClock{}}
	if err := r.scale(ctx, ns, ScaleChange{Name: rs.Name, From: 3, To: 1}); !errors.Is(err, errRequeue) {
		t.Errorf("scaling from 3 a ReplicaSet at 2: %v, want errRequeue", err)
	}
	if err := r.scale(ctx, ns, ScaleChange{Name: rs.Name, From: 2, To: 1}); err != nil {
		t.Fatalf("scaling from 2 after a status change: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
		t.Fatal(err)
	}
	if *rs.Spec.Replicas != 1 {
		t.Errorf("spec.replicas %d, want 1", *rs.Spec.Replicas)
	}
}

// TestIntegrationWriteStatusReplacesTheStatus: the status patch sets the
// whole status, on a Rollout that has none yet and on one that has, so a
// field the new status leaves out (a pause that ended) is gone; the Rollout
// in hand then has the version and the status written.
func TestIntegrationWriteStatusReplacesTheStatus(t *testing.T) {
	ctx := context.Background()
	ro := canaryRollout(2, "1", "0", pause(""))
	ro.Namespace, ro.UID, ro.Generation = env.Namespace(t), "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Clock: clock.RealClock{}}
	paused := v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhasePaused, CurrentPodHash: "abc", CurrentStepIndex: ptr.To[int32](0),
		PauseConditions: []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: metav1.NewTime(time.Now().Truncate(time.Second))}},
	}
	resumed := v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutPhaseProgressing, CurrentPodHash: "abc", CurrentStepIndex: ptr.To[int32](1)}
	for _, want := range []v1alpha1.RolloutStatus{paused, resumed} {
		before := ro.ResourceVersion
		if err := r.writeStatus(ctx, ro, want); err != nil {
			t.Fatal(err)
		}
		if behind, _ := r.superseded.behind(client.ObjectKeyFromObject(ro), before, time.Now()); !behind {
			t.Errorf("the write from version %s was not recorded", before)
		}
		var got v1alpha1.Rollout
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got.Status); diff != "" {
			t.Errorf("stored status (-want +got):\n%s", diff)
		}
		// The answer is metadata only: the Rollout in hand takes the
		// version written and the status it was given.
		if ro.ResourceVersion != got.ResourceVersion {
			t.Errorf("resourceVersion after the write %s, stored %s", ro.ResourceVersion, got.ResourceVersion)
		}
		if diff := cmp.Diff(want, ro.Status); diff != "" {
			t.Errorf("status in hand after the write (-want +got):\n%s", diff)
		}
	}
}
