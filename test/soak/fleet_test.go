//go:build soak

package soak

import (
	"context"
	"fmt"
	mrand "math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// strategy is the kind of a Rollout of the fleet.
type strategy string

const (
	// canary without traffic routing: replica counts carry the weights.
	strategyCanary strategy = "canary"
	// routed: canary through a Gateway API HTTPRoute, with a web analysis step.
	strategyRouted strategy = "routed"
	// blueGreen with a Prometheus pre-promotion analysis.
	strategyBlueGreen strategy = "bluegreen"
)

var strategies = []strategy{strategyCanary, strategyRouted, strategyBlueGreen}

// member is one Rollout of the fleet and the knobs drawn for it.
type member struct {
	key      types.NamespacedName
	strategy strategy
	replicas int32
	// maxSurge and maxUnavailable of the canaries.
	maxSurge, maxUnavailable intstr.IntOrString
	// maxWeight (maxTrafficWeight) and minPods (minPodsPerReplicaSet) of
	// the routed canary.
	maxWeight, minPods int32
	// previewReplicas of the blue-green, if set.
	previewReplicas *int32
}

const (
	// verdictAnnotation on a Rollout is what its analysis will answer:
	// verdictGood passes, verdictBad fails. Templates read it through a
	// fieldRef arg when the run is created, so a release's verdict is set
	// with its image.
	verdictAnnotation = "soak.kubeseed.io/verdict"
	verdictGood       = "1"
	verdictBad        = "0"
	// holdStep is the index of the first of the two indefinite pauses that
	// end the canaries' steps: one promote can never finish an update,
	// only promote --full or two promotes at the end can.
	holdStep = 3
	// Delays of routed and blue-green Rollouts, short so a run sees many.
	scaleDownDelay = 3
	container      = "app"
)

func image(n int) string { return fmt.Sprintf("soak.example/app:%d", n) }

// newFleet draws n Rollouts, the strategies in turn, ten per namespace.
func newFleet(cfg config) []*member {
	r := cfg.rng(streamFleet)
	var fleet []*member
	for i := range cfg.rollouts {
		s := strategies[i%len(strategies)]
		m := &member{
			key:      types.NamespacedName{Namespace: fmt.Sprintf("soak-%d", i/10), Name: fmt.Sprintf("%s-%02d", s, i)},
			strategy: s,
			replicas: 2 + r.Int32N(4),
		}
		switch s {
		case strategyCanary:
			m.maxSurge, m.maxUnavailable = drawLimits(r)
		case strategyRouted:
			m.maxSurge, m.maxUnavailable = drawLimits(r)
			m.maxWeight = []int32{100, 1000}[r.IntN(2)]
			m.minPods = min(1+r.Int32N(2), m.replicas)
		case strategyBlueGreen:
			if r.IntN(2) == 0 {
				m.previewReplicas = ptr.To[int32](1)
			}
		}
		fleet = append(fleet, m)
	}
	return fleet
}

// drawLimits picks maxSurge and maxUnavailable, never both 0.
func drawLimits(r *mrand.Rand) (intstr.IntOrString, intstr.IntOrString) {
	pairs := [][2]intstr.IntOrString{
		{intstr.FromString("25%"), intstr.FromInt32(0)},
		{intstr.FromInt32(1), intstr.FromInt32(1)},
		{intstr.FromInt32(0), intstr.FromInt32(1)},
		{intstr.FromString("25%"), intstr.FromString("25%")},
		{intstr.FromInt32(2), intstr.FromInt32(0)},
		{intstr.FromString("50%"), intstr.FromString("50%")},
	}
	p := pairs[r.IntN(len(pairs))]
	return p[0], p[1]
}

func (m *member) services() (string, string) {
	if m.strategy == strategyBlueGreen {
		return m.key.Name + "-active", m.key.Name + "-preview"
	}
	return m.key.Name + "-stable", m.key.Name + "-canary"
}

// objects are what the member needs besides the Rollout: its Services
// and, routed, its HTTPRoute with all traffic to the stable Service.
func (m *member) objects() []client.Object {
	a, b := m.services()
	svc := func(name string) client.Object {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: m.key.Namespace, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": m.key.Name}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
	}
	objs := []client.Object{svc(a), svc(b)}
	if m.strategy == strategyRouted {
		objs = append(objs, &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: m.key.Namespace, Name: m.key.Name},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "soak"}}},
				Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(a), Port: ptr.To[gatewayv1.PortNumber](80)},
				}}}}},
			},
		})
	}
	return objs
}

// verdictArgs pass the Rollout's verdict annotation to the templates.
var verdictArgs = []v1alpha1.AnalysisArg{{
	Name:      "verdict",
	ValueFrom: &v1alpha1.ArgValueFrom{FieldRef: &v1alpha1.FieldRef{FieldPath: "metadata.annotations['" + verdictAnnotation + "']"}},
}}

