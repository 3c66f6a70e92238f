// Package gatewayapi routes a Rollout's traffic through Gateway API
// HTTPRoutes and GRPCRoutes. Beside every backendRef to the stable Service it
// keeps a backendRef to the canary Service (adding one, or adopting one the
// user wrote) and sets both weights; every other rule, match, filter and
// backend is left as the user wrote it.
package gatewayapi

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// Router is the Gateway API router.
type Router struct {
	client client.Client
	live   client.Reader
}

// New returns a Gateway API router.
func New(c client.Client, live client.Reader) traffic.Router { return &Router{client: c, live: live} }

// Name implements traffic.Router.
func (r *Router) Name() string { return "gatewayAPI" }

// route is one HTTPRoute or GRPCRoute, seen through its backendRefs.
type route struct {
	kind string
	obj  client.Object
	// rules returns the backendRef lists of the route's rules, as pointers
	// into the object so that edits land in it.
	rules func() []backendList
}

// backendList is the backendRefs of one rule, whatever the route kind.
type backendList struct {
	len    func() int
	ref    func(i int) *gatewayv1.BackendRef
	insert func(at int, ref gatewayv1.BackendRef)
	remove func(at int)
}

// userRules views the user's rules of a route (the managed ones are left
// out) as backendLists. Both route kinds share the shape: a rule has a name
// and backendRefs embedding a BackendRef; beside returns a copy of a
// backendRef of the rule with another BackendRef (keeping its filters, so
// both versions see the same requests).
func userRules[R, B any](rules []R, name func(*R) *gatewayv1.SectionName, refs func(*R) *[]B,
	backend func(*B) *gatewayv1.BackendRef, beside func(like *B, ref gatewayv1.BackendRef) B,
) []backendList {
	var out []backendList
	for i := range rules {
		rule := &rules[i]
		if managed(name(rule)) {
			continue
		}
		list := refs(rule)
		out = append(out, backendList{
			len: func() int { return len(*list) },
			ref: func(j int) *gatewayv1.BackendRef { return backend(&(*list)[j]) },
			insert: func(at int, ref gatewayv1.BackendRef) {
				*list = slices.Insert(*list, at, beside(&(*list)[at-1], ref))
			},
			remove: func(at int) { *list = slices.Delete(*list, at, at+1) },
		})
	}
	return out
}

func httpRoute(obj *gatewayv1.HTTPRoute) route {
	return route{kind: "HTTPRoute", obj: obj, rules: func() []backendList {
		return userRules(obj.Spec.Rules,
			func(r *gatewayv1.HTTPRouteRule) *gatewayv1.SectionName { return r.Name },
			func(r *gatewayv1.HTTPRouteRule) *[]gatewayv1.HTTPBackendRef { return &r.BackendRefs },
			func(b *gatewayv1.HTTPBackendRef) *gatewayv1.BackendRef { return &b.BackendRef },
			func(like *gatewayv1.HTTPBackendRef, ref gatewayv1.BackendRef) gatewayv1.HTTPBackendRef {
				return gatewayv1.HTTPBackendRef{BackendRef: ref, Filters: like.DeepCopy().Filters}
			})
	}}
}

func grpcRoute(obj *gatewayv1.GRPCRoute) route {
	return route{kind: "GRPCRoute", obj: obj, rules: func() []backendList {
		return userRules(obj.Spec.Rules,
			func(r *gatewayv1.GRPCRouteRule) *gatewayv1.SectionName { return r.Name },
			func(r *gatewayv1.GRPCRouteRule) *[]gatewayv1.GRPCBackendRef { return &r.BackendRefs },
			func(b *gatewayv1.GRPCBackendRef) *gatewayv1.BackendRef { return &b.BackendRef },
			func(like *gatewayv1.GRPCBackendRef, ref gatewayv1.BackendRef) gatewayv1.GRPCBackendRef {
				return gatewayv1.GRPCBackendRef{BackendRef: ref, Filters: like.DeepCopy().Filters}
			})
	}}
}

