package gatewayapi

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// managedPrefix names the rules the controller adds; rules with other names
// (or none) are the user's.
const managedPrefix = "rollouts-"

func managed(name *gatewayv1.SectionName) bool {
	return name != nil && strings.HasPrefix(string(*name), managedPrefix)
}

// SetManagedRoutes implements traffic.Router: the managed rules go first, in
// precedence order; a header route sends matching requests to the canary, a
// mirror route serves matching requests from the stable and mirrors them to
// the canary. Rules the controller added before and no longer wants go away.
func (r *Router) SetManagedRoutes(ctx context.Context, ro *v1alpha1.Rollout, routes []traffic.ManagedRoute) error {
	rts, err := r.routes(ctx, r.client, ro)
	if err != nil {
		return err
	}
	c := ro.Spec.Strategy.Canary
	for _, rt := range rts {
		before := rt.obj.DeepCopyObject().(client.Object)
		changed, err := setManaged(rt, ro.Namespace, c.StableService, c.CanaryService, routes)
		if err != nil {
			return err
		}
		if !changed {
			continue
		}
		if err := r.write(ctx, ro, rt, before); err != nil {
			return err
		}
	}
	return nil
}

// setManaged makes a route carry exactly routes as managed rules and
// reports whether that changed it.
func setManaged(rt route, namespace, stable, canary string, routes []traffic.ManagedRoute) (bool, error) {
	switch obj := rt.obj.(type) {
	case *gatewayv1.HTTPRoute:
		return setHTTPManaged(obj, namespace, stable, canary, routes)
	case *gatewayv1.GRPCRoute:
		return setGRPCManaged(obj, namespace, stable, canary, routes)
	}
	return false, fmt.Errorf("unexpected route type %T", rt.obj)
}

// backends finds the stable backendRef (to copy its port) in a user rule.
func backends(refs []gatewayv1.BackendRef, namespace, stable, canary string) (stableRef, canaryRef gatewayv1.BackendRef, ok bool) {
	for _, ref := range refs {
		if isService(&ref, namespace, stable) {
			stableRef = *ref.DeepCopy()
			stableRef.Weight = nil
			canaryRef = *stableRef.DeepCopy()
			canaryRef.Name = gatewayv1.ObjectName(canary)
			return stableRef, canaryRef, true
		}
	}
	return stableRef, canaryRef, false
}

// withManaged rebuilds the managed rules of a route: one per managed route,
// made by build from the user's stable backendRef (and a canary one beside
// it), in precedence order, followed by the user's rules unchanged. It
// reports whether the result differs from rules.
func withManaged[R any](kind, name string, rules []R, ruleName func(R) *gatewayv1.SectionName, refsOf func(R) []gatewayv1.BackendRef,
	namespace, stable, canary string, routes []traffic.ManagedRoute,
	build func(mr traffic.ManagedRoute, stableRef, canaryRef gatewayv1.BackendRef) R,
) ([]R, bool, error) {
	var user []R
	var refs []gatewayv1.BackendRef
	for _, rule := range rules {
		if managed(ruleName(rule)) {
			continue
		}
		user = append(user, rule)
		refs = append(refs, refsOf(rule)...)
	}
	stableRef, canaryRef, ok := backends(refs, namespace, stable, canary)
	if !ok && len(routes) > 0 {
		return nil, false, traffic.Invalid("%s %q has no backendRef to the stable Service %q", kind, name, stable)
	}
	next := make([]R, 0, len(routes)+len(user))
	for _, mr := range routes {
		next = append(next, build(mr, stableRef, canaryRef))
	}
	next = append(next, user...)
	return next, !equality.Semantic.DeepEqual(next, rules), nil
}

func setHTTPManaged(obj *gatewayv1.HTTPRoute, namespace, stable, canary string, routes []traffic.ManagedRoute) (bool, error) {
	rules, changed, err := withManaged("HTTPRoute", obj.Name, obj.Spec.Rules,
		func(r gatewayv1.HTTPRouteRule) *gatewayv1.SectionName { return r.Name },
		func(r gatewayv1.HTTPRouteRule) []gatewayv1.BackendRef {
			var out []gatewayv1.BackendRef
			for _, b := range r.BackendRefs {
				out = append(out, b.BackendRef)
			}
			return out
		},
		namespace, stable, canary, routes,
		func(mr traffic.ManagedRoute, stableRef, canaryRef gatewayv1.BackendRef) gatewayv1.HTTPRouteRule {
			rule := gatewayv1.HTTPRouteRule{Name: ptr.To(gatewayv1.SectionName(managedPrefix + mr.Name))}
			if mr.Header != nil {
				rule.Matches = []gatewayv1.HTTPRouteMatch{{Headers: httpHeaders(mr.Header)}}
				rule.BackendRefs = []gatewayv1.HTTPBackendRef{{BackendRef: canaryRef}}
				return rule
			}
			for _, m := range mr.Mirror.Match {
				rule.Matches = append(rule.Matches, httpMatch(m))
			}
			rule.BackendRefs = []gatewayv1.HTTPBackendRef{{BackendRef: stableRef}}
			rule.Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: mirrorTo(canaryRef, mr)}}
			return rule
		})
	if changed {
		obj.Spec.Rules = rules
	}
	return changed, err
}