// rollout is the member's Rollout at image 0.
func (m *member) rollout() *v1alpha1.Rollout {
	labels := map[string]string{"app": m.key.Name}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.key.Namespace, Name: m.key.Name, Annotations: map[string]string{verdictAnnotation: verdictGood}},
		Spec: v1alpha1.RolloutSpec{
			Replicas:             ptr.To(m.replicas),
			Selector:             &metav1.LabelSelector{MatchLabels: labels},
			RevisionHistoryLimit: ptr.To[int32](3),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{{Name: container, Image: image(0)}},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
				},
			},
		},
	}
	a, b := m.services()
	indefinite := v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{}}
	switch m.strategy {
	case strategyCanary:
		ro.Spec.Strategy.Canary = &v1alpha1.CanaryStrategy{
			StableService: a, CanaryService: b,
			MaxSurge: ptr.To(m.maxSurge), MaxUnavailable: ptr.To(m.maxUnavailable),
			Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](30)},
				{Pause: &v1alpha1.RolloutPause{Duration: ptr.To(intstr.FromString("2s"))}},
				{SetWeight: ptr.To[int32](60)},
				indefinite, indefinite,
			},
		}
	case strategyRouted:
		ro.Spec.Strategy.Canary = &v1alpha1.CanaryStrategy{
			StableService: a, CanaryService: b,
			MaxSurge: ptr.To(m.maxSurge), MaxUnavailable: ptr.To(m.maxUnavailable),
			TrafficRouting: &v1alpha1.TrafficRouting{
				MaxTrafficWeight: m.maxWeight,
				GatewayAPI:       &v1alpha1.GatewayAPITrafficRouting{HTTPRoutes: []v1alpha1.GatewayAPIRoute{{Name: m.key.Name}}},
			},
			MinPodsPerReplicaSet:       ptr.To(m.minPods),
			ScaleDownDelaySeconds:      ptr.To[int32](scaleDownDelay),
			AbortScaleDownDelaySeconds: ptr.To[int32](scaleDownDelay),
			Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To(m.maxWeight / 5)},
				{Analysis: &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: webTemplate}}, Args: verdictArgs}},
				{SetWeight: ptr.To(m.maxWeight / 2)},
				indefinite, indefinite,
			},
		}
	case strategyBlueGreen:
		ro.Spec.Strategy.BlueGreen = &v1alpha1.BlueGreenStrategy{
			ActiveService: a, PreviewService: b,
			AutoPromotionEnabled:       ptr.To(false),
			PreviewReplicaCount:        m.previewReplicas,
			ScaleDownDelaySeconds:      ptr.To[int32](scaleDownDelay),
			AbortScaleDownDelaySeconds: ptr.To[int32](scaleDownDelay),
			PrePromotionAnalysis:       &v1alpha1.RolloutAnalysis{Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: promTemplate}}, Args: verdictArgs},
		}
	}
	return ro
}

const (
	webTemplate  = "web-verdict"
	promTemplate = "prometheus-verdict"
)

// templates are the AnalysisTemplates of a namespace: the web and the
// Prometheus verdict, each reached through its gate. Both measure twice, 2 s
// apart, and fail at the first failing verdict; consecutiveErrorLimit
// outlasts any outage window (see gate.outages).
func templates(ns, webURL, promURL string) []client.Object {
	metric := func(provider v1alpha1.MetricProvider, success string) v1alpha1.Metric {
		return v1alpha1.Metric{
			Name: "verdict", Interval: "2s", Count: ptr.To[int32](2),
			SuccessCondition: success, ConsecutiveErrorLimit: ptr.To[int32](30),
			Provider: provider,
		}
	}
	tmpl := func(name string, m v1alpha1.Metric) client.Object {
		return &v1alpha1.AnalysisTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.AnalysisTemplateSpec{Args: []v1alpha1.AnalysisArg{{Name: "verdict"}}, Metrics: []v1alpha1.Metric{m}},
		}
	}
	return []client.Object{
		tmpl(webTemplate, metric(v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{
			URL: webURL + "/verdict?v={{args.verdict}}", JSONPath: "{$.ok}", Timeout: "5s",
		}}, "result == true")),
		tmpl(promTemplate, metric(v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusMetric{
			PrometheusConnection: v1alpha1.PrometheusConnection{Address: promURL, Timeout: "5s"},
			Query:                "vector({{args.verdict}})",
		}}, "result[0] == 1")),
	}
}

// createFleet creates the namespaces, templates, Services, routes and
// Rollouts with the admin client.
func createFleet(ctx context.Context, c client.Client, fleet []*member, webURL, promURL string) error {
	namespaces := map[string]bool{}
	for _, m := range fleet {
		var objs []client.Object
		if !namespaces[m.key.Namespace] {
			namespaces[m.key.Namespace] = true
			objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.key.Namespace}})
			objs = append(objs, templates(m.key.Namespace, webURL, promURL)...)
		}
		objs = append(objs, m.objects()...)
		objs = append(objs, m.rollout())
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
			}
		}
	}
	return nil
}
