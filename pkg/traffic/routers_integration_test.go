//go:build integration

package traffic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/pkg/traffic/gatewayapi"
	"github.com/kubeseed/rollouts/pkg/traffic/istio"
	"github.com/kubeseed/rollouts/pkg/traffic/nginx"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

const (
	lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
	userManager = "kubectl-client-side-apply"
)

// routerClients returns what the routers get in the controller: a client
// reading through a manager's cache (with the production transform, which
// trims managedFields and kubectl's last-applied copy) and the API reader.
func routerClients(t *testing.T) (client.Client, client.Reader) {
	t.Helper()
	var mgr manager.Manager
	env.StartManager(t, func(m manager.Manager, _ controller.Options) error {
		mgr = m
		return nil
	})
	if !mgr.GetCache().WaitForCacheSync(context.Background()) {
		t.Fatal("cache did not start")
	}
	return mgr.GetClient(), mgr.GetAPIReader()
}

// kubectlApply creates the object in manifest in ns as `kubectl apply` does:
// with the last-applied annotation and kubectl's field manager. It returns
// the object's labels and annotations as created.
func kubectlApply(t *testing.T, ns, manifest string) (labels, annotations map[string]string) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetNamespace(ns)
	applied, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[lastApplied] = string(applied) + "\n"
	u.SetAnnotations(a)
	return create(t, u)
}

// create creates u as the user and returns its labels and annotations.
func create(t *testing.T, u *unstructured.Unstructured) (labels, annotations map[string]string) {
	t.Helper()
	if err := env.Client.Create(context.Background(), u, client.FieldOwner(userManager)); err != nil {
		t.Fatal(err)
	}
	return u.GetLabels(), u.GetAnnotations()
}

// live reads the object named web as the API server stores it.
func live(t *testing.T, ns, apiVersion, kind string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// checkMetadata: the user's labels and annotations, kubectl's last-applied
// copy included, are exactly as created; the only other annotation is the
// claim, when owner is set.
func checkMetadata(t *testing.T, step string, u *unstructured.Unstructured, labels, annotations map[string]string, owner string) {
	t.Helper()
	want := map[string]string{}
	for k, v := range annotations {
		want[k] = v
	}
	if owner != "" {
		want[v1alpha1.ManagedByAnnotation] = owner
	}
	// An object without annotations gets the map with the claim; the API
	// server drops it once empty again.
	if diff := cmp.Diff(want, u.GetAnnotations(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: annotations (-want +got):\n%s", step, diff)
	}
	if diff := cmp.Diff(labels, u.GetLabels()); diff != "" {
		t.Errorf("%s: labels (-want +got):\n%s", step, diff)
	}
}

// owned returns the fields a manager owns in an object (its fieldsV1).
func owned(t *testing.T, u *unstructured.Unstructured, manager string) map[string]any {
	t.Helper()
	for _, e := range u.GetManagedFields() {
		if e.Manager == manager && e.Subresource == "" && e.FieldsV1 != nil {
			var out map[string]any
			if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &out); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	return nil
}

func fields(t *testing.T, s string) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// retried runs a router call as the reconciler does: a conflict (a stale
// cache, or another writer) is tried again from a fresh read.
func retried(t *testing.T, what string, call func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		last = call()
		if apierrors.IsConflict(last) {
			return false, nil
		}
		return last == nil, last
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %v)", what, err, last)
	}
}

// cached waits until the cache of c holds a version of obj for which ok,
// reading into obj.
func cached(t *testing.T, c client.Reader, obj client.Object, ok func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return ok(), nil
	})
	if err != nil {
		t.Fatalf("waiting for the cache: %v", err)
	}
}

// racing is a client whose next patch comes right after another client's
// write: what happens when someone edits the object between the router's
// read and its write.
type racing struct {
	client.Client
	meanwhile func()
}

