package gatewayapi

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

func rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			StableService: "web-stable", CanaryService: "web-canary",
			TrafficRouting: &v1alpha1.TrafficRouting{MaxTrafficWeight: 100, GatewayAPI: &v1alpha1.GatewayAPITrafficRouting{
				HTTPRoutes: []v1alpha1.GatewayAPIRoute{{Name: "web"}},
				GRPCRoutes: []v1alpha1.GatewayAPIRoute{{Name: "web-grpc"}},
			}},
		}}},
	}
}

func backend(name string, weight *int32) gatewayv1.BackendRef {
	return gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To[gatewayv1.PortNumber](80)}, Weight: weight}
}

// userRoute is an HTTPRoute as a user writes it: several rules, matches,
// filters on the rule and on the backend, and a rule for another service.
func userRoute() *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
			Hostnames:       []gatewayv1.Hostname{"shop.example"},
			Rules: []gatewayv1.HTTPRouteRule{
				{
					Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")}}},
					Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
						RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{
						BackendRef: backend("web-stable", nil),
						Filters: []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier,
							ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Served-By", Value: "web"}}}}},
					}},
				},
				{
					Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchExact), Value: ptr.To("/admin")}}},
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: backend("admin", nil)}},
				},
			},
		},
	}
}

func grpc() *gatewayv1.GRPCRoute {
	return &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web-grpc", Namespace: "shop"},
		Spec: gatewayv1.GRPCRouteSpec{Rules: []gatewayv1.GRPCRouteRule{{
			BackendRefs: []gatewayv1.GRPCBackendRef{{BackendRef: backend("web-stable", ptr.To[int32](100))}, {BackendRef: backend("web-canary", ptr.To[int32](0))}},
		}}},
	}
}

func newRouter(objs ...client.Object) (traffic.Router, client.Client) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objs...).Build()
	return New(c, c), c
}

// TestUserRouteSurvivesAWholeRollout walks the weights of a canary and checks
// after each write that only the parts we own differ from the user's route.
func TestUserRouteSurvivesAWholeRollout(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(userRoute(), grpc())
	ro := rollout()
	for _, w := range []int32{0, 20, 50, 100, 0} {
		if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: w}); err != nil {
			t.Fatal(err)
		}
		ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: w})
		if err != nil || !ok {
			t.Fatalf("weight %d not verified: %v %v", w, ok, err)
		}
		var got gatewayv1.HTTPRoute
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
			t.Fatal(err)
		}
		want := userRoute()
		rule := &want.Spec.Rules[0]
		rule.BackendRefs[0].Weight = ptr.To(100 - w)
		rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: backend("web-canary", ptr.To(w)), Filters: rule.BackendRefs[0].Filters})
		if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
			t.Errorf("weight %d: HTTPRoute spec (-want +got):\n%s", w, diff)
		}
		var g gatewayv1.GRPCRoute
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-grpc"}, &g); err != nil {
			t.Fatal(err)
		}
		wantG := grpc()
		wantG.Spec.Rules[0].BackendRefs[0].Weight = ptr.To(100 - w)
		wantG.Spec.Rules[0].BackendRefs[1].Weight = ptr.To(w)
		if diff := cmp.Diff(wantG.Spec, g.Spec); diff != "" {
			t.Errorf("weight %d: GRPCRoute spec (-want +got):\n%s", w, diff)
		}
	}
}

func TestVerifyNoticesADrift(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(userRoute(), grpc())
	ro := rollout()
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
		t.Fatal(err)
	}
	var hr gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &hr); err != nil {
		t.Fatal(err)
	}
	hr.Spec.Rules[0].BackendRefs[1].Weight = ptr.To[int32](0) // someone else
	if err := c.Update(ctx, &hr); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: 30}); err != nil || ok {
		t.Fatalf("a changed weight was verified: %v %v", ok, err)
	}
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Verify(ctx, ro, traffic.Weights{Canary: 30}); !ok {
		t.Error("the next SetWeight did not correct the drift")
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	noStable := userRoute()
	noStable.Spec.Rules = noStable.Spec.Rules[1:]
	rows := []struct {
		name string
		objs []client.Object
		want string
	}{
		{"valid", []client.Object{userRoute(), grpc()}, ""},
		{"missing HTTPRoute", []client.Object{grpc()}, `HTTPRoute "web" named in spec.strategy.canary.trafficRouting.gatewayAPI was not found in namespace shop`},
		{"missing GRPCRoute", []client.Object{userRoute()}, `GRPCRoute "web-grpc" named`},
		{"no stable backend", []client.Object{noStable, grpc()}, `HTTPRoute "web" has no backendRef to the stable Service "web-stable"`},
	}
	for _, row := range rows {
		r, _ := newRouter(row.objs...)
		err := r.Validate(ctx, rollout())
		switch {
		case row.want == "" && err != nil:
			t.Errorf("%s: %v", row.name, err)
		case row.want != "" && (err == nil || !traffic.IsInvalid(err) || !strings.Contains(err.Error(), row.want)):
			t.Errorf("%s: got %v, want an invalid-spec error containing %q", row.name, err, row.want)
		}
	}
}

