//go:build integration

package rollout

import (
	"context"
	"slices"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// recordingNotifications is subscribed to on-rollout-paused only, and
// settles a notification when the test says.
type recordingNotifications struct {
	mu        sync.Mutex
	delivered []string
	settled   map[string]bool
	events    chan event.GenericEvent
}

func (n *recordingNotifications) Subscribed(_ context.Context, _ *v1alpha1.Rollout, fired []v1alpha1.PendingNotification) []v1alpha1.PendingNotification {
	return slices.DeleteFunc(slices.Clone(fired), func(p v1alpha1.PendingNotification) bool { return p.Trigger != v1alpha1.TriggerRolloutPaused })
}

func (n *recordingNotifications) Deliver(_ context.Context, ro *v1alpha1.Rollout) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range ro.Status.PendingNotifications {
		if !slices.Contains(n.delivered, p.Key()) {
			n.delivered = append(n.delivered, p.Key())
		}
	}
}

func (n *recordingNotifications) Settled(_ types.NamespacedName, key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.settled[key]
}

func (n *recordingNotifications) Forget(types.NamespacedName) {}

func (n *recordingNotifications) Settlements() <-chan event.GenericEvent { return n.events }

func (n *recordingNotifications) settle(ro *v1alpha1.Rollout, key string) {
	n.mu.Lock()
	n.settled[key] = true
	n.mu.Unlock()
	n.events <- event.GenericEvent{Object: ro}
}

func (n *recordingNotifications) deliveries() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.delivered)
}

// TestIntegrationPendingNotifications: a transition someone is subscribed
// to is recorded in the status the API server keeps, handed over for
// delivery, and removed once settled.
func TestIntegrationPendingNotifications(t *testing.T) {
	n := &recordingNotifications{settled: map[string]bool{}, events: make(chan event.GenericEvent, 10)}
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		return (&Reconciler{Client: mgr.GetClient(), Notifications: n}).SetupWithManager(mgr, opts)
	})
	ctx := context.Background()
	ns := env.Namespace(t)
	env.PlayReplicaSets(t, ns)
	ro := canaryRollout(2, "25%", "25%", setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	createServices(t, ns, "web-stable", "web-canary")
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	if err := env.Client.Get(ctx, key, ro); err != nil {
		t.Fatal(err)
	}
	ro.Spec.Template.Spec.Containers[0].Image = "web:2"
	if err := env.Client.Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	paused := waitRollout(t, key, "paused with a pending notification", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && len(r.Status.PendingNotifications) == 1
	})
	p := paused.Status.PendingNotifications[0]
	if p.Trigger != v1alpha1.TriggerRolloutPaused || p.Revision != paused.Status.CurrentPodHash || p.Step == nil || *p.Step != 1 {
		t.Fatalf("pending %+v, want on-rollout-paused at step 1 of revision %s", p, paused.Status.CurrentPodHash)
	}
	waitRollout(t, key, "handed over", func(*v1alpha1.Rollout) bool { return slices.Contains(n.deliveries(), p.Key()) })

	n.settle(paused, p.Key())
	waitRollout(t, key, "settled and removed", func(r *v1alpha1.Rollout) bool { return len(r.Status.PendingNotifications) == 0 })
	if got := n.deliveries(); len(got) != 1 {
		t.Errorf("handed over %v, want the one paused notification", got)
	}
}
