package istio

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	istioapi "istio.io/api/networking/v1alpha3"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

func rollout(dr bool) *v1alpha1.Rollout {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			StableService: "web-stable", CanaryService: "web-canary",
			TrafficRouting: &v1alpha1.TrafficRouting{MaxTrafficWeight: 100, Istio: &v1alpha1.IstioTrafficRouting{
				VirtualService: &v1alpha1.IstioVirtualService{
					Name: "web", Routes: []string{"primary"},
					TLSRoutes: []v1alpha1.IstioTLSRoute{{Port: 443, SNIHosts: []string{"web.example"}}},
					TCPRoutes: []v1alpha1.IstioTCPRoute{{Port: 9000}},
				},
			}},
		}}},
		Status: v1alpha1.RolloutStatus{StableRS: "s1", CurrentPodHash: "c2"},
	}
	if dr {
		ro.Spec.Strategy.Canary.TrafficRouting.Istio.DestinationRule = &v1alpha1.IstioDestinationRule{Name: "web", StableSubsetName: "stable", CanarySubsetName: "canary"}
	}
	return ro
}

func dest(host, subset string) *istioapi.Destination {
	return &istioapi.Destination{Host: host, Subset: subset}
}

func virtualService(stableHost, subset string) *istionetworkingv1.VirtualService {
	return &istionetworkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: istioapi.VirtualService{
			Hosts: []string{"web.example"},
			Http: []*istioapi.HTTPRoute{
				{Name: "other", Match: []*istioapi.HTTPMatchRequest{{Uri: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Prefix{Prefix: "/admin"}}}},
					Route: []*istioapi.HTTPRouteDestination{{Destination: dest("admin", "")}}},
				{Name: "primary", Route: []*istioapi.HTTPRouteDestination{{Destination: dest(stableHost, subset), Weight: 100}}},
			},
			Tls: []*istioapi.TLSRoute{{Match: []*istioapi.TLSMatchAttributes{{Port: 443, SniHosts: []string{"web.example"}}},
				Route: []*istioapi.RouteDestination{{Destination: dest(stableHost, subset), Weight: 100}}}},
			Tcp: []*istioapi.TCPRoute{{Match: []*istioapi.L4MatchAttributes{{Port: 9000}},
				Route: []*istioapi.RouteDestination{{Destination: dest(stableHost, subset), Weight: 100}}}},
		},
	}
}

func newRouter(objs ...client.Object) (traffic.Router, client.Client) {
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objs...).Build()
	return New(c, c), c
}

func TestHostLevelSplit(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(virtualService("web-stable.shop.svc.cluster.local", ""))
	ro := rollout(false)
	for _, w := range []int32{0, 20, 100, 0} {
		if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: w}); err != nil {
			t.Fatal(err)
		}
		if ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: w}); err != nil || !ok {
			t.Fatalf("weight %d not verified: %v %v", w, ok, err)
		}
		var got istionetworkingv1.VirtualService
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
			t.Fatal(err)
		}
		want := virtualService("web-stable.shop.svc.cluster.local", "")
		canary := dest("web-canary.shop.svc.cluster.local", "")
		want.Spec.Http[1].Route = []*istioapi.HTTPRouteDestination{{Destination: dest("web-stable.shop.svc.cluster.local", ""), Weight: 100 - w}, {Destination: canary, Weight: w}}
		want.Spec.Tls[0].Route = []*istioapi.RouteDestination{{Destination: dest("web-stable.shop.svc.cluster.local", ""), Weight: 100 - w}, {Destination: canary, Weight: w}}
		want.Spec.Tcp[0].Route = []*istioapi.RouteDestination{{Destination: dest("web-stable.shop.svc.cluster.local", ""), Weight: 100 - w}, {Destination: canary, Weight: w}}
		if diff := cmp.Diff(&want.Spec, &got.Spec, protocmp.Transform()); diff != "" {
			t.Errorf("weight %d (-want +got):\n%s", w, diff)
		}
	}
}