// named returns the routes the Rollout names, each an empty object of its
// kind with the route's key set, ready to read into.
func named(ro *v1alpha1.Rollout) []route {
	g := ro.Spec.Strategy.Canary.TrafficRouting.GatewayAPI
	var out []route
	key := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ro.Namespace, Name: name} }
	for _, ref := range g.HTTPRoutes {
		out = append(out, httpRoute(&gatewayv1.HTTPRoute{ObjectMeta: key(ref.Name)}))
	}
	for _, ref := range g.GRPCRoutes {
		out = append(out, grpcRoute(&gatewayv1.GRPCRoute{ObjectMeta: key(ref.Name)}))
	}
	return out
}

// routes reads every route the Rollout names. A missing route is invalid.
func (r *Router) routes(ctx context.Context, reader client.Reader, ro *v1alpha1.Rollout) ([]route, error) {
	out := named(ro)
	for _, rt := range out {
		err := reader.Get(ctx, client.ObjectKeyFromObject(rt.obj), rt.obj)
		if apierrors.IsNotFound(err) {
			return nil, traffic.Invalid("%s %q named in spec.strategy.canary.trafficRouting.gatewayAPI was not found in namespace %s", rt.kind, rt.obj.GetName(), ro.Namespace)
		}
		if meta.IsNoMatchError(err) {
			return nil, traffic.Invalid("%s %q: the Gateway API (%s) is not installed in this cluster", rt.kind, rt.obj.GetName(), gatewayv1.GroupName)
		}
		if err != nil {
			return nil, fmt.Errorf("getting %s %s: %w", rt.kind, rt.obj.GetName(), err)
		}
	}
	return out, nil
}

// write patches a route from before (as read) to rt.obj: only the spec
// values that changed, and the Rollout's claim on the route.
func (r *Router) write(ctx context.Context, ro *v1alpha1.Rollout, rt route, before client.Object) error {
	ops, err := traffic.SpecPatch(rt.kind, before, rt.obj, ro.Name)
	if err != nil {
		return err
	}
	if err := jsonpatch.Apply(ctx, r.client, rt.obj, ops); err != nil {
		return fmt.Errorf("patching %s %s: %w", rt.kind, rt.obj.GetName(), err)
	}
	return nil
}

// Validate implements traffic.Router: every route exists and has at least
// one backendRef to the stable Service.
func (r *Router) Validate(ctx context.Context, ro *v1alpha1.Rollout) error {
	routes, err := r.routes(ctx, r.client, ro)
	if err != nil {
		return err
	}
	stable := ro.Spec.Strategy.Canary.StableService
	for _, rt := range routes {
		if err := traffic.CheckOwner(rt.kind, rt.obj, ro.Name); err != nil {
			return err
		}
		if _, found := setWeights(rt, ro.Namespace, stable, ro.Spec.Strategy.Canary.CanaryService, traffic.Weights{}, 100, true); !found {
			return traffic.Invalid("%s %q has no backendRef to the stable Service %q", rt.kind, rt.obj.GetName(), stable)
		}
	}
	return nil
}

// SetWeight implements traffic.Router.
func (r *Router) SetWeight(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) error {
	routes, err := r.routes(ctx, r.client, ro)
	if err != nil {
		return err
	}
	c := ro.Spec.Strategy.Canary
	for _, rt := range routes {
		before := rt.obj.DeepCopyObject().(client.Object)
		if changed, _ := setWeights(rt, ro.Namespace, c.StableService, c.CanaryService, weight, c.TrafficRouting.MaxTrafficWeight, false); !changed {
			continue
		}
		if err := r.write(ctx, ro, rt, before); err != nil {
			return err
		}
	}
	return nil
}

