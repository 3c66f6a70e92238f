// Package eventrecorder sends the controller's events (events.k8s.io/v1)
// to the API server, remembering only a bounded number of them.
//
// client-go's events broadcaster keeps a copy of every event it sent for 6
// to 12 minutes, so that it can count a repeat as a series. At 5000
// Rollouts updated at once that was 15 MB of the controller's 100 MB heap,
// and the copies were never used: the key of a repeat includes the
// resourceVersion of the object the event is about, which every status
// write of a Rollout changes. This package makes the events with client-go
// (the same names, fields and reporting instance) and sends them itself.
// It remembers the last recentEvents events for seriesWindow and counts a
// repeat among them as client-go does: a series, written when the event
// repeats for the first time and then at most every seriesRefresh.
package eventrecorder

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	// recentEvents is how many sent events are remembered to count
	// repeats: about 1 KB each.
	recentEvents = 1024
	// seriesWindow is how long after it was last seen an event's repeat
	// still counts as one (client-go's).
	seriesWindow = 6 * time.Minute
	// seriesRefresh is how often a series that keeps repeating is written
	// again (client-go's).
	seriesRefresh = 30 * time.Minute
	// queued is how many events may wait to be sent (about 1 KB each,
	// only while a burst drains): enough for every Rollout of a large
	// cluster starting an update at once. More are dropped, as client-go's
	// broadcaster drops what its watchers cannot take.
	queued = 10000
	// senders send events in parallel, so one slow write does not hold
	// up the rest.
	senders = 8
	// tries and retryAfter bound the attempts to send one event while the
	// API server cannot be reached (client-go's).
	tries      = 12
	retryAfter = 10 * time.Second
	// drainFor is how long, at shutdown, the events already queued may
	// still take to be sent.
	drainFor = 5 * time.Second
)

// Sender sends the events its recorders make. It is a manager Runnable
// for every replica: only the leader makes events, but one that loses the
// lead still sends those it made.
type Sender struct {
	sink        events.EventSink
	broadcaster events.EventBroadcaster
	clock       clock.Clock
	queue       chan *eventsv1.Event

	mu     sync.Mutex
	recent *lru.Cache // key → *series

	// dropping is set from the first event dropped until one is queued
	// again, so that a storm logs once.
	dropping atomic.Bool
}

// series is a sent event and its repeats.
type series struct {
	event   *eventsv1.Event // as last sent
	seen    time.Time       // last made
	written time.Time       // last sent
}