func TestSubsetLevelSplit(t *testing.T) {
	ctx := context.Background()
	drObj := &istionetworkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: istioapi.DestinationRule{Host: "web", Subsets: []*istioapi.Subset{
			{Name: "stable", Labels: map[string]string{"app": "web"}}, {Name: "canary", Labels: map[string]string{"app": "web"}},
		}},
	}
	r, c := newRouter(virtualService("web", "stable"), drObj)
	ro := rollout(true)
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
		t.Fatal(err)
	}
	var gotDR istionetworkingv1.DestinationRule
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &gotDR); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"stable": {"app": "web", v1alpha1.PodTemplateHashLabel: "s1"},
		"canary": {"app": "web", v1alpha1.PodTemplateHashLabel: "c2"},
	}
	for _, s := range gotDR.Spec.Subsets {
		if diff := cmp.Diff(want[s.Name], s.Labels); diff != "" {
			t.Errorf("subset %s labels (-want +got):\n%s", s.Name, diff)
		}
	}
	var got istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	wantRoute := []*istioapi.HTTPRouteDestination{{Destination: dest("web", "stable"), Weight: 70}, {Destination: dest("web", "canary"), Weight: 30}}
	if diff := cmp.Diff(wantRoute, got.Spec.Http[1].Route, protocmp.Transform()); diff != "" {
		t.Errorf("subset routes (-want +got):\n%s", diff)
	}
}

func TestManagedRoutes(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(virtualService("web-stable", ""))
	ro := rollout(false)
	routes := []traffic.ManagedRoute{
		{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "x-canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}}}},
		{Name: "m", Mirror: &v1alpha1.SetMirrorRoute{Name: "m", Percentage: ptr.To[int32](25), Match: []v1alpha1.RouteMatch{{Method: &v1alpha1.StringMatch{Exact: "GET"}}}}},
	}
	if err := r.SetManagedRoutes(ctx, ro, routes); err != nil {
		t.Fatal(err)
	}
	var got istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	want := virtualService("web-stable", "")
	want.Spec.Http = append([]*istioapi.HTTPRoute{
		{Name: "rollouts-h", Match: []*istioapi.HTTPMatchRequest{{Headers: map[string]*istioapi.StringMatch{"x-canary": {MatchType: &istioapi.StringMatch_Exact{Exact: "yes"}}}}},
			Route: []*istioapi.HTTPRouteDestination{{Destination: dest("web-canary", ""), Weight: 100}}},
		{Name: "rollouts-m", Match: []*istioapi.HTTPMatchRequest{{Method: &istioapi.StringMatch{MatchType: &istioapi.StringMatch_Exact{Exact: "GET"}}}},
			Route:  []*istioapi.HTTPRouteDestination{{Destination: dest("web-stable", ""), Weight: 100}},
			Mirror: dest("web-canary", ""), MirrorPercentage: &istioapi.Percent{Value: 25}},
	}, want.Spec.Http...)
	if diff := cmp.Diff(&want.Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("managed routes (-want +got):\n%s", diff)
	}
	if err := r.SetManagedRoutes(ctx, ro, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&virtualService("web-stable", "").Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("after removal (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	noRoute := virtualService("web-stable", "")
	noRoute.Spec.Http = noRoute.Spec.Http[:1]
	wrongHost := virtualService("elsewhere", "")
	rows := []struct {
		name string
		ro   *v1alpha1.Rollout
		objs []client.Object
		want string
	}{
		{"valid", rollout(false), []client.Object{virtualService("web-stable", "")}, ""},
		{"missing VirtualService", rollout(false), nil, `VirtualService "web" named in spec.strategy.canary.trafficRouting.istio was not found in namespace shop`},
		{"route name not found", rollout(false), []client.Object{noRoute}, `HTTP route "primary" not found in VirtualService "web"`},
		{"no stable destination", rollout(false), []client.Object{wrongHost}, `has no destination for the stable Service "web-stable"`},
		{"missing DestinationRule", rollout(true), []client.Object{virtualService("web", "stable")}, `DestinationRule "web" named`},
	}
	for _, row := range rows {
		r, _ := newRouter(row.objs...)
		err := r.Validate(ctx, row.ro)
		switch {
		case row.want == "" && err != nil:
			t.Errorf("%s: %v", row.name, err)
		case row.want != "" && (err == nil || !traffic.IsInvalid(err) || !strings.Contains(err.Error(), row.want)):
			t.Errorf("%s: got %v, want an invalid-spec error containing %q", row.name, err, row.want)
		}
	}
}

// TestExperimentDestinations: with a host-level split, experiment templates'
// Services get destinations of their own (in the stable host's form) and
// are removed at 0; a subset-level split refuses them.
func TestExperimentDestinations(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(virtualService("web-stable.shop.svc.cluster.local", ""))
	ro := rollout(false)
	with := traffic.Weights{Canary: 10, Extra: []traffic.Destination{{Service: "exp-baseline", Weight: 5}, {Service: "exp-canary", Weight: 5}}}
	if err := r.SetWeight(ctx, ro, with); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Verify(ctx, ro, with); err != nil || !ok {
		t.Fatalf("not verified: %v %v", ok, err)
	}
	var got istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	wantRoute := []*istioapi.HTTPRouteDestination{
		{Destination: dest("web-stable.shop.svc.cluster.local", ""), Weight: 80},
		{Destination: dest("web-canary.shop.svc.cluster.local", ""), Weight: 10},
		{Destination: dest("exp-baseline.shop.svc.cluster.local", ""), Weight: 5},
		{Destination: dest("exp-canary.shop.svc.cluster.local", ""), Weight: 5},
	}
	if diff := cmp.Diff(wantRoute, got.Spec.Http[1].Route, protocmp.Transform()); diff != "" {
		t.Errorf("HTTP route with experiments (-want +got):\n%s", diff)
	}
	without := traffic.Weights{Canary: 10, Extra: []traffic.Destination{{Service: "exp-baseline"}, {Service: "exp-canary"}}}
	if err := r.SetWeight(ctx, ro, without); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	if tcp := got.Spec.Tcp[0].Route; len(tcp) != 2 || tcp[0].Weight != 90 || tcp[1].Weight != 10 {
		t.Errorf("TCP route after removal: %v", tcp)
	}
	if got.Spec.Http[1].Route[0].Weight != 90 || len(got.Spec.Http[1].Route) != 2 {
		t.Errorf("HTTP route after removal: %v", got.Spec.Http[1].Route)
	}

	drObj := &istionetworkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       istioapi.DestinationRule{Host: "web", Subsets: []*istioapi.Subset{{Name: "stable"}, {Name: "canary"}}},
	}
	r, _ = newRouter(virtualService("web", "stable"), drObj)
	if err := r.SetWeight(ctx, rollout(true), with); !traffic.IsInvalid(err) || !strings.Contains(err.Error(), "host-level") {
		t.Errorf("subset-level split with experiment destinations: %v", err)
	}
}

func destinationRule(annotations map[string]string) *istionetworkingv1.DestinationRule {
	return &istionetworkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: annotations},
		Spec: istioapi.DestinationRule{Host: "web", Subsets: []*istioapi.Subset{
			{Name: "stable", Labels: map[string]string{"app": "web"}}, {Name: "canary", Labels: map[string]string{"app": "web"}},
		}},
	}
}

