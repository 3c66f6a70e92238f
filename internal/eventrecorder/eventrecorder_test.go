package eventrecorder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// sink records what is sent; failWith, while set, answers every write.
type sink struct {
	mu       sync.Mutex
	writes   []string
	failWith error
	missing  bool // a patched event is gone
}

func (k *sink) record(w string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes = append(k.writes, w)
	return k.failWith
}

func (k *sink) Create(_ context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	count := int32(1)
	if ev.Series != nil {
		count = ev.Series.Count
	}
	return ev, k.record(fmt.Sprintf("create %s %d", ev.Reason, count))
}

func (k *sink) Update(_ context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return ev, k.record("update " + ev.Reason)
}

func (k *sink) Patch(_ context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	if err := k.record(fmt.Sprintf("patch %s %s", ev.Reason, data)); err != nil {
		return nil, err
	}
	if k.missing {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, ev.Name)
	}
	return ev, nil
}

func newTestSender(t *testing.T) (*Sender, *sink, *clocktesting.FakeClock) {
	t.Helper()
	k := &sink{}
	s, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broadcaster.Shutdown)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	s.clock = clk
	return s, k, clk
}

func event(reason, rv string) *eventsv1.Event {
	return &eventsv1.Event{
		Type: corev1.EventTypeWarning, Reason: reason, Action: reason, Note: "the API server said no",
		ReportingController: "rollouts-controller", ReportingInstance: "rollouts-controller-host",
		Regarding: corev1.ObjectReference{Kind: "Rollout", Namespace: "ns", Name: "web", ResourceVersion: rv},
	}
}

// sendAll sends what is queued, in order.
func sendAll(s *Sender) {
	for {
		select {
		case ev := <-s.queue:
			s.send(context.Background(), ev)
		default:
			return
		}
	}
}

// TestRepeatsBecomeASeries: an event made again while remembered is
// written as a series on its second occurrence, then counted only, and
// written again once seriesRefresh has passed; past seriesWindow without a
// repeat, it is a new event. An event about another version of the object
// is another event.
func TestRepeatsBecomeASeries(t *testing.T) {
	s, k, clk := newTestSender(t)
	ctx := context.Background()
	for range 3 {
		s.enqueue(ctx, event("ReconcileError", "7"))
		clk.Step(time.Minute)
	}
	s.enqueue(ctx, event("ReconcileError", "8"))
	for range 30 {
		clk.Step(time.Minute)
		s.enqueue(ctx, event("ReconcileError", "7"))
	}
	clk.Step(seriesWindow)
	s.enqueue(ctx, event("ReconcileError", "7"))
	sendAll(s)
	want := []string{
		"create ReconcileError 1",
		`patch ReconcileError {"series":{"count":2,"lastObservedTime":"2026-12-05T00:01:00.000000Z"}}`,
		"create ReconcileError 1", // version 8
		// 30 minutes after the first patch (00:01): the 31st occurrence.
		`patch ReconcileError {"series":{"count":31,"lastObservedTime":"2026-12-05T00:31:00.000000Z"}}`,
		"create ReconcileError 1", // after the window
	}
	if diff := cmp.Diff(want, k.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

// TestSeriesOfAGoneEventIsCreated: a series whose first event is gone
// (expired, deleted) is created whole, with its count.
func TestSeriesOfAGoneEventIsCreated(t *testing.T) {
	s, k, _ := newTestSender(t)
	k.missing = true
	s.enqueue(context.Background(), event("ReconcileError", "7"))
	s.enqueue(context.Background(), event("ReconcileError", "7"))
	sendAll(s)
	want := []string{"create ReconcileError 1", `patch ReconcileError {"series":{"count":2,"lastObservedTime":"2026-12-05T00:00:00.000000Z"}}`, "create ReconcileError 2"}
	if diff := cmp.Diff(want, k.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

// TestMemoryIsBounded: however many different events are made, at most
// recentEvents are remembered, and at most queued wait to be sent; a storm
// of drops logs once, and the next one after an event was queued again
// once more.
func TestMemoryIsBounded(t *testing.T) {
	s, _, _ := newTestSender(t)
	var logged []string
	ctx := log.IntoContext(context.Background(), funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{}))
	made := 0
	storm := func(n int) {
		for range n {
			s.enqueue(ctx, event("NewReplicaSetCreated", fmt.Sprint(made)))
			made++
		}
	}
	storm(3 * queued)
	if got := s.recent.Len(); got != recentEvents {
		t.Errorf("remembered %d events, want %d", got, recentEvents)
	}
	if got := len(s.queue); got != queued {
		t.Errorf("%d events queued, want %d", got, queued)
	}
	if len(logged) != 1 {
		t.Errorf("a storm of drops logged %d times, want once: %q", len(logged), logged)
	}
	<-s.queue
	storm(3) // one queued, two dropped
	if len(logged) != 2 {
		t.Errorf("the next storm logged %d times in all, want 2: %q", len(logged), logged)
	}
}

// TestRetriable: only a write the API server did not answer, or refused
// for a reason that may pass, is tried again.
func TestRetriable(t *testing.T) {
	gr := schema.GroupResource{Group: "events.k8s.io", Resource: "events"}
	series := event("ReconcileError", "7")
	series.Series = &eventsv1.EventSeries{Count: 2}
	for _, tc := range []struct {
		name string
		err  error
		ev   *eventsv1.Event
		want bool
	}{
		{"no answer", errors.New("connection refused"), event("A", "1"), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), event("A", "1"), true},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), event("A", "1"), true},
		{"invalid", apierrors.NewBadRequest("note too long"), event("A", "1"), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), event("A", "1"), false},
		{"namespace terminating", apierrors.NewForbidden(gr, "x", errors.New("namespace ns is being terminated")), event("A", "1"), false},
		{"exists", apierrors.NewAlreadyExists(gr, "x"), event("A", "1"), false},
		{"series' event appeared meanwhile", apierrors.NewAlreadyExists(gr, "x"), series, true},
		{"request not made", &rest.RequestConstructionError{Err: errors.New("bad")}, event("A", "1"), false},
	} {
		if got := retriable(tc.err, tc.ev); got != tc.want {
			t.Errorf("%s: retriable %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSendGivesUp: an event the API server refuses for good is tried
// once; one it does not answer is tried until the context ends.
func TestSendGivesUp(t *testing.T) {
	s, k, _ := newTestSender(t)
	k.failWith = apierrors.NewBadRequest("invalid")
	s.send(context.Background(), event("A", "1"))
	if len(k.writes) != 1 {
		t.Errorf("refused event tried %d times, want 1", len(k.writes))
	}
	k.writes, k.failWith = nil, errors.New("connection refused")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.send(ctx, event("A", "1"))
	if len(k.writes) != 1 {
		t.Errorf("unanswered event tried %d times before the context ended, want 1", len(k.writes))
	}
}