func (r *racing) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if f := r.meanwhile; f != nil {
		r.meanwhile = nil
		f()
	}
	return r.Client.Patch(ctx, obj, patch, opts...)
}

// userPatch is another client's JSON patch of an object.
func userPatch(t *testing.T, obj client.Object, patch string) {
	t.Helper()
	if err := env.Client.Patch(context.Background(), obj, client.RawPatch(types.JSONPatchType, []byte(patch)), client.FieldOwner("someone-else")); err != nil {
		t.Fatalf("the other client's patch %s: %v", patch, err)
	}
}

func rollout(ns string, tr v1alpha1.TrafficRouting) *v1alpha1.Rollout {
	tr.MaxTrafficWeight = 100
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, UID: "uid-web"},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			StableService: "web-stable", CanaryService: "web-canary", TrafficRouting: &tr,
		}}},
	}
}

var header = []traffic.ManagedRoute{{Name: "header", Header: []v1alpha1.HeaderMatch{{HeaderName: "X-Canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}}}}}

const httpRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  labels: {app: web, team: shop}
  annotations: {owner: team-shop@example.com}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Env, value: prod}]}
    backendRefs:
    - {name: web-stable, port: 80}
  - matches: [{path: {type: Exact, value: /admin}}]
    backendRefs:
    - {name: admin, port: 80}
`

// TestIntegrationGatewayAPIRouterOwnsOnlyWhatItWrites drives an HTTPRoute
// applied with kubectl through weights, a header route and Release against
// a real API server, reading through the trimmed cache as the controller
// does.
func TestIntegrationGatewayAPIRouterOwnsOnlyWhatItWrites(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	c, apiReader := routerClients(t)
	labels, annotations := kubectlApply(t, ns, httpRoute)
	ro := rollout(ns, v1alpha1.TrafficRouting{GatewayAPI: &v1alpha1.GatewayAPITrafficRouting{HTTPRoutes: []v1alpha1.GatewayAPIRoute{{Name: "web"}}}})
	r := gatewayapi.New(c, apiReader)
	get := func() (*gatewayv1.HTTPRoute, *unstructured.Unstructured) {
		var hr gatewayv1.HTTPRoute
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &hr); err != nil {
			t.Fatal(err)
		}
		return &hr, live(t, ns, "gateway.networking.k8s.io/v1", "HTTPRoute")
	}
	original, _ := get()

	retried(t, "SetWeight 30", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}) })
	retried(t, "SetManagedRoutes", func() error { return r.SetManagedRoutes(ctx, ro, header) })
	if ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: 30}); err != nil || !ok {
		t.Fatalf("weight 30 not verified: %v %v", ok, err)
	}
	hr, u := get()
	checkMetadata(t, "after SetWeight and SetManagedRoutes", u, labels, annotations, "web")
	if n := ptr.Deref(hr.Spec.Rules[0].Name, ""); n != "rollouts-header" {
		t.Errorf("first rule %q, want the managed rollouts-header", n)
	}
	// spec.rules is listType=atomic in the Gateway API CRD: whoever changes
	// any part of it (a weight) owns the whole list. Beyond it the
	// controller owns only its claim: not the labels, not the user's
	// annotations, not parentRefs or hostnames.
	want := fields(t, `{"f:metadata":{"f:annotations":{"f:rollouts.kubeseed.io/managed-by":{}}},"f:spec":{"f:rules":{}}}`)
	if diff := cmp.Diff(want, owned(t, u, v1alpha1.FieldManager)); diff != "" {
		t.Errorf("fields owned by %s (-want +got):\n%s", v1alpha1.FieldManager, diff)
	}
	user := owned(t, u, userManager)
	for _, path := range [][]string{{"f:metadata", "f:labels", "f:team"}, {"f:metadata", "f:annotations", "f:" + lastApplied}, {"f:spec", "f:hostnames"}, {"f:spec", "f:parentRefs"}} {
		if !has(user, path) {
			t.Errorf("%s no longer owns %v: %v", userManager, path, user)
		}
	}

	// Someone changes the stable weight between the router's read (from a
	// cache that is up to date) and its write: the write's test fails, as a
	// conflict, and their weight stays.
	cached(t, c, hr, func() bool { return len(hr.Spec.Rules) == 3 })
	userRule := "/spec/rules/1/backendRefs/0/weight"
	racer := &racing{Client: c, meanwhile: func() {
		userPatch(t, hr, `[{"op":"replace","path":"`+userRule+`","value":60}]`)
	}}
	if err := gatewayapi.New(racer, apiReader).SetWeight(ctx, ro, traffic.Weights{Canary: 50}); !apierrors.IsConflict(err) {
		t.Fatalf("SetWeight over a concurrent weight change: got %v, want a conflict", err)
	}
	if hr, _ = get(); ptr.Deref(hr.Spec.Rules[1].BackendRefs[0].Weight, 0) != 60 {
		t.Errorf("the concurrent change was overwritten: %v", hr.Spec.Rules[1].BackendRefs)
	}
	// Once the cache has seen that, a change elsewhere in the route between
	// read and write neither conflicts nor is lost.
	cached(t, c, hr, func() bool { return ptr.Deref(hr.Spec.Rules[1].BackendRefs[0].Weight, 0) == 60 })
	racer.meanwhile = func() {
		userPatch(t, hr, `[{"op":"add","path":"/spec/hostnames/-","value":"www.shop.example"}]`)
	}
	if err := gatewayapi.New(racer, apiReader).SetWeight(ctx, ro, traffic.Weights{Canary: 50}); err != nil {
		t.Fatalf("SetWeight beside a concurrent change elsewhere: %v", err)
	}
	if hr, _ = get(); !cmp.Equal(hr.Spec.Hostnames, []gatewayv1.Hostname{"shop.example", "www.shop.example"}) {
		t.Errorf("hostnames %v: the concurrent change was lost", hr.Spec.Hostnames)
	}

	// A validation error stays one: only a patch that no longer applies is
	// a conflict.
	err := jsonpatch.Apply(ctx, env.Client, hr.DeepCopy(), []jsonpatch.Op{{Op: jsonpatch.Replace, Path: userRule, Value: json.RawMessage(`-1`)}})
	if !apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		t.Errorf("an invalid weight: got %v, want a validation error", err)
	}

	retried(t, "Release", func() error { return r.Release(ctx, ro, nil) })
	hr, u = get()
	checkMetadata(t, "after Release", u, labels, annotations, "")
	wantSpec := original.Spec.DeepCopy()
	wantSpec.Hostnames = append(wantSpec.Hostnames, "www.shop.example")
	rule := &wantSpec.Rules[0]
	rule.BackendRefs[0].Weight = ptr.To[int32](100)
	canary := rule.BackendRefs[0].DeepCopy()
	canary.Name, canary.Weight = "web-canary", ptr.To[int32](0)
	rule.BackendRefs = append(rule.BackendRefs, *canary)
	if diff := cmp.Diff(*wantSpec, hr.Spec); diff != "" {
		t.Errorf("released route (-want +got):\n%s", diff)
	}
}

// TestIntegrationClaimWithoutAnnotationsOfItsOwn: the claim works on a route
// whose only annotation is kubectl's last-applied copy, which the cache
// trims (so the router sees an empty map), and on one with no annotations at
// all (where the claim creates the map).
func TestIntegrationClaimWithoutAnnotationsOfItsOwn(t *testing.T) {
	ctx := context.Background()
	c, apiReader := routerClients(t)
	const bare = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
  - backendRefs: [{name: web-stable, port: 80}]
`
	for _, applied := range []bool{true, false} {
		ns := env.Namespace(t)
		var annotations map[string]string
		if applied {
			_, annotations = kubectlApply(t, ns, bare)
		} else {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(bare), &u.Object); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(ns)
			_, annotations = create(t, u)
		}
		// The informer already runs: let it see the new route.
		cached(t, c, &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}, func() bool { return true })
		ro := rollout(ns, v1alpha1.TrafficRouting{GatewayAPI: &v1alpha1.GatewayAPITrafficRouting{HTTPRoutes: []v1alpha1.GatewayAPIRoute{{Name: "web"}}}})
		r := gatewayapi.New(c, apiReader)
		retried(t, "SetWeight 10", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 10}) })
		step := fmt.Sprintf("applied with kubectl: %v", applied)
		checkMetadata(t, step, live(t, ns, "gateway.networking.k8s.io/v1", "HTTPRoute"), nil, annotations, "web")
		retried(t, "Release", func() error { return r.Release(ctx, ro, nil) })
		checkMetadata(t, step+", released", live(t, ns, "gateway.networking.k8s.io/v1", "HTTPRoute"), nil, annotations, "")
	}
}