// TestExperimentDestinations: experiment templates get backendRefs beside
// the canary's, with their weights taken from the stable; at 0 they go, and
// the route is the user's again but for the parts we own.
func TestExperimentDestinations(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(userRoute(), grpc())
	ro := rollout()
	with := traffic.Weights{Canary: 10, Extra: []traffic.Destination{{Service: "web-exp-baseline", Weight: 5}, {Service: "web-exp-canary", Weight: 5}}}
	for range 2 { // the second write changes nothing
		if err := r.SetWeight(ctx, ro, with); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := r.Verify(ctx, ro, with); err != nil || !ok {
		t.Fatalf("not verified: %v %v", ok, err)
	}
	var got gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	want := userRoute()
	rule := &want.Spec.Rules[0]
	filters := rule.BackendRefs[0].Filters
	rule.BackendRefs[0].Weight = ptr.To[int32](80)
	rule.BackendRefs = append(rule.BackendRefs,
		gatewayv1.HTTPBackendRef{BackendRef: backend("web-canary", ptr.To[int32](10)), Filters: filters},
		gatewayv1.HTTPBackendRef{BackendRef: backend("web-exp-baseline", ptr.To[int32](5)), Filters: filters},
		gatewayv1.HTTPBackendRef{BackendRef: backend("web-exp-canary", ptr.To[int32](5)), Filters: filters})
	if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
		t.Errorf("with experiment destinations (-want +got):\n%s", diff)
	}

	without := traffic.Weights{Canary: 10, Extra: []traffic.Destination{{Service: "web-exp-baseline"}, {Service: "web-exp-canary"}}}
	if ok, _ := r.Verify(ctx, ro, without); ok {
		t.Fatal("verified the removal before it happened")
	}
	if err := r.SetWeight(ctx, ro, without); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	want = userRoute()
	rule = &want.Spec.Rules[0]
	rule.BackendRefs[0].Weight = ptr.To[int32](90)
	rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: backend("web-canary", ptr.To[int32](10)), Filters: filters})
	if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
		t.Errorf("after removing them (-want +got):\n%s", diff)
	}
	if ok, err := r.Verify(ctx, ro, without); err != nil || !ok {
		t.Fatalf("removal not verified: %v %v", ok, err)
	}
}

func claimed(obj client.Object, owner string) client.Object {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[v1alpha1.ManagedByAnnotation] = owner
	obj.SetAnnotations(a)
	return obj
}

// TestOneOwner: a write claims the route for the Rollout and keeps the
// user's metadata; a route another Rollout claims is refused, and left as
// it is.
func TestOneOwner(t *testing.T) {
	ctx := context.Background()
	route := userRoute()
	route.Labels = map[string]string{"team": "shop"}
	route.Annotations = map[string]string{"note": "mine"}
	r, c := newRouter(route, grpc())
	ro := rollout()
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 10}); err != nil {
		t.Fatal(err)
	}
	var got gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"note": "mine", v1alpha1.ManagedByAnnotation: "web"}, got.Annotations); diff != "" {
		t.Errorf("annotations after a write (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"team": "shop"}, got.Labels); diff != "" {
		t.Errorf("labels after a write (-want +got):\n%s", diff)
	}
	if err := r.Validate(ctx, ro); err != nil {
		t.Errorf("the owner's Validate: %v", err)
	}

	other := rollout()
	other.Name = "other"
	const want = `HTTPRoute "web" is managed by Rollout "web"; a route can belong to one Rollout only`
	if err := r.Validate(ctx, other); !traffic.IsInvalid(err) || err.Error() != want {
		t.Errorf("another Rollout's Validate: got %v, want %q", err, want)
	}
	if err := r.SetWeight(ctx, other, traffic.Weights{Canary: 50}); !traffic.IsInvalid(err) || !strings.Contains(err.Error(), "is managed by") {
		t.Errorf("another Rollout's SetWeight: got %v, want an invalid-spec error", err)
	}
	if err := r.SetManagedRoutes(ctx, other, []traffic.ManagedRoute{{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "x", HeaderValue: v1alpha1.StringMatch{Exact: "y"}}}}}); !traffic.IsInvalid(err) || !strings.Contains(err.Error(), "is managed by") {
		t.Errorf("another Rollout's SetManagedRoutes: got %v, want an invalid-spec error", err)
	}
	var after gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &after); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, after); diff != "" {
		t.Errorf("another Rollout changed the route (-before +after):\n%s", diff)
	}
}