// TestOneOwner: writes claim the VirtualService and the DestinationRule; a
// Rollout naming objects another Rollout claims is refused.
func TestOneOwner(t *testing.T) {
	ctx := context.Background()
	vs := virtualService("web", "stable")
	vs.Annotations = map[string]string{"note": "mine"}
	r, c := newRouter(vs, destinationRule(nil))
	ro := rollout(true)
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 10}); err != nil {
		t.Fatal(err)
	}
	var gotVS istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &gotVS); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"note": "mine", v1alpha1.ManagedByAnnotation: "web"}, gotVS.Annotations); diff != "" {
		t.Errorf("VirtualService annotations (-want +got):\n%s", diff)
	}
	var gotDR istionetworkingv1.DestinationRule
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &gotDR); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{v1alpha1.ManagedByAnnotation: "web"}, gotDR.Annotations); diff != "" {
		t.Errorf("DestinationRule annotations (-want +got):\n%s", diff)
	}
	if err := r.Validate(ctx, ro); err != nil {
		t.Errorf("the owner's Validate: %v", err)
	}
	other := rollout(false)
	other.Name = "other"
	const want = `VirtualService "web" is managed by Rollout "web"; a route can belong to one Rollout only`
	if err := r.Validate(ctx, other); !traffic.IsInvalid(err) || err.Error() != want {
		t.Errorf("another Rollout's Validate: got %v, want %q", err, want)
	}
	other.Spec.Strategy.Canary.TrafficRouting.Istio.DestinationRule = rollout(true).Spec.Strategy.Canary.TrafficRouting.Istio.DestinationRule
	if err := r.SetWeight(ctx, other, traffic.Weights{Canary: 50}); !traffic.IsInvalid(err) || !strings.Contains(err.Error(), "is managed by") {
		t.Errorf("another Rollout's SetWeight: got %v, want an invalid-spec error", err)
	}
	if err := r.SetManagedRoutes(ctx, other, []traffic.ManagedRoute{{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "x", HeaderValue: v1alpha1.StringMatch{Exact: "y"}}}}}); !traffic.IsInvalid(err) || !strings.Contains(err.Error(), "is managed by") {
		t.Errorf("another Rollout's SetManagedRoutes: got %v, want an invalid-spec error", err)
	}
	var after istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &after); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&gotVS.Spec, &after.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("another Rollout changed the VirtualService (-before +after):\n%s", diff)
	}

	// A DestinationRule claimed by another Rollout is refused too.
	r, _ = newRouter(virtualService("web", "stable"), destinationRule(map[string]string{v1alpha1.ManagedByAnnotation: "other"}))
	const wantDR = `DestinationRule "web" is managed by Rollout "other"; a route can belong to one Rollout only`
	if err := r.Validate(ctx, ro); !traffic.IsInvalid(err) || err.Error() != wantDR {
		t.Errorf("Validate with a DestinationRule of another Rollout: got %v, want %q", err, wantDR)
	}
}

