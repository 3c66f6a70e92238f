package nginx

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

func rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "uid-web"},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
			StableService: "web-stable", CanaryService: "web-canary",
			TrafficRouting: &v1alpha1.TrafficRouting{MaxTrafficWeight: 100, Nginx: &v1alpha1.NginxTrafficRouting{
				StableIngress:                "web",
				AdditionalIngressAnnotations: map[string]string{"canary-by-cookie": "beta"},
			}},
		}}},
	}
}

func backend(svc string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}
}

func stableIngress() *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"team": "shop"},
			Annotations: map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("nginx"),
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{"shop.example"}, SecretName: "tls"}},
			Rules: []networkingv1.IngressRule{{Host: "shop.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{
					{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: backend("web-stable")},
					{Path: "/static", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: backend("assets")},
				},
			}}}},
		},
	}
}

func TestCanaryIngressThroughARollout(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(stableIngress()).Build()
	r := New(c, c)
	ro := rollout()
	canary := func() *networkingv1.Ingress {
		var ing networkingv1.Ingress
		if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-web-canary"}, &ing); err != nil {
			t.Fatal(err)
		}
		return &ing
	}
	wantSpec := stableIngress().Spec
	wantSpec.Rules[0].HTTP.Paths[0].Backend = backend("web-canary")
	base := map[string]string{
		"nginx.ingress.kubernetes.io/rewrite-target":      "/",
		"nginx.ingress.kubernetes.io/canary":              "true",
		"nginx.ingress.kubernetes.io/canary-weight-total": "100",
		"nginx.ingress.kubernetes.io/canary-by-cookie":    "beta",
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	steps := []struct {
		name string
		do   func() error
		want map[string]string
	}{
		{"weight 20", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 20}) }, with(map[string]string{"nginx.ingress.kubernetes.io/canary-weight": "20"})},
		{"header route", func() error {
			return r.SetManagedRoutes(ctx, ro, []traffic.ManagedRoute{{Name: "h", Header: []v1alpha1.HeaderMatch{{HeaderName: "X-Canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}}}}})
		}, with(map[string]string{"nginx.ingress.kubernetes.io/canary-weight": "20", "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary", "nginx.ingress.kubernetes.io/canary-by-header-value": "yes"})},
		{"weight 100 keeps the header", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 100}) },
			with(map[string]string{"nginx.ingress.kubernetes.io/canary-weight": "100", "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary", "nginx.ingress.kubernetes.io/canary-by-header-value": "yes"})},
		{"routes removed", func() error { return r.SetManagedRoutes(ctx, ro, nil) }, with(map[string]string{"nginx.ingress.kubernetes.io/canary-weight": "100"})},
		{"back to 0", func() error { return r.SetWeight(ctx, ro, traffic.Weights{Canary: 0}) }, with(map[string]string{"nginx.ingress.kubernetes.io/canary-weight": "0"})},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := canary()
		if diff := cmp.Diff(s.want, got.Annotations); diff != "" {
			t.Errorf("%s: annotations (-want +got):\n%s", s.name, diff)
		}
		if diff := cmp.Diff(wantSpec, got.Spec); diff != "" {
			t.Errorf("%s: spec (-want +got):\n%s", s.name, diff)
		}
		if ref := metav1.GetControllerOf(got); ref == nil || ref.UID != "uid-web" {
			t.Errorf("%s: canary Ingress not owned by the Rollout: %+v", s.name, ref)
		}
	}
	if ok, err := r.Verify(ctx, ro, traffic.Weights{Canary: 0}); err != nil || !ok {
		t.Errorf("weight 0 not verified: %v %v", ok, err)
	}
	// The stable Ingress only gains the claim.
	var st networkingv1.Ingress
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &st); err != nil {
		t.Fatal(err)
	}
	want := stableIngress()
	want.Annotations[v1alpha1.ManagedByAnnotation] = "web"
	if diff := cmp.Diff(want.Spec, st.Spec); diff != "" {
		t.Errorf("stable Ingress changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.ObjectMeta, st.ObjectMeta, cmpopts.IgnoreFields(metav1.ObjectMeta{}, "ResourceVersion")); diff != "" {
		t.Errorf("stable Ingress metadata (-want +got):\n%s", diff)
	}
	if _, ok := canary().Annotations[v1alpha1.ManagedByAnnotation]; ok {
		t.Error("the canary Ingress copied the stable Ingress's claim")
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	noStable := stableIngress()
	noStable.Spec.Rules[0].HTTP.Paths = noStable.Spec.Rules[0].HTTP.Paths[1:]
	mirror := rollout()
	mirror.Spec.Strategy.Canary.Steps = []v1alpha1.CanaryStep{{SetMirrorRoute: &v1alpha1.SetMirrorRoute{Name: "m"}}}
	rows := []struct {
		name string
		ro   *v1alpha1.Rollout
		objs []client.Object
		want string
	}{
		{"valid", rollout(), []client.Object{stableIngress()}, ""},
		{"missing", rollout(), nil, `Ingress "web" named in spec.strategy.canary.trafficRouting.nginx was not found in namespace shop`},
		{"no stable backend", rollout(), []client.Object{noStable}, `Ingress "web" has no backend for the stable Service "web-stable"`},
		{"mirror", mirror, []client.Object{stableIngress()}, `setMirrorRoute "m": the nginx router cannot mirror traffic`},
		{"claimed by another Rollout", rollout(), []client.Object{claimed(stableIngress(), "other")}, `Ingress "web" is managed by Rollout "other"; a route can belong to one Rollout only`},
		{"claimed by this Rollout", rollout(), []client.Object{claimed(stableIngress(), "web")}, ""},
	}
	for _, row := range rows {
		c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(row.objs...).Build()
		err := New(c, c).Validate(ctx, row.ro)
		switch {
		case row.want == "" && err != nil:
			t.Errorf("%s: %v", row.name, err)
		case row.want != "" && (err == nil || !traffic.IsInvalid(err) || !strings.Contains(err.Error(), row.want)):
			t.Errorf("%s: got %v, want an invalid-spec error containing %q", row.name, err, row.want)
		}
	}
}

func claimed(ing *networkingv1.Ingress, owner string) *networkingv1.Ingress {
	ing.Annotations[v1alpha1.ManagedByAnnotation] = owner
	return ing
}

// TestRelease: the canary Ingress goes at once and the stable Ingress is
// the user's again; a second Rollout cannot claim the stable Ingress before.
func TestRelease(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(stableIngress()).Build()
	r := New(c, c)
	ro := rollout()
	if err := r.SetWeight(ctx, ro, traffic.Weights{Canary: 30}); err != nil {
		t.Fatal(err)
	}
	other := rollout()
	other.Name, other.UID = "other", "uid-other"
	if err := r.SetWeight(ctx, other, traffic.Weights{Canary: 10}); !traffic.IsInvalid(err) {
		t.Errorf("a second Rollout on the stable Ingress: got %v, want an invalid-spec error", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "other-web-canary"}, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("the second Rollout made a canary Ingress: %v", err)
	}
	if err := r.Release(ctx, ro, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web-web-canary"}, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Ingress after Release: %v, want it gone", err)
	}
	var st networkingv1.Ingress
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &st); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stableIngress().Annotations, st.Annotations); diff != "" {
		t.Errorf("stable Ingress annotations after Release (-want +got):\n%s", diff)
	}
	if err := r.Release(ctx, ro, nil); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

// TestReleaseLeavesWhatIsNotItsOwn: an Ingress with the canary's name the
// Rollout does not control stays, and so does another Rollout's claim.
func TestReleaseLeavesWhatIsNotItsOwn(t *testing.T) {
	ctx := context.Background()
	squatter := stableIngress()
	squatter.Name = "web-web-canary"
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(claimed(stableIngress(), "other"), squatter).Build()
	if err := New(c, c).Release(ctx, rollout(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(squatter), &networkingv1.Ingress{}); err != nil {
		t.Errorf("an Ingress the Rollout does not control: %v", err)
	}
	var st networkingv1.Ingress
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &st); err != nil {
		t.Fatal(err)
	}
	if st.Annotations[v1alpha1.ManagedByAnnotation] != "other" {
		t.Errorf("another Rollout's claim was dropped: %v", st.Annotations)
	}
}
