package notifications

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// ReasonNotificationFailed is the Warning event on a Rollout for each
// failed delivery attempt.
const ReasonNotificationFailed = "NotificationFailed"

// queueFullRetry is how soon transitions the full queue refused are
// offered again.
const queueFullRetry = 5 * time.Second

// Dispatcher is what the Rollout reconciler uses to notify (its
// rollout.Notifications): it tells which transitions someone is subscribed
// to, delivers the ones the reconciler recorded in a Rollout's status
// through the Sender, and reports each one settled once all its
// deliveries have ended, so that the reconciler removes it from the
// status. It runs only where the reconciler runs: on the leader.
//
// A record is delivered once: the Dispatcher remembers what it queued, and
// a new leader delivers what the status still lists. Only a process that
// dies after a delivery and before the status says so sends it twice.
type Dispatcher struct {
	notifier *Notifier
	// runs reads the AnalysisRuns of the analysis triggers.
	runs client.Reader
	// namespaceAnnotations reads a Namespace's annotations, for the
	// subscriptions on it; nil when the controller cannot read Namespaces.
	namespaceAnnotations func(ctx context.Context, name string) (map[string]string, error)
	recorder             events.EventRecorder
	log                  logr.Logger

	// loaded is closed once settings are in force (SetSettings); nothing
	// waits for it after waitUntil.
	loaded     chan struct{}
	loadedOnce sync.Once
	waitUntil  time.Time
	lateOnce   sync.Once

	mu       sync.Mutex
	rollouts map[types.NamespacedName]map[string]*record
	settled  chan event.GenericEvent
}

// settingsWait is how long after the Dispatcher is made reconciles wait
// for the first settings: the time their informer takes to sync. Settings
// that cannot be read (a Role missing) do not hold up every transition.
const settingsWait = 10 * time.Second

// record is one pending notification handed to the Sender: settled once
// none of its deliveries remains.
type record struct{ remaining int }

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	Sender SenderOptions
	// Runs reads AnalysisRuns.
	Runs client.Reader
	// NamespaceAnnotations reads a Namespace's annotations; nil leaves
	// subscriptions on Namespaces out.
	NamespaceAnnotations func(ctx context.Context, name string) (map[string]string, error)
	Recorder             events.EventRecorder
	Log                  logr.Logger
}

// NewDispatcher makes a Dispatcher and its Sender, whose metric it
// registers with reg; each failed attempt is a NotificationFailed event.
func NewDispatcher(reg prometheus.Registerer, opts DispatcherOptions) (*Dispatcher, error) {
	d := &Dispatcher{
		runs:                 opts.Runs,
		namespaceAnnotations: opts.NamespaceAnnotations,
		recorder:             opts.Recorder,
		log:                  opts.Log,
		rollouts:             map[types.NamespacedName]map[string]*record{},
		settled:              make(chan event.GenericEvent, 1024),
		loaded:               make(chan struct{}),
		waitUntil:            time.Now().Add(settingsWait),
	}
	sopts := opts.Sender
	sopts.Log = opts.Log
	sopts.OnFailure = d.failed
	sender, err := NewSender(reg, sopts)
	if err != nil {
		return nil, err
	}
	d.notifier = NewNotifier(sender)
	return d, nil
}

// SetSettings puts s in force (WatchSettings calls it on every change).
// Until the first call, Subscribed and Deliver wait for settings, a little.
func (d *Dispatcher) SetSettings(s *Settings) {
	d.notifier.SetSettings(s)
	d.loadedOnce.Do(func() { close(d.loaded) })
}

// awaitSettings waits for the first settings until waitUntil, then goes on
// with those in force (the built-in ones: no service), saying so once. It
// is false only when ctx ended first.
func (d *Dispatcher) awaitSettings(ctx context.Context) bool {
	select {
	case <-d.loaded:
		return true
	default:
	}
	timer := time.NewTimer(max(time.Until(d.waitUntil), 0))
	defer timer.Stop()
	select {
	case <-d.loaded:
	case <-timer.C:
		d.lateOnce.Do(func() {
			d.log.Error(errors.New("not read yet"), "Notification settings not read in time: going on with the built-in ones, without services, until they are", "after", settingsWait)
		})
	case <-ctx.Done():
		return false
	}
	return true
}

// Subscribed keeps the transitions of ro someone is subscribed to. If ctx
// ends before the settings are read, it keeps them all: delivery, with the
// settings, settles at once those nobody is subscribed to.
func (d *Dispatcher) Subscribed(ctx context.Context, ro *v1alpha1.Rollout, fired []v1alpha1.PendingNotification) []v1alpha1.PendingNotification {
	if !d.awaitSettings(ctx) {
		return fired
	}
	ns := d.namespace(ctx, ro.Namespace)
	var out []v1alpha1.PendingNotification
	for _, n := range fired {
		if d.notifier.Subscribed(n.Trigger, ro, ns) {
			out = append(out, n)
		}
	}
	return out
}

