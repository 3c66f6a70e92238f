package istio

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	istioapi "istio.io/api/networking/v1alpha3"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// SetManagedRoutes implements traffic.Router: managed HTTP routes named
// rollouts-<name> go above the user's, in precedence order. A header route
// sends matching requests to the canary; a mirror route serves matching
// requests from the stable and mirrors percentage of them to the canary.
func (r *Router) SetManagedRoutes(ctx context.Context, ro *v1alpha1.Rollout, routes []traffic.ManagedRoute) error {
	s := splitOf(ro)
	return r.each(ctx, ro, false, func(vs *istionetworkingv1.VirtualService, _ []weighted) (bool, error) {
		var user []*istioapi.HTTPRoute
		var stable *istioapi.Destination
		for _, rt := range vs.Spec.Http {
			if strings.HasPrefix(rt.Name, managedPrefix) {
				continue
			}
			user = append(user, rt)
			for _, d := range rt.Route {
				if stable == nil && s.stable(d.Destination) {
					stable = d.Destination
				}
			}
		}
		var managed []*istioapi.HTTPRoute
		for _, mr := range routes {
			if stable == nil {
				return false, traffic.Invalid("VirtualService %q has no HTTP route to the stable %s for managed route %q", vs.Name, stableWhat(ro), mr.Name)
			}
			rt := &istioapi.HTTPRoute{Name: managedPrefix + mr.Name}
			canary := s.toCanary(stable)
			if mr.Header != nil {
				match := &istioapi.HTTPMatchRequest{Headers: map[string]*istioapi.StringMatch{}}
				for _, h := range mr.Header {
					match.Headers[h.HeaderName] = stringMatch(h.HeaderValue)
				}
				rt.Match = []*istioapi.HTTPMatchRequest{match}
				rt.Route = []*istioapi.HTTPRouteDestination{{Destination: canary, Weight: 100}}
			} else {
				for _, m := range mr.Mirror.Match {
					rt.Match = append(rt.Match, httpMatch(m))
				}
				rt.Route = []*istioapi.HTTPRouteDestination{{Destination: proto.Clone(stable).(*istioapi.Destination), Weight: 100}}
				rt.Mirror = canary
				if p := mr.Mirror.Percentage; p != nil {
					rt.MirrorPercentage = &istioapi.Percent{Value: float64(*p)}
				}
			}
			managed = append(managed, rt)
		}
		next := slices.Concat(managed, user)
		if equalRoutes(next, vs.Spec.Http) {
			return false, nil
		}
		vs.Spec.Http = next
		return true, nil
	})
}

func equalRoutes(a, b []*istioapi.HTTPRoute) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func stringMatch(m v1alpha1.StringMatch) *istioapi.StringMatch {
	switch {
	case m.Exact != "":
		return &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: m.Exact}}
	case m.Prefix != "":
		return &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: m.Prefix}}
	}
	return &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Regex{Regex: m.Regex}}
}

func httpMatch(m v1alpha1.RouteMatch) *istioapi.HTTPMatchRequest {
	out := &istioapi.HTTPMatchRequest{}
	if m.Method != nil {
		out.Method = stringMatch(*m.Method)
	}
	if m.Path != nil {
		out.Uri = stringMatch(*m.Path)
	}
	if len(m.Headers) > 0 {
		out.Headers = map[string]*istioapi.StringMatch{}
		for name, v := range m.Headers {
			out.Headers[name] = stringMatch(v)
		}
	}
	return out
}
