// Package istio routes a Rollout's traffic through Istio VirtualServices:
// a host-level split between the stable and canary Service hosts, or, with a
// DestinationRule, a subset-level split between two subsets whose labels
// carry the stable and canary hashes. Only the named HTTP, TLS and TCP routes
// are touched, and in them only the stable and canary destinations.
package istio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1alpha3"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// Router is the Istio router.
type Router struct {
	client client.Client
	live   client.Reader
}

// New returns an Istio router.
func New(c client.Client, live client.Reader) traffic.Router { return &Router{client: c, live: live} }

// Name implements traffic.Router.
func (r *Router) Name() string { return "istio" }

// managedPrefix names the HTTP routes the controller adds.
const managedPrefix = "rollouts-"

func config(ro *v1alpha1.Rollout) *v1alpha1.IstioTrafficRouting {
	return ro.Spec.Strategy.Canary.TrafficRouting.Istio
}

// VirtualServiceNames returns the VirtualServices a Rollout names.
func VirtualServiceNames(ro *v1alpha1.Rollout) []string {
	c := ro.Spec.Strategy.Canary
	if c == nil || c.TrafficRouting == nil || c.TrafficRouting.Istio == nil {
		return nil
	}
	var names []string
	for _, ref := range refs(c.TrafficRouting.Istio) {
		names = append(names, ref.Name)
	}
	return names
}

func refs(cfg *v1alpha1.IstioTrafficRouting) []v1alpha1.IstioVirtualService {
	if cfg.VirtualService != nil {
		return []v1alpha1.IstioVirtualService{*cfg.VirtualService}
	}
	return cfg.VirtualServices
}

// weighted is one list of weighted destinations: an HTTP, TLS or TCP route.
type weighted struct {
	len       func() int
	dest      func(i int) *istioapi.Destination
	weight    func(i int) int32
	setWeight func(i int, w int32)
	add       func(d *istioapi.Destination, w int32)
	remove    func(i int)
}

func httpWeighted(rt *istioapi.HTTPRoute) weighted {
	return weighted{
		len:       func() int { return len(rt.Route) },
		dest:      func(i int) *istioapi.Destination { return rt.Route[i].Destination },
		weight:    func(i int) int32 { return rt.Route[i].Weight },
		setWeight: func(i int, w int32) { rt.Route[i].Weight = w },
		add: func(d *istioapi.Destination, w int32) {
			rt.Route = append(rt.Route, &istioapi.HTTPRouteDestination{Destination: d, Weight: w})
		},
		remove: func(i int) { rt.Route = slices.Delete(rt.Route, i, i+1) },
	}
}

func l4Weighted(route *[]*istioapi.RouteDestination) weighted {
	return weighted{
		len:       func() int { return len(*route) },
		dest:      func(i int) *istioapi.Destination { return (*route)[i].Destination },
		weight:    func(i int) int32 { return (*route)[i].Weight },
		setWeight: func(i int, w int32) { (*route)[i].Weight = w },
		add: func(d *istioapi.Destination, w int32) {
			*route = append(*route, &istioapi.RouteDestination{Destination: d, Weight: w})
		},
		remove: func(i int) { *route = slices.Delete(*route, i, i+1) },
	}
}

// find returns the index of the first destination match accepts, or -1.
func (w weighted) find(match func(d *istioapi.Destination) bool) int {
	for i := range w.len() {
		if match(w.dest(i)) {
			return i
		}
	}
	return -1
}