const virtualService = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  labels: {app: web}
  annotations: {owner: team-shop@example.com}
spec:
  hosts: [shop.example]
  http:
  - name: admin
    match: [{uri: {prefix: /admin}, ignoreUriCase: false}]
    route:
    - destination: {host: admin}
  - name: primary
    route:
    - destination: {host: web-stable}
      weight: 100
    - destination: {host: web-canary}
      weight: 0
`

// TestIntegrationIstioRouterOwnsOnlyWhatItWrites does the same with a
// VirtualService whose stored form differs from what Istio's Go types write
// (explicit zero values: weight: 0, ignoreUriCase: false): the router never
// writes the user's routes back, so they keep it.
func TestIntegrationIstioRouterOwnsOnlyWhatItWrites(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	c, apiReader := routerClients(t)
	labels, annotations := kubectlApply(t, ns, virtualService)
	ro := rollout(ns, v1alpha1.TrafficRouting{Istio: &v1alpha1.IstioTrafficRouting{VirtualService: &v1alpha1.IstioVirtualService{Name: "web", Routes: []string{"primary"}}}})
	r := istio.New(c, apiReader)
	get := func() *unstructured.Unstructured {
		return live(t, ns, "networking.istio.io/v1", "VirtualService")
	}
	adminRoute := func(u *unstructured.Unstructured) any {
		routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
		for _, rt := range routes {
			if rt.(map[string]any)["name"] == "admin" {
				return rt
			}
		}
		return nil
	}
	admin := adminRoute(get())

	retried(t, "SetWeight 20", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 20}) })
	retried(t, "SetManagedRoutes", func() error { return r.SetManagedRoutes(ctx, ro, header) })
	if ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: 20}); err != nil || !ok {
		t.Fatalf("weight 20 not verified: %v %v", ok, err)
	}
	u := get()
	checkMetadata(t, "after SetWeight and SetManagedRoutes", u, labels, annotations, "web")
	if diff := cmp.Diff(admin, adminRoute(u)); diff != "" {
		t.Errorf("the user's admin route was rewritten (-want +got):\n%s", diff)
	}
	// spec.http has no listType in Istio's CRD, so it is atomic: changing a
	// weight in it owns the list. Nothing else but the claim.
	want := fields(t, `{"f:metadata":{"f:annotations":{"f:rollouts.kubeseed.io/managed-by":{}}},"f:spec":{"f:http":{}}}`)
	if diff := cmp.Diff(want, owned(t, u, v1alpha1.FieldManager)); diff != "" {
		t.Errorf("fields owned by %s (-want +got):\n%s", v1alpha1.FieldManager, diff)
	}

	var vs istionetworkingv1.VirtualService
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &vs); err != nil {
		t.Fatal(err)
	}
	if vs.Spec.Http[0].Name != "rollouts-header" || vs.Spec.Http[2].Route[1].Weight != 20 {
		t.Fatalf("unexpected routes: %v", vs.Spec.Http)
	}
	cached(t, c, &vs, func() bool { return len(vs.Spec.Http) == 3 })
	racer := &racing{Client: c, meanwhile: func() {
		userPatch(t, &vs, `[{"op":"replace","path":"/spec/http/2/route/0/weight","value":90},{"op":"replace","path":"/spec/http/2/route/1/weight","value":10}]`)
	}}
	if err := istio.New(racer, apiReader).SetWeight(ctx, ro, traffic.Weights{Canary: 50}); !apierrors.IsConflict(err) {
		t.Fatalf("SetWeight over a concurrent weight change: got %v, want a conflict", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &vs); err != nil {
		t.Fatal(err)
	}
	if w := vs.Spec.Http[2].Route[0].Weight; w != 90 {
		t.Errorf("the concurrent change was overwritten: stable weight %d", w)
	}

	retried(t, "Release", func() error { return r.Release(ctx, ro, nil) })
	u = get()
	checkMetadata(t, "after Release", u, labels, annotations, "")
	if diff := cmp.Diff(admin, adminRoute(u)); diff != "" {
		t.Errorf("the user's admin route was rewritten (-want +got):\n%s", diff)
	}
	routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
	wantRoutes := fields(t, `{"http":[
		{"name":"admin","match":[{"uri":{"prefix":"/admin"},"ignoreUriCase":false}],"route":[{"destination":{"host":"admin"}}]},
		{"name":"primary","route":[{"destination":{"host":"web-stable"},"weight":100},{"destination":{"host":"web-canary"}}]}]}`)
	if diff := cmp.Diff(wantRoutes["http"], asJSON(t, routes)); diff != "" {
		t.Errorf("released routes (-want +got):\n%s", diff)
	}
}

const ingress = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  labels: {app: web}
  annotations: {nginx.ingress.kubernetes.io/rewrite-target: /}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {number: 80}}}}
`

