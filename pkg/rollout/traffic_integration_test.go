//go:build integration

package rollout

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	istioapi "istio.io/api/networking/v1alpha3"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/experiments"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/pkg/traffic/gatewayapi"
	"github.com/kubeseed/rollouts/pkg/traffic/istio"
)

// playReplicaSets stands in for kube-controller-manager: every ReplicaSet in
// ns reports all its pods available.
func routeWeights(t *testing.T, ns string) map[string]int32 {
	t.Helper()
	var hr gatewayv1.HTTPRoute
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, &hr); err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, b := range hr.Spec.Rules[0].BackendRefs {
		out[string(b.Name)] = ptr.Deref(b.Weight, 1)
	}
	return out
}

// TestIntegrationGatewayAPICanary walks a canary through a real HTTPRoute
// (Gateway API CRDs from their module): 0 → 20 → 50 → 100 → stable, then an
// abort that sends the weight back to 0 at once.
func TestIntegrationGatewayAPICanary(t *testing.T) {
	startReconcilerWith(t, traffic.Registry{"gatewayAPI": gatewayapi.New})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	env.PlayReplicaSets(t, ns)
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-stable", Port: ptr.To[gatewayv1.PortNumber](80)},
			}}}}},
		},
	}
	if err := env.Client.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}
	ro := routedRollout(10, setWeight(20), pause(""), setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 100, "web-canary": 0}; !cmp.Equal(got, want) {
		t.Errorf("weights after the first deploy %v, want %v", got, want)
	}

	setImageOf(t, key, "web:2")
	cur := waitRollout(t, key, "paused at 20", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == 1
	})
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 80, "web-canary": 20}; !cmp.Equal(got, want) {
		t.Errorf("weights at step 1 %v, want %v", got, want)
	}
	if v := cur.Status.Canary.Weights.Verified; v == nil || !*v {
		t.Errorf("weights not verified: %v", v)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p1")
	waitRollout(t, key, "paused at 50", func(r *v1alpha1.Rollout) bool {
		return ptr.Deref(r.Status.CurrentStepIndex, 0) == 3 && r.Status.Phase == v1alpha1.RolloutPhasePaused
	})
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 50, "web-canary": 50}; !cmp.Equal(got, want) {
		t.Errorf("weights at step 3 %v, want %v", got, want)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p2")
	done := waitRollout(t, key, "promoted", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhaseHealthy && r.Status.StableRS == r.Status.CurrentPodHash
	})
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 100, "web-canary": 0}; !cmp.Equal(got, want) {
		t.Errorf("weights after completion %v, want %v", got, want)
	}
	if done.Status.StableRS == cur.Status.StableRS {
		t.Error("the stable revision did not change")
	}

	// Abort: weight back to 0 in the reconcile that sees it.
	setImageOf(t, key, "web:3")
	waitRollout(t, key, "paused at 20 on web:3", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == 1
	})
	request(t, key, v1alpha1.AbortAnnotation, "a1")
	waitRollout(t, key, "aborted", func(r *v1alpha1.Rollout) bool {
		return r.Status.Abort && r.Status.Phase == v1alpha1.RolloutPhaseDegraded
	})
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 100, "web-canary": 0}; !cmp.Equal(got, want) {
		t.Errorf("weights after abort %v, want %v", got, want)
	}
}

func TestIntegrationMissingHTTPRouteIsInvalidSpec(t *testing.T) {
	startReconcilerWith(t, traffic.Registry{"gatewayAPI": gatewayapi.New})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	ro := routedRollout(2, setWeight(50), pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	got := waitRollout(t, client.ObjectKeyFromObject(ro), "Degraded", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhaseDegraded
	})
	if !strings.Contains(got.Status.Message, `HTTPRoute "web"`) {
		t.Errorf("message %q does not name the HTTPRoute", got.Status.Message)
	}
	var rss appsv1.ReplicaSetList
	if err := env.Client.List(ctx, &rss, client.InNamespace(ns)); err != nil || len(rss.Items) != 0 {
		t.Errorf("ReplicaSets created for an invalid Rollout: %d %v", len(rss.Items), err)
	}
}

