package gatewayapi

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

func TestManagedRoutes(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(userRoute(), grpc())
	ro := rollout()
	header := traffic.ManagedRoute{Name: "header-route", Header: []v1alpha1.HeaderMatch{
		{HeaderName: "X-Canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}},
		{HeaderName: "X-Team", HeaderValue: v1alpha1.StringMatch{Prefix: "pay."}},
	}}
	mirror := traffic.ManagedRoute{Name: "mirror-route", Mirror: &v1alpha1.SetMirrorRoute{
		Name: "mirror-route", Percentage: ptr.To[int32](50),
		Match: []v1alpha1.RouteMatch{{Method: &v1alpha1.StringMatch{Exact: "GET"}, Path: &v1alpha1.StringMatch{Prefix: "/api"}}},
	}}
	stableRef := backend("web-stable", nil)
	canaryRef := backend("web-canary", nil)
	wantHeader := gatewayv1.HTTPRouteRule{
		Name: ptr.To[gatewayv1.SectionName]("rollouts-header-route"),
		Matches: []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{
			{Type: ptr.To(gatewayv1.HeaderMatchExact), Name: "X-Canary", Value: "yes"},
			{Type: ptr.To(gatewayv1.HeaderMatchRegularExpression), Name: "X-Team", Value: `^pay\..*`},
		}}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: canaryRef}},
	}
	wantMirror := gatewayv1.HTTPRouteRule{
		Name:        ptr.To[gatewayv1.SectionName]("rollouts-mirror-route"),
		Matches:     []gatewayv1.HTTPRouteMatch{{Method: ptr.To(gatewayv1.HTTPMethod("GET")), Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/api")}}},
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: stableRef}},
		Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror, RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{
			BackendRef: canaryRef.BackendObjectReference, Percent: ptr.To[int32](50)}}},
	}
	get := func() gatewayv1.HTTPRouteSpec {
		var hr gatewayv1.HTTPRoute
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &hr); err != nil {
			t.Fatal(err)
		}
		return hr.Spec
	}
	steps := []struct {
		name   string
		routes []traffic.ManagedRoute
		first  []gatewayv1.HTTPRouteRule
	}{
		{"header route added above the user's rules", []traffic.ManagedRoute{header}, []gatewayv1.HTTPRouteRule{wantHeader}},
		{"mirror added, in precedence order", []traffic.ManagedRoute{header, mirror}, []gatewayv1.HTTPRouteRule{wantHeader, wantMirror}},
		{"header removed", []traffic.ManagedRoute{mirror}, []gatewayv1.HTTPRouteRule{wantMirror}},
		{"all removed", nil, nil},
	}
	for _, s := range steps {
		if err := r.SetManagedRoutes(ctx, ro, s.routes); err != nil {
			t.Fatal(err)
		}
		// Weights still work next to managed rules and never touch them.
		if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
			t.Fatal(err)
		}
		want := userRoute()
		rule := &want.Spec.Rules[0]
		rule.BackendRefs[0].Weight = ptr.To[int32](70)
		rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: backend("web-canary", ptr.To[int32](30)), Filters: rule.BackendRefs[0].Filters})
		want.Spec.Rules = append(s.first, want.Spec.Rules...)
		if diff := cmp.Diff(want.Spec, get()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}