// TestIntegrationNginxRouterClaimsOnly: the stable Ingress gains only the
// claim, and Release deletes the canary Ingress and drops the claim.
func TestIntegrationNginxRouterClaimsOnly(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	c, apiReader := routerClients(t)
	labels, annotations := kubectlApply(t, ns, ingress)
	ro := rollout(ns, v1alpha1.TrafficRouting{Nginx: &v1alpha1.NginxTrafficRouting{StableIngress: "web"}})
	r := nginx.New(c, apiReader)
	retried(t, "SetWeight 10", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 10}) })
	u := live(t, ns, "networking.k8s.io/v1", "Ingress")
	checkMetadata(t, "after SetWeight", u, labels, annotations, "web")
	want := fields(t, `{"f:metadata":{"f:annotations":{"f:rollouts.kubeseed.io/managed-by":{}}}}`)
	if diff := cmp.Diff(want, owned(t, u, v1alpha1.FieldManager)); diff != "" {
		t.Errorf("fields of the stable Ingress owned by %s (-want +got):\n%s", v1alpha1.FieldManager, diff)
	}
	canary := client.ObjectKey{Namespace: ns, Name: nginx.CanaryName(ro, "web")}
	if err := env.Client.Get(ctx, canary, &networkingv1.Ingress{}); err != nil {
		t.Fatalf("canary Ingress: %v", err)
	}
	retried(t, "Release", func() error { return r.Release(ctx, ro, nil) })
	checkMetadata(t, "after Release", live(t, ns, "networking.k8s.io/v1", "Ingress"), labels, annotations, "")
	if err := env.Client.Get(ctx, canary, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Ingress after Release: %v, want it gone", err)
	}
}

// asJSON is v as encoding/json decodes it (float64 numbers, as in a want
// written in JSON).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// has reports whether a fieldsV1 set contains path.
func has(set map[string]any, path []string) bool {
	for _, p := range path {
		next, ok := set[p].(map[string]any)
		if !ok {
			return false
		}
		set = next
	}
	return true
}