// selected returns the routes of vs the Rollout names, as weighted lists. A
// named route that isn't there is invalid, or, with skipMissing, skipped.
func selected(vs *istionetworkingv1.VirtualService, ref v1alpha1.IstioVirtualService, skipMissing bool) ([]weighted, error) {
	var out []weighted
	spec := &vs.Spec
	if len(ref.Routes) == 0 && len(ref.TLSRoutes) == 0 && len(ref.TCPRoutes) == 0 {
		for _, rt := range spec.Http {
			if !strings.HasPrefix(rt.Name, managedPrefix) {
				out = append(out, httpWeighted(rt))
			}
		}
		return out, nil
	}
	for _, name := range ref.Routes {
		i := slices.IndexFunc(spec.Http, func(rt *istioapi.HTTPRoute) bool { return rt.Name == name })
		if i < 0 && !skipMissing {
			return nil, traffic.Invalid("HTTP route %q not found in VirtualService %q", name, vs.Name)
		}
		if i < 0 {
			continue
		}
		out = append(out, httpWeighted(spec.Http[i]))
	}
	for _, want := range ref.TLSRoutes {
		i := slices.IndexFunc(spec.Tls, func(rt *istioapi.TLSRoute) bool {
			return slices.ContainsFunc(rt.Match, func(m *istioapi.TLSMatchAttributes) bool {
				return (want.Port == 0 || int64(m.Port) == want.Port) && containsAll(m.SniHosts, want.SNIHosts)
			})
		})
		if i < 0 && !skipMissing {
			return nil, traffic.Invalid("TLS route (port %d, sniHosts %v) not found in VirtualService %q", want.Port, want.SNIHosts, vs.Name)
		}
		if i < 0 {
			continue
		}
		out = append(out, l4Weighted(&spec.Tls[i].Route))
	}
	for _, want := range ref.TCPRoutes {
		i := slices.IndexFunc(spec.Tcp, func(rt *istioapi.TCPRoute) bool {
			return want.Port == 0 || slices.ContainsFunc(rt.Match, func(m *istioapi.L4MatchAttributes) bool { return int64(m.Port) == want.Port })
		})
		if i < 0 && !skipMissing {
			return nil, traffic.Invalid("TCP route (port %d) not found in VirtualService %q", want.Port, vs.Name)
		}
		if i < 0 {
			continue
		}
		out = append(out, l4Weighted(&spec.Tcp[i].Route))
	}
	return out, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// split tells the stable and canary destinations apart and makes a canary
// destination from a stable one. With a host-level split, service and
// toService do the same for the Services of extra destinations.
type split struct {
	stable, canary func(d *istioapi.Destination) bool
	toCanary       func(d *istioapi.Destination) *istioapi.Destination
	service        func(name string) func(d *istioapi.Destination) bool
	toService      func(d *istioapi.Destination, name string) *istioapi.Destination
}

func splitOf(ro *v1alpha1.Rollout) split {
	c := ro.Spec.Strategy.Canary
	if dr := config(ro).DestinationRule; dr != nil {
		return split{
			stable: func(d *istioapi.Destination) bool { return d != nil && d.Subset == dr.StableSubsetName },
			canary: func(d *istioapi.Destination) bool { return d != nil && d.Subset == dr.CanarySubsetName },
			toCanary: func(d *istioapi.Destination) *istioapi.Destination {
				return &istioapi.Destination{Host: d.Host, Subset: dr.CanarySubsetName, Port: d.Port}
			},
		}
	}
	s := split{
		service: func(name string) func(d *istioapi.Destination) bool {
			return func(d *istioapi.Destination) bool { return d != nil && isHost(d.Host, name, ro.Namespace) }
		},
		toService: func(d *istioapi.Destination, name string) *istioapi.Destination {
			host := name
			if rest, ok := strings.CutPrefix(d.Host, c.StableService+"."); ok {
				host += "." + rest // keep the stable host's form (svc.ns.svc.cluster.local)
			}
			return &istioapi.Destination{Host: host, Subset: d.Subset, Port: d.Port}
		},
	}
	s.stable, s.canary = s.service(c.StableService), s.service(c.CanaryService)
	s.toCanary = func(d *istioapi.Destination) *istioapi.Destination { return s.toService(d, c.CanaryService) }
	return s
}

// isHost: host names the Service svc of namespace ns, short or qualified.
func isHost(host, svc, ns string) bool {
	if svc == "" {
		return false
	}
	for _, h := range []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"} {
		if host == h {
			return true
		}
	}
	return false
}