// TestReleaseHostLevel: after a canary with an experiment and managed
// routes, Release gives the user's VirtualService back with the canary
// destinations at 0.
func TestReleaseHostLevel(t *testing.T) {
	ctx := context.Background()
	const stable = "web-stable.shop.svc.cluster.local"
	vs := virtualService(stable, "")
	vs.Annotations = map[string]string{"note": "mine"}
	r, c := newRouter(vs)
	ro := rollout(false)
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 20, Extra: []traffic.Destination{{Service: "exp", Weight: 10}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetManagedRoutes(ctx, ro, []traffic.ManagedRoute{{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "x", HeaderValue: v1alpha1.StringMatch{Exact: "y"}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, ro, []traffic.Destination{{Service: "exp"}}); err != nil {
		t.Fatal(err)
	}
	var got istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	want := virtualService(stable, "")
	canary := dest("web-canary.shop.svc.cluster.local", "")
	want.Spec.Http[1].Route = []*istioapi.HTTPRouteDestination{{Destination: dest(stable, ""), Weight: 100}, {Destination: canary}}
	want.Spec.Tls[0].Route = []*istioapi.RouteDestination{{Destination: dest(stable, ""), Weight: 100}, {Destination: canary}}
	want.Spec.Tcp[0].Route = []*istioapi.RouteDestination{{Destination: dest(stable, ""), Weight: 100}, {Destination: canary}}
	if diff := cmp.Diff(&want.Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("released VirtualService (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"note": "mine"}, got.Annotations); diff != "" {
		t.Errorf("released VirtualService annotations (-want +got):\n%s", diff)
	}
}

// TestReleaseSubsetLevel: the DestinationRule keeps its subset labels and
// loses only the claim; a VirtualService of another Rollout is not touched.
func TestReleaseSubsetLevel(t *testing.T) {
	ctx := context.Background()
	r, c := newRouter(virtualService("web", "stable"), destinationRule(nil))
	ro := rollout(true)
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
		t.Fatal(err)
	}
	var labelled istionetworkingv1.DestinationRule
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &labelled); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, ro, nil); err != nil {
		t.Fatal(err)
	}
	var got istionetworkingv1.DestinationRule
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&labelled.Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("released DestinationRule spec (-want +got):\n%s", diff)
	}
	if len(got.Annotations) != 0 {
		t.Errorf("released DestinationRule annotations: %v", got.Annotations)
	}
	var vs istionetworkingv1.VirtualService
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &vs); err != nil {
		t.Fatal(err)
	}
	wantRoute := []*istioapi.HTTPRouteDestination{{Destination: dest("web", "stable"), Weight: 100}, {Destination: dest("web", "canary")}}
	if diff := cmp.Diff(wantRoute, vs.Spec.Http[1].Route, protocmp.Transform()); diff != "" {
		t.Errorf("released subset routes (-want +got):\n%s", diff)
	}

	theirs := virtualService("web", "stable")
	theirs.Annotations = map[string]string{v1alpha1.ManagedByAnnotation: "other"}
	theirs.Spec.Http[1].Route[0].Weight = 60
	r, c = newRouter(theirs) // and the DestinationRule is gone
	if err := r.Release(ctx, ro, nil); !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "DestinationRule") {
		t.Fatalf("Release with the DestinationRule gone = %v, want a NotFound error naming the DestinationRule", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &vs); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&theirs.Spec, &vs.Spec, protocmp.Transform()); diff != "" || vs.Annotations[v1alpha1.ManagedByAnnotation] != "other" {
		t.Errorf("another Rollout's VirtualService changed: %v (-want +got):\n%s", vs.Annotations, diff)
	}
}