func setImageOf(t *testing.T, key client.ObjectKey, image string) {
	t.Helper()
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"` + image + `"}]}}}}`
	if err := env.Client.Patch(context.Background(), &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

func request(t *testing.T, key client.ObjectKey, annotation, token string) {
	t.Helper()
	patch := `{"metadata":{"annotations":{"` + annotation + `":"` + token + `"}}}`
	if err := env.Client.Patch(context.Background(), &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationGatewayAPIManagedRoutes: header and mirror routes are added
// above the user's rule on a real HTTPRoute, and removed on completion.
func TestIntegrationGatewayAPIManagedRoutes(t *testing.T) {
	startReconcilerWith(t, traffic.Registry{"gatewayAPI": gatewayapi.New})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	env.PlayReplicaSets(t, ns)
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-stable", Port: ptr.To[gatewayv1.PortNumber](80)},
		}}}}}},
	}
	if err := env.Client.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}
	ro := routedRollout(4,
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.SetHeaderRoute{Name: "header-route", Match: []v1alpha1.HeaderMatch{{HeaderName: "X-Canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}}}}},
		v1alpha1.CanaryStep{SetMirrorRoute: &v1alpha1.SetMirrorRoute{Name: "mirror-route", Percentage: ptr.To[int32](40), Match: []v1alpha1.RouteMatch{{Path: &v1alpha1.StringMatch{Prefix: "/api"}}}}},
		setWeight(25), pause(""))
	ro.Spec.Strategy.Canary.TrafficRouting.ManagedRoutes = []v1alpha1.ManagedRoute{{Name: "header-route"}, {Name: "mirror-route"}}
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	setImageOf(t, key, "web:2")
	waitRollout(t, key, "paused", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhasePaused })
	ruleNames := func() []string {
		var got gatewayv1.HTTPRoute
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &got); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range got.Spec.Rules {
			names = append(names, string(ptr.Deref(r.Name, "")))
			for _, f := range r.Filters {
				if f.RequestMirror != nil && ptr.Deref(f.RequestMirror.Percent, -1) != 40 {
					t.Errorf("mirror percent %v, want 40", f.RequestMirror.Percent)
				}
			}
		}
		return names
	}
	if diff := cmp.Diff([]string{"rollouts-header-route", "rollouts-mirror-route", ""}, ruleNames()); diff != "" {
		t.Errorf("rules during the update (-want +got):\n%s", diff)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p")
	waitRollout(t, key, "promoted", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhaseHealthy && r.Status.StableRS == r.Status.CurrentPodHash
	})
	if diff := cmp.Diff([]string{""}, ruleNames()); diff != "" {
		t.Errorf("rules after completion (-want +got):\n%s", diff)
	}
}

// TestIntegrationIstioCanary walks a host-level split on a real
// VirtualService (Istio CRDs from istio.io/api): header and mirror routes on
// top, 20 → 50 → 100 before the switch → all traffic on the new stable, then
// an abort that sends the weight back to 0 at once.
func TestIntegrationIstioCanary(t *testing.T) {
	startReconcilerWith(t, traffic.Registry{"istio": istio.New})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	env.PlayReplicaSets(t, ns)
	vs := &istionetworkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: istioapi.VirtualService{Hosts: []string{"web.example"}, Http: []*istioapi.HTTPRoute{{
			Name: "primary", Route: []*istioapi.HTTPRouteDestination{{Destination: &istioapi.Destination{Host: "web-stable"}, Weight: 100}},
		}}},
	}
	if err := env.Client.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	ro := routedRollout(4,
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.SetHeaderRoute{Name: "h", Match: []v1alpha1.HeaderMatch{{HeaderName: "x-canary", HeaderValue: v1alpha1.StringMatch{Exact: "yes"}}}}},
		v1alpha1.CanaryStep{SetMirrorRoute: &v1alpha1.SetMirrorRoute{Name: "m", Percentage: ptr.To[int32](10), Match: []v1alpha1.RouteMatch{{Method: &v1alpha1.StringMatch{Exact: "GET"}}}}},
		setWeight(20), pause(""),
		v1alpha1.CanaryStep{SetHeaderRoute: &v1alpha1.SetHeaderRoute{Name: "h"}},
		setWeight(50), pause(""))
	tr := ro.Spec.Strategy.Canary.TrafficRouting
	tr.GatewayAPI = nil
	tr.ManagedRoutes = []v1alpha1.ManagedRoute{{Name: "h"}, {Name: "m"}}
	tr.Istio = &v1alpha1.IstioTrafficRouting{VirtualService: &v1alpha1.IstioVirtualService{Name: "web", Routes: []string{"primary"}}}
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	routes := func() map[string]string {
		var got istionetworkingv1.VirtualService
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &got); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, rt := range got.Spec.Http {
			var parts []string
			for _, d := range rt.Route {
				parts = append(parts, fmt.Sprintf("%s=%d", d.Destination.Host, d.Weight))
			}
			if rt.Mirror != nil {
				parts = append(parts, fmt.Sprintf("mirror:%s@%g", rt.Mirror.Host, rt.MirrorPercentage.GetValue()))
			}
			out[rt.Name] = strings.Join(parts, ",")
		}
		return out
	}
	pausedAtStep := func(i int32) func(*v1alpha1.Rollout) bool {
		return func(r *v1alpha1.Rollout) bool {
			return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == i
		}
	}
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	setImageOf(t, key, "web:2")
	waitRollout(t, key, "paused at 20", pausedAtStep(3))
	want := map[string]string{"rollouts-h": "web-canary=100", "rollouts-m": "web-stable=100,mirror:web-canary@10", "primary": "web-stable=80,web-canary=20"}
	if diff := cmp.Diff(want, routes()); diff != "" {
		t.Errorf("routes at 20%% (-want +got):\n%s", diff)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p1")
	waitRollout(t, key, "paused at 50", pausedAtStep(6))
	want = map[string]string{"rollouts-m": "web-stable=100,mirror:web-canary@10", "primary": "web-stable=50,web-canary=50"}
	if diff := cmp.Diff(want, routes()); diff != "" {
		t.Errorf("routes at 50%% without the header route (-want +got):\n%s", diff)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p2")
	waitRollout(t, key, "promoted", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhaseHealthy && r.Status.StableRS == r.Status.CurrentPodHash
	})
	if diff := cmp.Diff(map[string]string{"primary": "web-stable=100,web-canary=0"}, routes()); diff != "" {
		t.Errorf("routes after completion (-want +got):\n%s", diff)
	}

	setImageOf(t, key, "web:3")
	waitRollout(t, key, "paused at 20 on web:3", pausedAtStep(3))
	request(t, key, v1alpha1.AbortAnnotation, "a")
	waitRollout(t, key, "aborted", func(r *v1alpha1.Rollout) bool { return r.Status.Abort })
	if diff := cmp.Diff(map[string]string{"primary": "web-stable=100,web-canary=0"}, routes()); diff != "" {
		t.Errorf("routes after abort (-want +got):\n%s", diff)
	}
	var canarySvc corev1.Service
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-canary"}, &canarySvc); err != nil {
		t.Fatal(err)
	}
	var cur v1alpha1.Rollout
	if err := env.Client.Get(ctx, key, &cur); err != nil {
		t.Fatal(err)
	}
	if got := canarySvc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; got != cur.Status.StableRS {
		t.Errorf("after abort the canary Service selects %q, want the stable hash %q", got, cur.Status.StableRS)
	}
}

// TestIntegrationGatewayAPIExperimentWeights: an experiment step's weighted
// templates get backendRefs in a real HTTPRoute while the Experiment runs,
// taken from the stable's share, and lose them when the step ends.
func TestIntegrationGatewayAPIExperimentWeights(t *testing.T) {
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		if err := (&Reconciler{Client: mgr.GetClient(), Routers: traffic.Registry{"gatewayAPI": gatewayapi.New}}).SetupWithManager(mgr, opts); err != nil {
			return err
		}
		return (&experiments.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	env.PlayReplicaSets(t, ns)
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "edge"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-stable", Port: ptr.To[gatewayv1.PortNumber](80)},
			}}}}},
		},
	}
	if err := env.Client.Create(ctx, hr); err != nil {
		t.Fatal(err)
	}
	step := v1alpha1.CanaryStep{Experiment: &v1alpha1.RolloutExperimentStep{
		Duration: "4s",
		Templates: []v1alpha1.RolloutExperimentTemplate{
			{Name: "baseline", SpecRef: v1alpha1.SpecRefStable, Weight: ptr.To[int32](5)},
			{Name: "canary", SpecRef: v1alpha1.SpecRefCanary, Weight: ptr.To[int32](5)},
		},
	}}
	ro := routedRollout(4, setWeight(20), step, pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })
	setImageOf(t, key, "web:2")
	running := waitRollout(t, key, "experiment taking traffic", func(r *v1alpha1.Rollout) bool {
		return r.Status.Canary.Weights != nil && len(r.Status.Canary.Weights.Additional) == 2 && ptr.Deref(r.Status.Canary.Weights.Verified, false)
	})
	exName := running.Status.Canary.CurrentExperiment.Name
	want := map[string]int32{"web-stable": 70, "web-canary": 20, exName + "-baseline": 5, exName + "-canary": 5}
	if got := routeWeights(t, ns); !cmp.Equal(got, want) {
		t.Errorf("weights during the experiment %v, want %v", got, want)
	}
	waitRollout(t, key, "paused after the experiment", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == 2
	})
	// The removal is written in the reconcile that completes the step.
	if got, want := routeWeights(t, ns), map[string]int32{"web-stable": 80, "web-canary": 20}; !cmp.Equal(got, want) {
		t.Errorf("weights after the experiment %v, want %v", got, want)
	}
}