// Release implements traffic.Router: every route the Rollout names sends all
// traffic to the stable Service (the canary backendRef stays, at weight 0),
// loses the backendRefs of the extra destinations and the managed rules, and
// no longer names the Rollout. A route claimed by another Rollout is left
// alone; routes already gone are skipped and reported together, as NotFound
// errors, once the others are released.
func (r *Router) Release(ctx context.Context, ro *v1alpha1.Rollout, extra []traffic.Destination) error {
	c := ro.Spec.Strategy.Canary
	w := traffic.Weights{}
	for _, d := range extra {
		w.Extra = append(w.Extra, traffic.Destination{Service: d.Service})
	}
	var gone []error
	for _, rt := range named(ro) {
		err := r.client.Get(ctx, client.ObjectKeyFromObject(rt.obj), rt.obj)
		if apierrors.IsNotFound(err) {
			gone = append(gone, fmt.Errorf("%s %s: %w", rt.kind, rt.obj.GetName(), err))
			continue
		}
		if err != nil {
			return fmt.Errorf("getting %s %s: %w", rt.kind, rt.obj.GetName(), err)
		}
		if traffic.OwnedByOther(rt.obj, ro.Name) {
			continue
		}
		before := rt.obj.DeepCopyObject().(client.Object)
		setWeights(rt, ro.Namespace, c.StableService, c.CanaryService, w, c.TrafficRouting.MaxTrafficWeight, false)
		if _, err := setManaged(rt, ro.Namespace, c.StableService, c.CanaryService, nil); err != nil {
			return err
		}
		ops, err := traffic.ReleasePatch(before, rt.obj, ro.Name)
		if err != nil {
			return err
		}
		if err := jsonpatch.Apply(ctx, r.client, rt.obj, ops); err != nil {
			return fmt.Errorf("releasing %s %s: %w", rt.kind, rt.obj.GetName(), err)
		}
	}
	return errors.Join(gone...)
}

// Verify implements traffic.Router.
func (r *Router) Verify(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) (bool, error) {
	routes, err := r.routes(ctx, r.live, ro)
	if err != nil {
		return false, err
	}
	c := ro.Spec.Strategy.Canary
	for _, rt := range routes {
		if changed, _ := setWeights(rt, ro.Namespace, c.StableService, c.CanaryService, weight, c.TrafficRouting.MaxTrafficWeight, true); changed {
			return false, nil
		}
	}
	return true, nil
}

// setWeights gives the first backendRef to the stable Service in every rule
// what w leaves it, the canary backendRef beside it w.Canary, and each extra
// destination its weight, adding the backendRefs a rule lacks after the
// stable one (and removing those of extra destinations whose weight is 0).
// It reports whether anything changed (or, with dryRun, would change) and
// whether any stable backendRef was found.
func setWeights(rt route, namespace, stable, canary string, w traffic.Weights, total int32, dryRun bool) (changed, found bool) {
	for _, rule := range rt.rules() {
		stableAt := rule.find(namespace, stable)
		if stableAt < 0 {
			continue
		}
		found = true
		dests := append([]traffic.Destination{{Service: canary, Weight: w.Canary}}, w.Extra...)
		if setWeight(rule.ref(stableAt), w.Stable(total), dryRun) {
			changed = true
		}
		// Destinations go after the stable backendRef, in order.
		at := stableAt + 1
		for i, d := range dests {
			idx := rule.find(namespace, d.Service)
			switch {
			case idx >= 0 && i > 0 && d.Weight == 0:
				changed = true
				if !dryRun {
					rule.remove(idx)
				}
			case idx >= 0:
				if setWeight(rule.ref(idx), d.Weight, dryRun) {
					changed = true
				}
				at = max(at, idx+1)
			case i > 0 && d.Weight == 0:
				// An extra destination already gone.
			default:
				changed = true
				if !dryRun {
					ref := rule.ref(stableAt).DeepCopy()
					ref.Name = gatewayv1.ObjectName(d.Service)
					ref.Weight = ptr.To(d.Weight)
					rule.insert(at, *ref)
				}
				at++
			}
		}
	}
	return changed, found
}

// setWeight sets a backendRef's weight and reports whether it changed.
func setWeight(ref *gatewayv1.BackendRef, w int32, dryRun bool) bool {
	if ptr.Deref(ref.Weight, 1) == w {
		return false
	}
	if !dryRun {
		ref.Weight = ptr.To(w)
	}
	return true
}

// find returns the index of the first backendRef to the named Service, or -1.
func (l backendList) find(namespace, service string) int {
	for i := range l.len() {
		if isService(l.ref(i), namespace, service) {
			return i
		}
	}
	return -1
}

// isService reports whether ref points at the named Service in namespace.
func isService(ref *gatewayv1.BackendRef, namespace, name string) bool {
	if name == "" || string(ref.Name) != name {
		return false
	}
	if ref.Group != nil && *ref.Group != "" {
		return false
	}
	if ref.Kind != nil && *ref.Kind != "Service" {
		return false
	}
	return ref.Namespace == nil || string(*ref.Namespace) == namespace
}
