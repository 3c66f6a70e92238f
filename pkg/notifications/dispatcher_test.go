package notifications

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/notifications/notificationstest"
)

func newTestDispatcher(t *testing.T, url string, ns map[string]string) (*Dispatcher, *events.FakeRecorder) {
	t.Helper()
	rec := events.NewFakeRecorder(100)
	d, err := NewDispatcher(prometheus.NewRegistry(), DispatcherOptions{
		Sender:   SenderOptions{InitialBackoff: 5 * time.Millisecond, MaxAttempts: 2},
		Runs:     fake.NewClientBuilder().WithScheme(apis.NewScheme()).Build(),
		Recorder: rec,
		NamespaceAnnotations: func(context.Context, string) (map[string]string, error) {
			return ns, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(nil) })
	cm, secret := settings(url, nil)
	d.SetSettings(ParseSettings(cm, secret))
	return d, rec
}

func pending(trigger v1alpha1.NotificationTrigger, step int32) v1alpha1.PendingNotification {
	return v1alpha1.PendingNotification{Trigger: trigger, Revision: "abc", Step: ptr.To(step), At: metav1.NewTime(time.Unix(1700000000, 0))}
}

// The Dispatcher keeps the transitions someone is subscribed to (on the
// Rollout or its Namespace), delivers each pending one once, settles it
// when delivered or given up, and asks for a reconcile then.
func TestDispatcherDeliversPendingOnce(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	d, rec := newTestDispatcher(t, rcv.URL, map[string]string{AnnotationPrefix + "/subscribe.on-rollout-completed.hook": ""})
	ro := pausedRollout(map[string]string{AnnotationPrefix + "/subscribe.on-rollout-paused.hook": ""})
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	paused, completed, aborted := pending(TriggerRolloutPaused, 1), pending(TriggerRolloutCompleted, 3), pending(TriggerRolloutAborted, 1)

	kept := d.Subscribed(t.Context(), ro, []v1alpha1.PendingNotification{paused, aborted, completed})
	if len(kept) != 2 || kept[0].Trigger != TriggerRolloutPaused || kept[1].Trigger != TriggerRolloutCompleted {
		t.Fatalf("kept %v, want the paused and completed ones", kept)
	}

	ro.Status.PendingNotifications = []v1alpha1.PendingNotification{paused}
	d.Deliver(t.Context(), ro)
	d.Deliver(t.Context(), ro) // the same record again: already queued
	select {
	case e := <-d.Settlements():
		if e.Object.GetName() != "web" {
			t.Errorf("settlement for %s", e.Object.GetName())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no settlement")
	}
	if !d.Settled(key, paused.Key()) {
		t.Error("the delivered notification is not settled")
	}
	if got := rcv.Messages(); len(got) != 1 || !strings.Contains(got[0], "is paused at step 2 of 3") {
		t.Errorf("received %q, want the paused message once", got)
	}

	// Removed from the status, it is forgotten; a failing one settles
	// once given up, with an event per attempt.
	rcv.SetStatus(http.StatusBadGateway)
	ro.Status.PendingNotifications = []v1alpha1.PendingNotification{completed}
	d.Deliver(t.Context(), ro)
	if d.Settled(key, paused.Key()) {
		t.Error("a record gone from the status is still known")
	}
	select {
	case <-d.Settlements():
	case <-time.After(10 * time.Second):
		t.Fatal("the failing delivery never settled")
	}
	if !d.Settled(key, completed.Key()) {
		t.Error("the given-up notification is not settled")
	}
	var got []string
	for len(rec.Events) > 0 {
		got = append(got, <-rec.Events)
	}
	want := []string{
		"Warning NotificationFailed on-rollout-completed to hook failed (attempt 1, retrying): webhook hook: GET",
		"Warning NotificationFailed on-rollout-completed to hook failed (attempt 2, given up): webhook hook: GET",
	}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) || !strings.Contains(got[i], "answered 502 Bad Gateway") {
			t.Errorf("event %q, want %q… answered 502 Bad Gateway", got[i], want[i])
		}
	}
}

// Before the settings are read, a reconcile waits for them a little; once
// that time has passed, the Dispatcher goes on with the built-in settings
// (no service), and a subscription fails in the open instead of waiting.
func TestDispatcherWithoutSettings(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	d, err := NewDispatcher(prometheus.NewRegistry(), DispatcherOptions{
		Runs: fake.NewClientBuilder().WithScheme(apis.NewScheme()).Build(), Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(nil) })
	ro := pausedRollout(map[string]string{AnnotationPrefix + "/subscribe.on-rollout-paused.hook": ""})
	fired := []v1alpha1.PendingNotification{pending(TriggerRolloutPaused, 1), pending(TriggerRolloutAborted, 1)}

	// A reconcile whose deadline passes first keeps every transition.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := d.Subscribed(ctx, ro, fired); len(got) != 2 {
		t.Errorf("kept %v before the settings were read, want both", got)
	}

	d.waitUntil = time.Now()
	if got := d.Subscribed(t.Context(), ro, fired); len(got) != 1 || got[0].Trigger != TriggerRolloutPaused {
		t.Errorf("kept %v with the built-in settings, want the paused one", got)
	}
	ro.Status.PendingNotifications = fired[:1]
	d.Deliver(t.Context(), ro)
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, `on-rollout-paused to hook failed (not sent, given up): notification service "hook" is not configured`) {
			t.Errorf("event %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NotificationFailed event")
	}
	if !d.Settled(types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, fired[0].Key()) {
		t.Error("the notification that cannot be sent is not settled")
	}
}