// setWeights gives the stable destination what pct leaves it, the canary
// pct.Canary (adding a canary destination beside the stable one when
// missing), and each extra Service its share (adding it, or removing it at
// 0). It reports whether anything changed (or would, with dryRun) and
// whether a stable destination was found.
func setWeights(w weighted, s split, pct traffic.Weights, dryRun bool) (changed, found bool) {
	stableAt := w.find(s.stable)
	if stableAt < 0 {
		return false, false
	}
	set := func(i int, v int32) {
		if w.weight(i) != v {
			changed = true
			if !dryRun {
				w.setWeight(i, v)
			}
		}
	}
	set(stableAt, pct.Stable(100))
	if canaryAt := w.find(s.canary); canaryAt >= 0 {
		set(canaryAt, pct.Canary)
	} else {
		changed = true
		if !dryRun {
			w.add(s.toCanary(w.dest(stableAt)), pct.Canary)
		}
	}
	for _, d := range pct.Extra {
		switch at := w.find(s.service(d.Service)); {
		case at >= 0 && d.Weight == 0:
			changed = true
			if !dryRun {
				w.remove(at)
			}
		case at >= 0:
			set(at, d.Weight)
		case d.Weight > 0:
			changed = true
			if !dryRun {
				w.add(s.toService(w.dest(stableAt), d.Service), d.Weight)
			}
		}
	}
	return changed, true
}

// percent converts weights out of maxTrafficWeight to Istio's percentages.
func percent(ro *v1alpha1.Rollout, w traffic.Weights) traffic.Weights {
	total := int64(max(ro.Spec.Strategy.Canary.TrafficRouting.MaxTrafficWeight, 1))
	out := traffic.Weights{Canary: int32(int64(w.Canary) * 100 / total)}
	for _, d := range w.Extra {
		out.Extra = append(out.Extra, traffic.Destination{Service: d.Service, Weight: int32(int64(d.Weight) * 100 / total)})
	}
	return out
}

func (r *Router) get(ctx context.Context, reader client.Reader, ro *v1alpha1.Rollout, kind, name string, obj client.Object) error {
	err := reader.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return traffic.Invalid("%s %q named in spec.strategy.canary.trafficRouting.istio was not found in namespace %s", kind, name, ro.Namespace)
	case meta.IsNoMatchError(err):
		return traffic.Invalid("%s %q: Istio (networking.istio.io) is not installed in this cluster", kind, name)
	case err != nil:
		return fmt.Errorf("getting %s %s: %w", kind, name, err)
	}
	return nil
}

// each reads every named VirtualService, hands its selected routes to fn, and
// writes what fn changed in its spec (unless dryRun, which reads the API
// server rather than the cache: it verifies).
func (r *Router) each(ctx context.Context, ro *v1alpha1.Rollout, dryRun bool, fn func(vs *istionetworkingv1.VirtualService, routes []weighted) (bool, error)) error {
	var reader client.Reader = r.client
	if dryRun {
		reader = r.live
	}
	for _, ref := range refs(config(ro)) {
		vs := &istionetworkingv1.VirtualService{}
		if err := r.get(ctx, reader, ro, "VirtualService", ref.Name, vs); err != nil {
			return err
		}
		before := vs.DeepCopy()
		routes, err := selected(vs, ref, false)
		if err != nil {
			return err
		}
		changed, err := fn(vs, routes)
		if err != nil {
			return err
		}
		if changed && !dryRun {
			if err := r.write(ctx, ro, "VirtualService", before, vs); err != nil {
				return err
			}
		}
	}
	return nil
}

