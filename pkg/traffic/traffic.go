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
	// SetWeight sends weight (out of maxTrafficWeight) to the canary Service
	// and the rest to the stable Service.
	SetWeight(ctx context.Context, ro *v1alpha1.Rollout, weight int32) error
	// Verify reads the objects back and reports whether they carry weight.
	Verify(ctx context.Context, ro *v1alpha1.Rollout, weight int32) (bool, error)
	// SetManagedRoutes makes the objects carry exactly these managed routes,
	// in this order, above the user's own; nil removes every one it added.
	SetManagedRoutes(ctx context.Context, ro *v1alpha1.Rollout, routes []ManagedRoute) error
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