// TestRelease: after a canary with an experiment and a header route,
// Release leaves the user's route but for the canary backendRef at 0, and
// a second Release has nothing left to do.
func TestRelease(t *testing.T) {
	ctx := context.Background()
	route := userRoute()
	route.Annotations = map[string]string{"note": "mine"}
	var patches int
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(route, grpc()).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			patches++
			return c.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	r := New(c, c)
	ro := rollout()
	extra := []traffic.Destination{{Service: "web-exp", Weight: 10}}
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 20, Extra: extra}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetManagedRoutes(ctx, ro, []traffic.ManagedRoute{{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "x", HeaderValue: v1alpha1.StringMatch{Exact: "y"}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, ro, []traffic.Destination{{Service: "web-exp"}}); err != nil {
		t.Fatal(err)
	}
	var got gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	want := userRoute()
	rule := &want.Spec.Rules[0]
	rule.BackendRefs[0].Weight = ptr.To[int32](100)
	rule.BackendRefs = append(rule.BackendRefs, gatewayv1.HTTPBackendRef{BackendRef: backend("web-canary", ptr.To[int32](0)), Filters: rule.BackendRefs[0].Filters})
	if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
		t.Errorf("released HTTPRoute spec (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"note": "mine"}, got.Annotations); diff != "" {
		t.Errorf("released HTTPRoute annotations (-want +got):\n%s", diff)
	}
	var g gatewayv1.GRPCRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-grpc"}, &g); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(grpc().Spec, g.Spec); diff != "" {
		t.Errorf("released GRPCRoute spec (-want +got):\n%s", diff)
	}
	if _, ok := g.Annotations[v1alpha1.ManagedByAnnotation]; ok {
		t.Errorf("released GRPCRoute still claimed: %v", g.Annotations)
	}
	before := patches
	if err := r.Release(ctx, ro, nil); err != nil || patches != before {
		t.Errorf("second Release: err %v, %d more patches", err, patches-before)
	}
}

// TestReleaseLeavesWhatIsNotItsOwn: a route already gone is reported, one
// another Rollout claims is not touched, and a forbidden write is returned
// as such.
func TestReleaseLeavesWhatIsNotItsOwn(t *testing.T) {
	ctx := context.Background()
	ro := rollout()
	theirs := claimed(userRoute(), "other")
	r, c := newRouter(theirs) // the GRPCRoute is gone
	if err := r.Release(ctx, ro, nil); !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "GRPCRoute") {
		t.Fatalf("Release with the GRPCRoute gone = %v, want a NotFound error naming the GRPCRoute", err)
	}
	var got gatewayv1.HTTPRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(theirs.(*gatewayv1.HTTPRoute).Spec, got.Spec); diff != "" || got.Annotations[v1alpha1.ManagedByAnnotation] != "other" {
		t.Errorf("another Rollout's route changed: annotations %v, spec (-want +got):\n%s", got.Annotations, diff)
	}

	forbidden := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(claimed(userRoute(), "web")).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
			return apierrors.NewForbidden(schema.GroupResource{Group: gatewayv1.GroupName, Resource: "httproutes"}, "web", errors.New("no RBAC"))
		},
	}).Build()
	if err := New(forbidden, forbidden).Release(ctx, ro, nil); !apierrors.IsForbidden(err) {
		t.Errorf("forbidden Release: got %v, want a forbidden error", err)
	}
}

// TestConcurrentChangeIsNotOverwritten: a weight someone else changes
// between the router's read and its write fails the write's test instead
// of being overwritten.
func TestConcurrentChangeIsNotOverwritten(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(userRoute(), grpc()).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if obj.GetName() == "web-grpc" {
				var g gatewayv1.GRPCRoute
				if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), &g); err != nil {
					return err
				}
				g.Spec.Rules[0].BackendRefs[0].Weight = ptr.To[int32](77)
				if err := cl.Update(ctx, &g); err != nil {
					return err
				}
			}
			return cl.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	if err := New(c, c).SetWeight(ctx, rollout(), traffic.Weights{Canary: 40}); err == nil {
		t.Fatal("the write over a concurrent change succeeded")
	}
	var g gatewayv1.GRPCRoute
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-grpc"}, &g); err != nil {
		t.Fatal(err)
	}
	if w := ptr.Deref(g.Spec.Rules[0].BackendRefs[0].Weight, 0); w != 77 {
		t.Errorf("the concurrent change was overwritten: stable weight %d", w)
	}
}