// write patches an Istio object from before (as read) to obj: only the spec
// values that changed, and the Rollout's claim on it. Arrays are spliced:
// the Go types of Istio's API drop zero values and unknown fields, so the
// user's routes are never tested or written whole, only the values the
// controller changes and the routes and destinations it adds or removes.
func (r *Router) write(ctx context.Context, ro *v1alpha1.Rollout, kind string, before, obj client.Object) error {
	ops, err := traffic.SpecPatch(kind, before, obj, ro.Name, jsonpatch.Splice())
	if err != nil {
		return err
	}
	if err := jsonpatch.Apply(ctx, r.client, obj, ops); err != nil {
		return fmt.Errorf("patching %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

// Validate implements traffic.Router.
func (r *Router) Validate(ctx context.Context, ro *v1alpha1.Rollout) error {
	if dr := config(ro).DestinationRule; dr != nil {
		if which := traffic.WeightedExperiment(ro); which != "" {
			return traffic.Invalid("experiment %s has a weight: that needs a host-level split, not the subset-level one of DestinationRule %q", which, dr.Name)
		}
		obj := &istionetworkingv1.DestinationRule{}
		if err := r.get(ctx, r.client, ro, "DestinationRule", dr.Name, obj); err != nil {
			return err
		}
		if err := traffic.CheckOwner("DestinationRule", obj, ro.Name); err != nil {
			return err
		}
		for _, name := range []string{dr.StableSubsetName, dr.CanarySubsetName} {
			if !slices.ContainsFunc(obj.Spec.Subsets, func(s *istioapi.Subset) bool { return s.Name == name }) {
				return traffic.Invalid("subset %q not found in DestinationRule %q", name, dr.Name)
			}
		}
	}
	s := splitOf(ro)
	return r.each(ctx, ro, true, func(vs *istionetworkingv1.VirtualService, routes []weighted) (bool, error) {
		if err := traffic.CheckOwner("VirtualService", vs, ro.Name); err != nil {
			return false, err
		}
		for _, w := range routes {
			if _, found := setWeights(w, s, traffic.Weights{}, true); !found {
				return false, traffic.Invalid("a route of VirtualService %q has no destination for the stable %s", vs.Name, stableWhat(ro))
			}
		}
		return false, nil
	})
}

func stableWhat(ro *v1alpha1.Rollout) string {
	if dr := config(ro).DestinationRule; dr != nil {
		return fmt.Sprintf("subset %q", dr.StableSubsetName)
	}
	return fmt.Sprintf("Service %q", ro.Spec.Strategy.Canary.StableService)
}

// SetWeight implements traffic.Router. With a DestinationRule it first points
// the stable and canary subsets at the hashes in ro.Status.
func (r *Router) SetWeight(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) error {
	if dr := config(ro).DestinationRule; dr != nil && weight.HasExtra() {
		return traffic.Invalid("experiment templates cannot take traffic with a subset-level split (DestinationRule %q): use a host-level split", dr.Name)
	}
	if err := r.syncSubsets(ctx, ro); err != nil {
		return err
	}
	s, pct := splitOf(ro), percent(ro, weight)
	return r.each(ctx, ro, false, func(_ *istionetworkingv1.VirtualService, routes []weighted) (bool, error) {
		dirty := false
		for _, w := range routes {
			changed, _ := setWeights(w, s, pct, false)
			dirty = dirty || changed
		}
		return dirty, nil
	})
}

// Verify implements traffic.Router.
func (r *Router) Verify(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) (bool, error) {
	s, pct := splitOf(ro), percent(ro, weight)
	ok := true
	err := r.each(ctx, ro, true, func(_ *istionetworkingv1.VirtualService, routes []weighted) (bool, error) {
		for _, w := range routes {
			if changed, _ := setWeights(w, s, pct, true); changed {
				ok = false
			}
		}
		return false, nil
	})
	return ok && err == nil, err
}

// syncSubsets puts the hash label of the stable and canary revisions into the
// DestinationRule's subsets.
func (r *Router) syncSubsets(ctx context.Context, ro *v1alpha1.Rollout) error {
	dr := config(ro).DestinationRule
	if dr == nil {
		return nil
	}
	obj := &istionetworkingv1.DestinationRule{}
	if err := r.get(ctx, r.client, ro, "DestinationRule", dr.Name, obj); err != nil {
		return err
	}
	before := obj.DeepCopy()
	canaryHash := ro.Status.CurrentPodHash
	if ro.Status.Abort || canaryHash == "" {
		canaryHash = ro.Status.StableRS
	}
	want := map[string]string{dr.StableSubsetName: ro.Status.StableRS, dr.CanarySubsetName: canaryHash}
	changed := false
	for _, sub := range obj.Spec.Subsets {
		hash, ok := want[sub.Name]
		if !ok || hash == "" || sub.Labels[v1alpha1.PodTemplateHashLabel] == hash {
			continue
		}
		if sub.Labels == nil {
			sub.Labels = map[string]string{}
		}
		sub.Labels[v1alpha1.PodTemplateHashLabel] = hash
		changed = true
	}
	if !changed {
		return nil
	}
	return r.write(ctx, ro, "DestinationRule", before, obj)
}

// Release implements traffic.Router: the named routes of every
// VirtualService send all traffic to the stable destination (the canary one
// stays, at 0) and lose the extra destinations, the managed routes go, and
// the objects no longer name the Rollout. Objects claimed by another Rollout
// are left alone, and so are named routes no longer there; objects already
// gone are skipped and reported together, as NotFound errors, once the
// others are released.
func (r *Router) Release(ctx context.Context, ro *v1alpha1.Rollout, extra []traffic.Destination) error {
	cfg := config(ro)
	s := splitOf(ro)
	var zero traffic.Weights
	if cfg.DestinationRule == nil { // a subset-level split has no extra destinations
		for _, d := range extra {
			zero.Extra = append(zero.Extra, traffic.Destination{Service: d.Service})
		}
	}
	var gone []error
	for _, ref := range refs(cfg) {
		vs := &istionetworkingv1.VirtualService{}
		done, err := r.getForRelease(ctx, ro, "VirtualService", ref.Name, vs)
		if apierrors.IsNotFound(err) {
			gone = append(gone, err)
			continue
		}
		if err != nil {
			return err
		}
		if done {
			continue
		}
		// The managed routes go in a step of their own, before the weights
		// change, so that the splice sees the user's routes unchanged around
		// them and removes only them.
		before := vs.DeepCopy()
		vs.Spec.Http = slices.DeleteFunc(vs.Spec.Http, func(rt *istioapi.HTTPRoute) bool { return strings.HasPrefix(rt.Name, managedPrefix) })
		removed, err := jsonpatch.Diff(before, vs, "/spec", jsonpatch.Splice())
		if err != nil {
			return err
		}
		unrouted := vs.DeepCopy()
		routes, _ := selected(vs, ref, true)
		for _, w := range routes {
			setWeights(w, s, zero, false)
		}
		if err := r.release(ctx, ro, "VirtualService", removed, unrouted, vs); err != nil {
			return err
		}
	}
	if dr := cfg.DestinationRule; dr != nil {
		obj := &istionetworkingv1.DestinationRule{}
		done, err := r.getForRelease(ctx, ro, "DestinationRule", dr.Name, obj)
		switch {
		case apierrors.IsNotFound(err):
			gone = append(gone, err)
		case err != nil:
			return err
		case !done:
			// The subsets keep their hash labels: with all traffic on the
			// stable subset, both must still select pods until the Service
			// selectors are restored (by the reconciler) and the user takes
			// the subsets back. Only the claim goes.
			if err := r.release(ctx, ro, "DestinationRule", nil, obj.DeepCopy(), obj); err != nil {
				return err
			}
		}
	}
	return errors.Join(gone...)
}

// getForRelease reads an object to release, reporting done when another
// Rollout claims it. An object already gone is a NotFound error.
func (r *Router) getForRelease(ctx context.Context, ro *v1alpha1.Rollout, kind, name string, obj client.Object) (done bool, _ error) {
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: name}, obj); err != nil {
		return true, fmt.Errorf("getting %s %s: %w", kind, name, err)
	}
	return traffic.OwnedByOther(obj, ro.Name), nil
}

// release patches an Istio object with ops, then from before to obj, and
// drops the claim, all in one patch.
func (r *Router) release(ctx context.Context, ro *v1alpha1.Rollout, kind string, ops []jsonpatch.Op, before, obj client.Object) error {
	rest, err := traffic.ReleasePatch(before, obj, ro.Name, jsonpatch.Splice())
	if err != nil {
		return err
	}
	ops = jsonpatch.Guard(append(ops, rest...), jsonpatch.TestResourceVersion(before))
	if err := jsonpatch.Apply(ctx, r.client, obj, ops); err != nil {
		return fmt.Errorf("releasing %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}
