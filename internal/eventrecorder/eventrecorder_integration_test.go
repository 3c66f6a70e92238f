//go:build integration

package eventrecorder

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// TestIntegrationEventsReachTheAPI: a recorder's events are created
// through events.k8s.io/v1 with the fields client-go gives them, a repeat
// becomes the first event's series, and the sender stops with its
// context.
func TestIntegrationEventsReachTheAPI(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	if err := env.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ForConfig(env.Config, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	rec := s.NewRecorder(apis.NewScheme(), "rollouts-controller")
	// Made before the sender starts: it waits in the queue.
	rec.Eventf(cm, nil, corev1.EventTypeWarning, "ReconcileError", "Reconcile", "patching %s: %s", "web", "refused")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Start(runCtx) }()
	rec.Eventf(cm, nil, corev1.EventTypeWarning, "ReconcileError", "Reconcile", "patching %s: %s", "web", "refused")
	rec.Eventf(cm, nil, corev1.EventTypeNormal, "RolloutCompleted", "Complete", "done")

	var got []eventsv1.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		got = list.Items
		if len(got) == 2 && seriesCount(got) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) != 2 || seriesCount(got) != 2 {
		t.Fatalf("events: want a ReconcileError with a series of 2 and a RolloutCompleted, got %+v", got)
	}
	for _, ev := range got {
		if ev.ReportingController != "rollouts-controller" || ev.Regarding.Name != "web" || ev.Regarding.Kind != "ConfigMap" || ev.EventTime.IsZero() {
			t.Errorf("event %s: reporting %q, regarding %s %s, eventTime %v", ev.Reason, ev.ReportingController, ev.Regarding.Kind, ev.Regarding.Name, ev.EventTime)
		}
		if ev.Reason == "ReconcileError" && (ev.Note != "patching web: refused" || ev.Action != "Reconcile" || ev.Type != corev1.EventTypeWarning) {
			t.Errorf("ReconcileError: note %q, action %q, type %q", ev.Note, ev.Action, ev.Type)
		}
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sender: %v", err)
		}
	case <-time.After(drainFor + 5*time.Second):
		t.Error("sender did not stop with its context")
	}
}

// seriesCount is the count of the ReconcileError's series (0: none).
func seriesCount(evs []eventsv1.Event) int32 {
	for _, ev := range evs {
		if ev.Reason == "ReconcileError" && ev.Series != nil {
			return ev.Series.Count
		}
	}
	return 0
}