// Deliver queues each of ro's pending notifications not queued yet, and
// forgets those no longer pending. ro's status is as written.
func (d *Dispatcher) Deliver(ctx context.Context, ro *v1alpha1.Rollout) {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	pending := ro.Status.PendingNotifications
	var todo []v1alpha1.PendingNotification
	d.mu.Lock()
	known := d.rollouts[key]
	for k := range known {
		if !slices.ContainsFunc(pending, func(n v1alpha1.PendingNotification) bool { return n.Key() == k }) {
			delete(known, k)
		}
	}
	for _, n := range pending {
		if _, ok := known[n.Key()]; !ok {
			todo = append(todo, n)
		}
	}
	d.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	if !d.awaitSettings(ctx) {
		// Nothing is sent before the settings are read: a service not
		// known yet would fail for good. Offered again soon.
		time.AfterFunc(time.Second, func() { d.settle(key) })
		return
	}
	ns := d.namespace(ctx, ro.Namespace)
	for _, n := range todo {
		d.start(ctx, ro, n, ns)
	}
}

// start hands one pending notification to the Sender.
func (d *Dispatcher) start(ctx context.Context, ro *v1alpha1.Rollout, n v1alpha1.PendingNotification, ns map[string]string) {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	// The Rollout as the transition left it, as far as the record tells.
	at := ro.DeepCopy()
	at.Status.CurrentStepIndex = n.Step
	var run *v1alpha1.AnalysisRun
	if n.AnalysisRun != "" {
		run = &v1alpha1.AnalysisRun{}
		if err := d.runs.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: n.AnalysisRun}, run); err != nil {
			d.log.Info("Notifying without the AnalysisRun", "rollout", key, "analysisRun", n.AnalysisRun, "error", err.Error())
			run = nil
		}
	}
	ds, err := d.notifier.Deliveries(n.Trigger, at, ns, run)
	rec := &record{remaining: len(ds)}
	d.mu.Lock()
	if d.rollouts[key] == nil {
		d.rollouts[key] = map[string]*record{}
	}
	d.rollouts[key][n.Key()] = rec
	d.mu.Unlock()
	if err != nil {
		// Nothing can be sent for it (a trigger no longer configured, a
		// template that fails on this Rollout): said once, and settled.
		d.log.Error(err, "Notification cannot be sent", "rollout", key, "trigger", n.Trigger)
		d.recorder.Eventf(at, nil, corev1.EventTypeWarning, ReasonNotificationFailed, ReasonNotificationFailed,
			"%s: %s", n.Trigger, d.notifier.settings.Load().Redact(err.Error()))
	}
	if len(ds) == 0 {
		d.settle(key)
		return
	}
	for i := range ds {
		ds[i].Done = func(bool) {
			d.mu.Lock()
			rec.remaining--
			last := rec.remaining == 0
			d.mu.Unlock()
			if last {
				d.settle(key)
			}
		}
	}
	if err := d.notifier.sender.Enqueue(ds...); err != nil {
		// Offered again on a later reconcile.
		d.log.Info("Notification not queued: trying again later", "rollout", key, "trigger", n.Trigger, "error", err.Error())
		d.mu.Lock()
		delete(d.rollouts[key], n.Key())
		d.mu.Unlock()
		time.AfterFunc(queueFullRetry, func() { d.settle(key) })
	}
}

// Settled reports whether every delivery of the notification keyed key
// has ended, delivered or given up.
func (d *Dispatcher) Settled(ro types.NamespacedName, key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	rec, ok := d.rollouts[ro][key]
	return ok && rec.remaining <= 0
}

// Forget drops what is known of a Rollout that is gone.
func (d *Dispatcher) Forget(ro types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.rollouts, ro)
}

// Settlements names Rollouts with a notification newly settled.
func (d *Dispatcher) Settlements() <-chan event.GenericEvent { return d.settled }

// Stop sends no more, waiting for attempts in flight until done closes.
func (d *Dispatcher) Stop(done <-chan struct{}) { d.notifier.sender.Stop(done) }

// settle asks for a reconcile of ro, which removes what has settled.
func (d *Dispatcher) settle(ro types.NamespacedName) {
	e := event.GenericEvent{Object: &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name}}}
	select {
	case d.settled <- e:
	default:
		go func() { d.settled <- e }()
	}
}

func (d *Dispatcher) namespace(ctx context.Context, name string) map[string]string {
	if d.namespaceAnnotations == nil {
		return nil
	}
	ann, err := d.namespaceAnnotations(ctx, name)
	if err != nil && !apierrors.IsNotFound(err) {
		d.log.Info("Subscriptions on the namespace left out: it could not be read", "namespace", name, "error", err.Error())
	}
	return ann
}

// failed reports a failed attempt as a Warning event on the Rollout.
func (d *Dispatcher) failed(f Failure) {
	next := "retrying"
	if f.Final {
		next = "given up"
	}
	to := f.Service
	if f.Recipient != "" {
		to += ":" + f.Recipient
	}
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: f.Rollout.Namespace, Name: f.Rollout.Name, UID: f.UID}}
	attempt := fmt.Sprintf("attempt %d", f.Attempt)
	if f.Attempt == 0 {
		attempt = "not sent"
	}
	d.recorder.Eventf(ro, nil, corev1.EventTypeWarning, ReasonNotificationFailed, ReasonNotificationFailed,
		"%s to %s failed (%s, %s): %v", f.Trigger, to, attempt, next, f.Err)
}