func setGRPCManaged(obj *gatewayv1.GRPCRoute, namespace, stable, canary string, routes []traffic.ManagedRoute) (bool, error) {
	rules, changed, err := withManaged("GRPCRoute", obj.Name, obj.Spec.Rules,
		func(r gatewayv1.GRPCRouteRule) *gatewayv1.SectionName { return r.Name },
		func(r gatewayv1.GRPCRouteRule) []gatewayv1.BackendRef {
			var out []gatewayv1.BackendRef
			for _, b := range r.BackendRefs {
				out = append(out, b.BackendRef)
			}
			return out
		},
		namespace, stable, canary, routes,
		func(mr traffic.ManagedRoute, stableRef, canaryRef gatewayv1.BackendRef) gatewayv1.GRPCRouteRule {
			rule := gatewayv1.GRPCRouteRule{Name: ptr.To(gatewayv1.SectionName(managedPrefix + mr.Name))}
			if mr.Header != nil {
				rule.Matches = []gatewayv1.GRPCRouteMatch{{Headers: grpcHeaders(mr.Header)}}
				rule.BackendRefs = []gatewayv1.GRPCBackendRef{{BackendRef: canaryRef}}
				return rule
			}
			// gRPC requests have no HTTP method or path to match on; header
			// conditions carry over.
			for _, m := range mr.Mirror.Match {
				rule.Matches = append(rule.Matches, gatewayv1.GRPCRouteMatch{Headers: grpcHeaders(headerList(m.Headers))})
			}
			rule.BackendRefs = []gatewayv1.GRPCBackendRef{{BackendRef: stableRef}}
			rule.Filters = []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror, RequestMirror: mirrorTo(canaryRef, mr)}}
			return rule
		})
	if changed {
		obj.Spec.Rules = rules
	}
	return changed, err
}

func mirrorTo(canaryRef gatewayv1.BackendRef, mr traffic.ManagedRoute) *gatewayv1.HTTPRequestMirrorFilter {
	return &gatewayv1.HTTPRequestMirrorFilter{BackendRef: canaryRef.BackendObjectReference, Percent: mr.Mirror.Percentage}
}

// headerList turns a route match's header map into header matches, in name
// order.
func headerList(h map[string]v1alpha1.StringMatch) []v1alpha1.HeaderMatch {
	var out []v1alpha1.HeaderMatch
	for name, v := range h {
		out = append(out, v1alpha1.HeaderMatch{HeaderName: name, HeaderValue: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HeaderName < out[j].HeaderName })
	return out
}

// stringMatch maps an exact / prefix / regex match onto the Gateway API's
// Exact and RegularExpression (a prefix becomes an anchored expression).
func stringMatch(m v1alpha1.StringMatch) (exact bool, value string) {
	switch {
	case m.Exact != "":
		return true, m.Exact
	case m.Prefix != "":
		return false, "^" + regexp.QuoteMeta(m.Prefix) + ".*"
	}
	return false, m.Regex
}

func httpHeaders(h []v1alpha1.HeaderMatch) []gatewayv1.HTTPHeaderMatch {
	out := make([]gatewayv1.HTTPHeaderMatch, 0, len(h))
	for _, m := range h {
		exact, v := stringMatch(m.HeaderValue)
		t := gatewayv1.HeaderMatchRegularExpression
		if exact {
			t = gatewayv1.HeaderMatchExact
		}
		out = append(out, gatewayv1.HTTPHeaderMatch{Type: ptr.To(t), Name: gatewayv1.HTTPHeaderName(m.HeaderName), Value: v})
	}
	return out
}

func grpcHeaders(h []v1alpha1.HeaderMatch) []gatewayv1.GRPCHeaderMatch {
	out := make([]gatewayv1.GRPCHeaderMatch, 0, len(h))
	for _, m := range h {
		exact, v := stringMatch(m.HeaderValue)
		t := gatewayv1.GRPCHeaderMatchRegularExpression
		if exact {
			t = gatewayv1.GRPCHeaderMatchExact
		}
		out = append(out, gatewayv1.GRPCHeaderMatch{Type: ptr.To(t), Name: gatewayv1.GRPCHeaderName(m.HeaderName), Value: v})
	}
	return out
}

func httpMatch(m v1alpha1.RouteMatch) gatewayv1.HTTPRouteMatch {
	out := gatewayv1.HTTPRouteMatch{Headers: httpHeaders(headerList(m.Headers))}
	if len(out.Headers) == 0 {
		out.Headers = nil
	}
	if m.Path != nil {
		exact, v := stringMatch(*m.Path)
		t := gatewayv1.PathMatchRegularExpression
		switch {
		case exact:
			t = gatewayv1.PathMatchExact
		case m.Path.Prefix != "":
			t, v = gatewayv1.PathMatchPathPrefix, m.Path.Prefix
		}
		out.Path = &gatewayv1.HTTPPathMatch{Type: ptr.To(t), Value: ptr.To(v)}
	}
	if m.Method != nil && m.Method.Exact != "" {
		out.Method = ptr.To(gatewayv1.HTTPMethod(m.Method.Exact))
	}
	return out
}
