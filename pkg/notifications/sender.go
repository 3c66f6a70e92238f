package notifications

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Results of a delivery attempt, the result label of
// notification_deliveries_total.
const (
	ResultSuccess = "success" // delivered
	ResultRetry   = "retry"   // an attempt failed; another is scheduled
	ResultFailed  = "failed"  // given up: attempts exhausted, or it cannot succeed
	ResultDropped = "dropped" // refused by Enqueue: the queue was full
)

// ErrQueueFull is Enqueue's answer when the queue has no room for all the
// deliveries given.
var ErrQueueFull = errors.New("notification queue is full")

// Delivery is one notification to one destination.
type Delivery struct {
	Rollout types.NamespacedName
	// UID is the Rollout's, for the events about the delivery.
	UID       types.UID
	Trigger   string
	Service   string
	Recipient string
	// Send delivers it; called once per attempt, never twice at once for
	// the same destination.
	Send func() error
	// Redact hides Secret values in Send's errors; nil hides nothing.
	Redact func(string) string
	// Permanent, when set, is the reason Send cannot succeed: the delivery
	// fails at once, without an attempt.
	Permanent error
	// Done, when set, is called once the delivery has ended: delivered,
	// or given up. Not called for a delivery Enqueue refused, nor for
	// those still queued when the Sender stops.
	Done func(delivered bool)
}

// Failure is one failed attempt, given to SenderOptions.OnFailure (the
// controller turns it into a Warning event NotificationFailed).
type Failure struct {
	Rollout   types.NamespacedName
	UID       types.UID
	Trigger   string
	Service   string
	Recipient string
	Attempt   int
	// Final: no attempt follows.
	Final bool
	// Err has Secret values hidden.
	Err error
}

// SenderOptions tune a Sender; zero values take the defaults.
type SenderOptions struct {
	// Capacity bounds the deliveries queued or in flight (default 1000).
	Capacity int
	// MaxAttempts per delivery (default 5).
	MaxAttempts int
	// InitialBackoff before the second attempt (default 1s), doubling up
	// to MaxBackoff (default 1m).
	InitialBackoff, MaxBackoff time.Duration
	// Concurrency bounds the attempts running at once (default 4).
	Concurrency int
	// AttemptTimeout frees an attempt's concurrency slot when the service
	// has not answered by then (default 30s); see Sender.
	AttemptTimeout time.Duration
	Clock          clock.WithDelayedExecution
	OnFailure      func(Failure)
	Log            logr.Logger
}

// Sender delivers notifications off the reconcile path. Deliveries wait in
// one FIFO lane per destination (service and recipient): a lane sends one
// delivery at a time, in order, and retries its head with exponential
// backoff, so a failing destination holds back only its own later messages
// and order per destination is kept.
//
// The queue is bounded: when it is full, Enqueue refuses the new
// deliveries (counted as "dropped") rather than dropping old ones, so the
// caller knows, and can keep the transition to notify about for later; a
// dropped old delivery would be lost silently after the caller recorded it
// as notified.
//
// The engine's services take no context and some have no timeout: an
// attempt still running after AttemptTimeout gives its concurrency slot
// back, and its lane keeps waiting for the answer (never sending twice at
// once to a destination). Each lane has at most one goroutine, and lanes
// are bounded by Capacity.
type Sender struct {
	opts       SenderOptions
	deliveries *prometheus.CounterVec
	slots      chan struct{}

	mu      sync.Mutex
	lanes   map[laneKey]*lane
	queued  int
	stopped bool
	running sync.WaitGroup
}

type laneKey struct{ service, recipient string }

type lane struct {
	key   laneKey
	items []*queued
	// retry runs the lane again after its head's backoff.
	retry clock.Timer
}

type queued struct {
	Delivery
	attempts int
}

// NewSender registers notification_deliveries_total with reg.
func NewSender(reg prometheus.Registerer, opts SenderOptions) (*Sender, error) {
	if opts.Capacity <= 0 {
		opts.Capacity = 1000
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	s := &Sender{
		opts: opts,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notification_deliveries_total",
			Help: "Notification delivery attempts, by trigger, service and result (success, retry, failed, dropped).",
		}, []string{"trigger", "service", "result"}),
		slots: make(chan struct{}, opts.Concurrency),
		lanes: map[laneKey]*lane{},
	}
	if err := reg.Register(s.deliveries); err != nil {
		return nil, err
	}
	return s, nil
}