// New returns a Sender that writes to sink. The events its recorders make
// from now on wait for Start (at most queued of them).
func New(sink events.EventSink) (*Sender, error) {
	s := &Sender{
		sink:        sink,
		broadcaster: events.NewBroadcaster(sink),
		clock:       clock.RealClock{},
		queue:       make(chan *eventsv1.Event, queued),
		recent:      lru.New(recentEvents),
	}
	ctx := log.IntoContext(context.Background(), log.Log.WithName("events"))
	// The watcher ends with the broadcaster (Start).
	if _, err := s.broadcaster.StartEventWatcher(func(obj runtime.Object) {
		if ev, ok := obj.(*eventsv1.Event); ok {
			s.enqueue(ctx, ev.DeepCopy())
		}
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// ForConfig returns a Sender that writes through the events.k8s.io/v1 API
// of the cluster cfg reaches, over httpClient.
func ForConfig(cfg *rest.Config, httpClient *http.Client) (*Sender, error) {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	client, err := eventsv1client.NewForConfigAndClient(c, httpClient)
	if err != nil {
		return nil, err
	}
	return New(&events.EventSinkImpl{Interface: client})
}

// NewRecorder returns a recorder whose events this Sender sends, reported
// by controller.
func (s *Sender) NewRecorder(scheme *runtime.Scheme, controller string) events.EventRecorder {
	return s.broadcaster.NewRecorder(scheme, controller)
}

// NeedLeaderElection is false: see Sender.
func (s *Sender) NeedLeaderElection() bool { return false }

// Start sends events until ctx ends, then for at most drainFor those
// already made.
func (s *Sender) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				select {
				case ev := <-s.queue:
					s.send(ctx, ev)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	<-ctx.Done()
	s.broadcaster.Shutdown()
	wg.Wait()
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainFor)
	defer cancel()
	for {
		select {
		case ev := <-s.queue:
			s.send(drain, ev)
		default:
			return nil
		}
	}
}

// enqueue queues ev to be sent, or the series it repeats when that is due.
func (s *Sender) enqueue(ctx context.Context, ev *eventsv1.Event) {
	if ev = s.repeat(ev); ev == nil {
		return
	}
	select {
	case s.queue <- ev:
		s.dropping.Store(false)
	default:
		if !s.dropping.Swap(true) {
			log.FromContext(ctx).Error(nil, "Dropping events until the API server takes them: too many waiting to be sent", "waiting", len(s.queue), "reason", ev.Reason, "regarding", ev.Regarding.Name)
		}
	}
}

// key is what makes two events the same event repeated (client-go's).
type key struct {
	eventType, action, reason, controller, instance string
	regarding, related                              corev1.ObjectReference
}

func keyOf(ev *eventsv1.Event) key {
	k := key{eventType: ev.Type, action: ev.Action, reason: ev.Reason, controller: ev.ReportingController, instance: ev.ReportingInstance, regarding: ev.Regarding}
	if ev.Related != nil {
		k.related = *ev.Related
	}
	return k
}

// repeat returns what to send for ev: ev itself, the series it repeats
// (its second occurrence, or one not written for seriesRefresh), or nil
// (a repeat counted only).
func (s *Sender) repeat(ev *eventsv1.Event) *eventsv1.Event {
	now := s.clock.Now()
	k := keyOf(ev)
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.recent.Get(k); ok {
		if sr := v.(*series); now.Sub(sr.seen) < seriesWindow {
			sr.seen = now
			if sr.event.Series == nil {
				sr.event.Series = &eventsv1.EventSeries{Count: 1}
			}
			sr.event.Series.Count++
			sr.event.Series.LastObservedTime = metav1.NewMicroTime(now)
			if sr.event.Series.Count > 2 && now.Sub(sr.written) < seriesRefresh {
				return nil
			}
			sr.written = now
			return sr.event.DeepCopy()
		}
	}
	s.recent.Add(k, &series{event: ev.DeepCopy(), seen: now, written: now})
	return ev
}

// send writes ev, trying again while the API server cannot be reached.
func (s *Sender) send(ctx context.Context, ev *eventsv1.Event) {
	for try := 1; ; try++ {
		err := s.write(ctx, ev)
		if err == nil || !retriable(err, ev) {
			if err != nil {
				log.FromContext(ctx).Error(err, "Event refused: not retrying", "reason", ev.Reason, "regarding", ev.Regarding.Name)
			}
			return
		}
		if try == tries {
			log.FromContext(ctx).Error(err, "Event not sent: giving up", "reason", ev.Reason, "regarding", ev.Regarding.Name, "tries", tries)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait.Jitter(retryAfter, 0.25)):
		}
	}
}

// write creates ev, or sets the count of the series it is; a series whose
// first event is gone is created whole.
func (s *Sender) write(ctx context.Context, ev *eventsv1.Event) error {
	if ev.Series != nil {
		patch, err := json.Marshal(map[string]any{"series": ev.Series})
		if err != nil {
			return err
		}
		if _, err = s.sink.Patch(ctx, ev, patch); !apierrors.IsNotFound(err) {
			return err
		}
	}
	created := ev.DeepCopy()
	created.ResourceVersion = ""
	_, err := s.sink.Create(ctx, created)
	return err
}

// retriable reports whether sending ev again may succeed: the API server
// did not answer, or a series' event appeared between its patch and its
// create. Anything else the API server refused is refused for good.
func retriable(err error, ev *eventsv1.Event) bool {
	var construction *rest.RequestConstructionError
	if errors.As(err, &construction) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	if apierrors.IsAlreadyExists(err) {
		return ev.Series != nil
	}
	return status.Status().Code >= 500 || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err)
}
