// Package traffic shifts traffic between the stable and canary revisions of
// a Rollout through the user's own routing objects. Each router owns only the
// parts it adds (a backendRef, a weight) and leaves everything else as the
// user wrote it.
package traffic

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Router shifts traffic for a Rollout on one kind of routing object.
type Router interface {
	// Name identifies the router in messages and logs.
	Name() string
	// Validate checks that the objects the Rollout names exist and route to
	// its stable Service. A problem the user must fix is an *InvalidError.
	Validate(ctx context.Context, ro *v1alpha1.Rollout) error
	// SetWeight sends w.Canary (out of maxTrafficWeight) to the canary
	// Service, each extra destination its weight, and the rest to the stable
	// Service. A router that cannot split traffic further than two ways
	// returns an *InvalidError for extra destinations.
	SetWeight(ctx context.Context, ro *v1alpha1.Rollout, w Weights) error
	// Verify reads the objects back and reports whether they carry w.
	Verify(ctx context.Context, ro *v1alpha1.Rollout, w Weights) (bool, error)
	// SetManagedRoutes makes the objects carry exactly these managed routes,
	// in this order, above the user's own; nil removes every one it added.
	SetManagedRoutes(ctx context.Context, ro *v1alpha1.Rollout, routes []ManagedRoute) error
	// Release gives the objects back to the user when the Rollout goes: all
	// traffic to the stable Service, the extra destinations and managed
	// routes removed, and the ManagedByAnnotation dropped. Objects already
	// gone are skipped; a forbidden write is returned.
	Release(ctx context.Context, ro *v1alpha1.Rollout, extra []Destination) error
}

// Weights is the split a router carries. Extra destinations (experiment
// templates) get their weights beside the canary's; one with weight 0 was
// routed to before and must be removed.
type Weights struct {
	Canary int32
	Extra  []Destination
}

// Destination is an extra Service taking a share of the traffic.
type Destination struct {
	Service string
	Weight  int32
}

// Stable is what is left for the stable Service out of total.
func (w Weights) Stable(total int32) int32 {
	stable := total - w.Canary
	for _, d := range w.Extra {
		stable -= d.Weight
	}
	return max(stable, 0)
}

// HasExtra reports whether any extra destination takes traffic or must be
// removed.
func (w Weights) HasExtra() bool { return len(w.Extra) > 0 }

// WeightedExperiment returns the first experiment template of the Rollout's
// steps that asks for traffic, as "step N template T", or "".
func WeightedExperiment(ro *v1alpha1.Rollout) string {
	for i, s := range ro.Spec.Strategy.Canary.Steps {
		if s.Experiment == nil {
			continue
		}
		for _, t := range s.Experiment.Templates {
			if t.Weight != nil && *t.Weight > 0 {
				return fmt.Sprintf("step %d template %q", i, t.Name)
			}
		}
	}
	return ""
}

// InvalidError is a problem with the Rollout or the objects it names that
// only the user can fix.
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string { return e.Message }

// Invalid returns an *InvalidError with a formatted message.
func Invalid(format string, args ...any) error {
	return &InvalidError{Message: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is (or wraps) an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// Factory builds a router. c writes and reads through the cache; live
// reads the API server, for verifying a write.
type Factory func(c client.Client, live client.Reader) Router

// Registry holds the routers the reconciler can use, by the name of their
// field under spec.strategy.canary.trafficRouting.
type Registry map[string]Factory

// For returns the routers a Rollout asks for. A router the registry lacks is
// an *InvalidError naming it.
func (r Registry) For(c client.Client, live client.Reader, ro *v1alpha1.Rollout) ([]Router, error) {
	tr := ro.Spec.Strategy.Canary.TrafficRouting
	if tr == nil {
		return nil, nil
	}
	var names []string
	if tr.Istio != nil {
		names = append(names, "istio")
	}
	if tr.GatewayAPI != nil {
		names = append(names, "gatewayAPI")
	}
	if tr.Nginx != nil {
		names = append(names, "nginx")
	}
	routers := make([]Router, 0, len(names))
	for _, n := range names {
		f, ok := r[n]
		if !ok {
			return nil, Invalid("spec.strategy.canary.trafficRouting.%s is not supported by this controller version yet", n)
		}
		routers = append(routers, f(c, live))
	}
	return routers, nil
}

// ManagedRoute is a route the controller adds for a step: requests matching
// headers go to the canary (Header), or matching requests are mirrored to it
// (Mirror). Exactly one is set.
type ManagedRoute struct {
	Name   string
	Header []v1alpha1.HeaderMatch
	Mirror *v1alpha1.SetMirrorRoute
}

// ActiveRoutes folds the steps before index into the managed routes in force,
// ordered by spec.strategy.canary.trafficRouting.managedRoutes (highest
// precedence first). A setHeaderRoute or setMirrorRoute without match removes
// its route.
func ActiveRoutes(c *v1alpha1.CanaryStrategy, index int) []ManagedRoute {
	if c.TrafficRouting == nil {
		return nil
	}
	active := map[string]ManagedRoute{}
	for i := 0; i < index && i < len(c.Steps); i++ {
		switch s := c.Steps[i]; {
		case s.SetHeaderRoute != nil && len(s.SetHeaderRoute.Match) > 0:
			active[s.SetHeaderRoute.Name] = ManagedRoute{Name: s.SetHeaderRoute.Name, Header: s.SetHeaderRoute.Match}
		case s.SetHeaderRoute != nil:
			delete(active, s.SetHeaderRoute.Name)
		case s.SetMirrorRoute != nil && len(s.SetMirrorRoute.Match) > 0:
			active[s.SetMirrorRoute.Name] = ManagedRoute{Name: s.SetMirrorRoute.Name, Mirror: s.SetMirrorRoute}
		case s.SetMirrorRoute != nil:
			delete(active, s.SetMirrorRoute.Name)
		}
	}
	var out []ManagedRoute
	for _, mr := range c.TrafficRouting.ManagedRoutes {
		if r, ok := active[mr.Name]; ok {
			out = append(out, r)
		}
	}
	return out
}