// Enqueue queues all of ds, or none of them (ErrQueueFull); it never waits
// for a delivery.
func (s *Sender) Enqueue(ds ...Delivery) error {
	var ended []Delivery
	defer func() {
		for _, d := range ended {
			d.done(false)
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.queued+len(ds) > s.opts.Capacity {
		for _, d := range ds {
			s.count(d, ResultDropped)
		}
		return fmt.Errorf("%w (%d of %d queued)", ErrQueueFull, s.queued, s.opts.Capacity)
	}
	for _, d := range ds {
		if d.Permanent != nil {
			s.count(d, ResultFailed)
			s.fail(&queued{Delivery: d}, d.Permanent, true)
			ended = append(ended, d)
			continue
		}
		key := laneKey{d.Service, d.Recipient}
		l, busy := s.lanes[key]
		if !busy {
			l = &lane{key: key}
			s.lanes[key] = l
		}
		l.items = append(l.items, &queued{Delivery: d})
		s.queued++
		if !busy {
			s.running.Add(1)
			go s.run(l)
		}
	}
	return nil
}

// Stop sends no more attempts and waits for those running, or for done to
// be closed; queued deliveries are lost (the controller's record of what it
// notified decides what a new leader sends again).
func (s *Sender) Stop(done <-chan struct{}) {
	s.mu.Lock()
	s.stopped = true
	for key, l := range s.lanes {
		if l.retry != nil && l.retry.Stop() {
			delete(s.lanes, key)
			s.queued -= len(l.items)
			s.running.Done()
		}
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.running.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-done:
	}
}

// run sends l's deliveries in order until it is empty, or until its head
// waits for a retry; the retry's timer runs it again.
func (s *Sender) run(l *lane) {
	defer s.running.Done()
	for {
		s.mu.Lock()
		l.retry = nil
		if s.stopped || len(l.items) == 0 {
			delete(s.lanes, l.key)
			s.queued -= len(l.items)
			s.mu.Unlock()
			return
		}
		head := l.items[0]
		s.mu.Unlock()

		err := s.attempt(head)

		s.mu.Lock()
		head.attempts++
		switch {
		case err == nil:
			s.count(head.Delivery, ResultSuccess)
		case head.attempts >= s.opts.MaxAttempts:
			s.count(head.Delivery, ResultFailed)
			s.fail(head, err, true)
			err = errGivenUp
		default:
			s.count(head.Delivery, ResultRetry)
			s.fail(head, err, false)
			s.running.Add(1)
			l.retry = s.opts.Clock.AfterFunc(s.backoff(head.attempts), func() { go s.run(l) })
			s.mu.Unlock()
			return
		}
		l.items = l.items[1:]
		s.queued--
		s.mu.Unlock()
		head.done(err == nil)
	}
}

// errGivenUp marks a delivery whose attempts are exhausted.
var errGivenUp = errors.New("given up")

func (d *Delivery) done(delivered bool) {
	if d.Done != nil {
		d.Done(delivered)
	}
}

// attempt sends d once, holding a concurrency slot at most AttemptTimeout.
func (s *Sender) attempt(d *queued) error {
	s.slots <- struct{}{}
	done := make(chan error, 1)
	go func() { done <- d.Send() }()
	timeout := s.opts.Clock.NewTimer(s.opts.AttemptTimeout)
	defer timeout.Stop()
	select {
	case err := <-done:
		<-s.slots
		return err
	case <-timeout.C():
		<-s.slots
		s.opts.Log.Info("Notification service is slow: waiting for it without holding a slot", "rollout", d.Rollout, "trigger", d.Trigger, "service", d.Service, "after", s.opts.AttemptTimeout)
		return <-done
	}
}

func (s *Sender) backoff(attempts int) time.Duration {
	d := s.opts.InitialBackoff
	for i := 1; i < attempts && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

// fail reports a failed attempt; called with s.mu held, so OnFailure must
// not call back into the Sender.
func (s *Sender) fail(d *queued, err error, final bool) {
	msg := err.Error()
	if d.Redact != nil {
		msg = d.Redact(msg)
	}
	f := Failure{Rollout: d.Rollout, UID: d.UID, Trigger: d.Trigger, Service: d.Service, Recipient: d.Recipient, Attempt: d.attempts, Final: final, Err: errors.New(msg)}
	s.opts.Log.Info("Notification failed", "rollout", d.Rollout, "trigger", d.Trigger, "service", d.Service, "attempt", d.attempts, "final", final, "error", msg)
	if s.opts.OnFailure != nil {
		s.opts.OnFailure(f)
	}
}

func (s *Sender) count(d Delivery, result string) {
	s.deliveries.WithLabelValues(d.Trigger, d.Service, result).Inc()
}
