package notifications

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/argoproj/notifications-engine/pkg/services"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Notifier turns a Rollout transition into deliveries for the Sender,
// with the settings in force when it is called (SetSettings swaps them when
// the ConfigMap or Secret change).
type Notifier struct {
	settings atomic.Pointer[Settings]
	sender   *Sender
}

// NewNotifier sends through sender; until SetSettings, only the built-in
// triggers and templates, with no service, are known.
func NewNotifier(sender *Sender) *Notifier {
	n := &Notifier{sender: sender}
	n.settings.Store(ParseSettings(nil, nil))
	return n
}

// SetSettings replaces the settings for the next Notify.
func (n *Notifier) SetSettings(s *Settings) { n.settings.Store(s) }

// Notify queues trigger's notifications about ro to everyone subscribed:
// on ro, on its Namespace (namespaceAnnotations) or in the ConfigMap. run
// is the AnalysisRun the transition is about, if any.
//
// It returns ErrQueueFull (nothing queued: call again later), or an error
// about the trigger or the variables; a destination whose service is not
// configured fails at once through the Sender (metric and OnFailure).
func (n *Notifier) Notify(trigger Trigger, ro *v1alpha1.Rollout, namespaceAnnotations map[string]string, run *v1alpha1.AnalysisRun) error {
	ds, err := n.Deliveries(trigger, ro, namespaceAnnotations, run)
	if err != nil {
		return err
	}
	return n.sender.Enqueue(ds...)
}

// Subscribed reports whether anyone is subscribed to trigger for ro.
func (n *Notifier) Subscribed(trigger Trigger, ro *v1alpha1.Rollout, namespaceAnnotations map[string]string) bool {
	s := n.settings.Load()
	return len(Destinations(s.Config, ro.Labels, ro.Annotations, namespaceAnnotations)[string(trigger)]) > 0
}

// Deliveries are trigger's notifications about ro, one per subscribed
// destination and condition of the trigger that fires: a condition
// without `when` always fires (the transition is the condition), one with
// `when` if it holds. Templates are rendered when sent, from the state
// given now.
func (n *Notifier) Deliveries(trigger Trigger, ro *v1alpha1.Rollout, namespaceAnnotations map[string]string, run *v1alpha1.AnalysisRun) ([]Delivery, error) {
	s := n.settings.Load()
	if s.API == nil {
		return nil, fmt.Errorf("notification settings are unusable: %w", errors.Join(s.Problems...))
	}
	dests := Destinations(s.Config, ro.Labels, ro.Annotations, namespaceAnnotations)[string(trigger)]
	if len(dests) == 0 {
		return nil, nil
	}
	vars, err := Vars(ro, run, s.DashboardURL)
	if err != nil {
		return nil, fmt.Errorf("notification variables: %w", err)
	}
	conditions, err := s.RunTrigger(string(trigger), vars)
	if err != nil {
		return nil, err
	}
	var sends [][]string
	for _, c := range conditions {
		if c.Fires {
			sends = append(sends, c.Send)
		}
	}
	sort.SliceStable(dests, func(i, j int) bool {
		return dests[i].Service+"\x00"+dests[i].Recipient < dests[j].Service+"\x00"+dests[j].Recipient
	})
	var ds []Delivery
	for _, dest := range dests {
		for _, templates := range sends {
			d := n.delivery(s, trigger, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, dest, templates, vars)
			d.UID = ro.UID
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// Condition is one of a trigger's conditions, evaluated.
type Condition struct {
	// When is the condition's expression; empty, it always fires: the
	// transition that fires the trigger is the condition.
	When string
	// Send names the templates sent when it fires.
	Send  []string
	Fires bool
}

// RunTrigger evaluates the conditions of trigger on vars (see Vars), as
// Notify does.
func (s *Settings) RunTrigger(trigger string, vars map[string]any) ([]Condition, error) {
	if s.API == nil {
		return nil, fmt.Errorf("notification settings are unusable: %w", errors.Join(s.Problems...))
	}
	conditions, ok := s.Config.Triggers[trigger]
	if !ok {
		return nil, fmt.Errorf("trigger %q is not configured", trigger)
	}
	results, err := s.API.RunTrigger(trigger, vars)
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w", trigger, err)
	}
	out := make([]Condition, len(conditions))
	for i, c := range conditions {
		out[i] = Condition{When: c.When, Send: c.Send, Fires: c.When == "" || results[i].Triggered}
	}
	return out, nil
}

func (n *Notifier) delivery(s *Settings, trigger Trigger, ro types.NamespacedName, dest services.Destination, templates []string, vars map[string]any) Delivery {
	d := Delivery{
		Rollout:   ro,
		Trigger:   string(trigger),
		Service:   dest.Service,
		Recipient: dest.Recipient,
		Send:      func() error { return s.API.Send(vars, templates, dest) },
		Redact:    s.Redact,
	}
	if _, ok := s.API.GetNotificationServices()[dest.Service]; !ok {
		d.Permanent = fmt.Errorf("notification service %q is not configured (or could not be used)", dest.Service)
	}
	return d
}
