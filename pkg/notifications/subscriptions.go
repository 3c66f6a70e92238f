package notifications

import (
	"github.com/argoproj/notifications-engine/pkg/api"
	"github.com/argoproj/notifications-engine/pkg/services"
	"github.com/argoproj/notifications-engine/pkg/subscriptions"
)

// AnnotationPrefix is our subscription annotations' prefix:
// notifications.rollouts.kubeseed.io/subscribe.<trigger>.<service>: <recipients>,
// recipients separated by ";". Without the trigger, the default triggers
// (for the service, or all) apply.
const AnnotationPrefix = "notifications.rollouts.kubeseed.io"

// The engine reads annotations under one process-wide prefix; ours is the
// only use of the engine in this binary.
func init() { subscriptions.SetAnnotationPrefix(AnnotationPrefix) }

// Destinations are who subscribed to each trigger: the ConfigMap's
// subscriptions that match the Rollout's labels, and the annotations on the
// Rollout and on its Namespace (both apply; a destination named twice is
// sent to once).
func Destinations(cfg api.Config, labels, annotations, namespaceAnnotations map[string]string) services.Destinations {
	dests := cfg.GetGlobalDestinations(labels)
	for _, a := range []map[string]string{namespaceAnnotations, annotations} {
		dests.Merge(subscriptions.NewAnnotations(a).GetDestinations(cfg.DefaultTriggers, cfg.ServiceDefaultTriggers))
	}
	return dests.Dedup()
}
