package v1alpha1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CanaryStrategy releases a new version step by step beside the stable one.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.canaryService) && has(self.stableService)) || self.canaryService != self.stableService",message="canaryService and stableService must be different Services"
// +kubebuilder:validation:XValidation:rule="!has(self.trafficRouting) || (has(self.canaryService) && has(self.stableService))",message="trafficRouting requires both canaryService and stableService"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || self.steps.all(s, !has(s.setWeight) || s.setWeight <= (has(self.trafficRouting) ? self.trafficRouting.maxTrafficWeight : 100))",message="setWeight must be between 0 and trafficRouting.maxTrafficWeight (100 without traffic routing)"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || self.steps.all(s, !has(s.setHeaderRoute) || (has(self.trafficRouting) && has(self.trafficRouting.managedRoutes) && self.trafficRouting.managedRoutes.exists(r, r.name == s.setHeaderRoute.name)))",message="every setHeaderRoute name must be listed in trafficRouting.managedRoutes"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || self.steps.all(s, !has(s.setMirrorRoute) || (has(self.trafficRouting) && has(self.trafficRouting.managedRoutes) && self.trafficRouting.managedRoutes.exists(r, r.name == s.setMirrorRoute.name)))",message="every setMirrorRoute name must be listed in trafficRouting.managedRoutes"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || has(self.trafficRouting) || self.steps.all(s, !has(s.experiment) || !has(s.experiment.templates) || s.experiment.templates.all(t, !has(t.weight)))",message="experiment template weights require trafficRouting"
// +kubebuilder:validation:XValidation:rule="!has(self.steps) || has(self.trafficRouting) || self.steps.all(s, !has(s.setCanaryScale))",message="setCanaryScale requires trafficRouting"
// +kubebuilder:validation:XValidation:rule="has(self.trafficRouting) || !has(self.dynamicStableScale) || !self.dynamicStableScale",message="dynamicStableScale requires trafficRouting"
// +kubebuilder:validation:XValidation:rule="has(self.trafficRouting) || !has(self.minPodsPerReplicaSet)",message="minPodsPerReplicaSet requires trafficRouting"
// +kubebuilder:validation:XValidation:rule="!(self.maxSurge == 0 || self.maxSurge == '0%') || !(self.maxUnavailable == 0 || self.maxUnavailable == '0%')",message="maxSurge and maxUnavailable cannot both be 0"
// +kubebuilder:validation:XValidation:rule="!has(self.analysis) || !has(self.analysis.startingStep) || (has(self.steps) && self.analysis.startingStep < size(self.steps))",message="analysis.startingStep must be the index of a step"
type CanaryStrategy struct {
	// Steps are run in order on every update.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Steps []CanaryStep `json:"steps,omitempty"`

	// CanaryService gets the canary hash injected into its selector.
	// +optional
	CanaryService string `json:"canaryService,omitempty"`
	// StableService gets the stable hash injected into its selector.
	// +optional
	StableService string `json:"stableService,omitempty"`

	// MaxSurge is how many pods may exist above replicas (count or percent,
	// rounded up).
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="maxSurge must be a non-negative integer or a percentage such as 25%"
	// +optional
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`
	// MaxUnavailable is how many pods may be unavailable below replicas (count
	// or percent, rounded down).
	// +kubebuilder:default="25%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",message="maxUnavailable must be a non-negative integer or a percentage such as 25%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// Analysis runs in the background for the whole update.
	// +optional
	Analysis *BackgroundAnalysis `json:"analysis,omitempty"`

	// TrafficRouting shifts traffic through one or more routers.
	// +optional
	TrafficRouting *TrafficRouting `json:"trafficRouting,omitempty"`

	// ScaleDownDelaySeconds keeps the previous stable this long after promotion
	// (with traffic routing), so clients can drain.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// AbortScaleDownDelaySeconds keeps the canary this long after an abort
	// (with traffic routing); 0 keeps it until the next update.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=0
	// +optional
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`
	// DynamicStableScale scales the stable down as traffic leaves it.
	// +optional
	DynamicStableScale bool `json:"dynamicStableScale,omitempty"`
	// MinPodsPerReplicaSet is the floor for a non-zero ReplicaSet with traffic
	// routing.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinPodsPerReplicaSet *int32 `json:"minPodsPerReplicaSet,omitempty"`
	// AntiAffinity keeps canary pods off the nodes of stable pods.
	// +optional
	AntiAffinity *AntiAffinity `json:"antiAffinity,omitempty"`
	// CanaryMetadata is ephemeral metadata of the canary pods: the labels and
	// annotations are in the canary ReplicaSet's pod template and on its
	// running pods while it is the canary, also after an abort until its pods
	// are gone. The labels must not use the keys of the Rollout's selector
	// or rollouts.kubeseed.io/pod-template-hash.
	// +kubebuilder:validation:XValidation:rule="!has(self.labels) || !('rollouts.kubeseed.io/pod-template-hash' in self.labels)",message="canaryMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"
	// +optional
	CanaryMetadata *PodMetadata `json:"canaryMetadata,omitempty"`
	// StableMetadata is ephemeral metadata of the stable pods. When the canary
	// is promoted, its pod template and its running pods get stableMetadata
	// in place of canaryMetadata, by patch: no pod is restarted. The labels
	// must not use the keys of the Rollout's selector or
	// rollouts.kubeseed.io/pod-template-hash.
	// +kubebuilder:validation:XValidation:rule="!has(self.labels) || !('rollouts.kubeseed.io/pod-template-hash' in self.labels)",message="stableMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"
	// +optional
	StableMetadata *PodMetadata `json:"stableMetadata,omitempty"`
}

// BackgroundAnalysis is an analysis that runs for the whole update, from
// startingStep on.
type BackgroundAnalysis struct {
	RolloutAnalysis `json:",inline"`
	// StartingStep is the index of the step the analysis starts at.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartingStep *int32 `json:"startingStep,omitempty"`
}

// StepKind names the kind of a canary step.
type StepKind string

// Canary step kinds.
const (
	StepSetWeight      StepKind = "setWeight"
	StepPause          StepKind = "pause"
	StepAnalysis       StepKind = "analysis"
	StepExperiment     StepKind = "experiment"
	StepSetCanaryScale StepKind = "setCanaryScale"
	StepSetHeaderRoute StepKind = "setHeaderRoute"
	StepSetMirrorRoute StepKind = "setMirrorRoute"
)

// CanaryStep is one step of a canary update. Exactly one field is set.
//
// +kubebuilder:validation:XValidation:rule="[has(self.setWeight), has(self.pause), has(self.analysis), has(self.experiment), has(self.setCanaryScale), has(self.setHeaderRoute), has(self.setMirrorRoute)].filter(x, x).size() == 1",message="a step must set exactly one of setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute, setMirrorRoute"
type CanaryStep struct {
	// SetWeight is the share of traffic (or replicas, without traffic routing)
	// the canary gets.
	// +kubebuilder:validation:Minimum=0
	// +optional
	SetWeight *int32 `json:"setWeight,omitempty"`
	// Pause waits for promote, or for its duration.
	// +optional
	Pause *RolloutPause `json:"pause,omitempty"`
	// Analysis blocks the step until an AnalysisRun succeeds.
	// +optional
	Analysis *RolloutAnalysis `json:"analysis,omitempty"`
	// Experiment runs an Experiment and waits for it to succeed.
	// +optional
	Experiment *RolloutExperimentStep `json:"experiment,omitempty"`
	// SetCanaryScale sizes the canary apart from its traffic weight.
	// +optional
	SetCanaryScale *SetCanaryScale `json:"setCanaryScale,omitempty"`
	// SetHeaderRoute sends requests matching headers to the canary.
	// +optional
	SetHeaderRoute *SetHeaderRoute `json:"setHeaderRoute,omitempty"`
	// SetMirrorRoute mirrors matching requests to the canary.
	// +optional
	SetMirrorRoute *SetMirrorRoute `json:"setMirrorRoute,omitempty"`
}

// Kind returns which field of the step is set. A step with none or several
// is an error (admission rejects it, so this guards hand-built objects).
func (s CanaryStep) Kind() (StepKind, error) {
	var kinds []StepKind
	for _, c := range []struct {
		set  bool
		kind StepKind
	}{
		{s.SetWeight != nil, StepSetWeight},
		{s.Pause != nil, StepPause},
		{s.Analysis != nil, StepAnalysis},
		{s.Experiment != nil, StepExperiment},
		{s.SetCanaryScale != nil, StepSetCanaryScale},
		{s.SetHeaderRoute != nil, StepSetHeaderRoute},
		{s.SetMirrorRoute != nil, StepSetMirrorRoute},
	} {
		if c.set {
			kinds = append(kinds, c.kind)
		}
	}
	if len(kinds) != 1 {
		return "", fmt.Errorf("a step must set exactly one kind, found %d %v", len(kinds), kinds)
	}
	return kinds[0], nil
}

// RolloutPause is a pause step. Without a duration it waits for promote.
type RolloutPause struct {
	// Duration is an integer number of seconds or a Go duration ("30s", "5m").
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="pause duration must be a number of seconds or a duration such as 30s or 5m"
	// +optional
	Duration *intstr.IntOrString `json:"duration,omitempty"`
}

// SetCanaryScale sets the canary size apart from its traffic weight.
//
// +kubebuilder:validation:XValidation:rule="[has(self.weight), has(self.replicas), has(self.matchTrafficWeight) && self.matchTrafficWeight].filter(x, x).size() == 1",message="setCanaryScale must set exactly one of weight, replicas or matchTrafficWeight: true"
type SetCanaryScale struct {
	// Weight is the canary size as a percentage of replicas.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// Replicas is an absolute canary size.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// MatchTrafficWeight returns to sizing the canary from its traffic weight.
	// +optional
	MatchTrafficWeight bool `json:"matchTrafficWeight,omitempty"`
}

// SetHeaderRoute adds (or, without match, removes) a managed route that sends
// requests with matching headers to the canary.
type SetHeaderRoute struct {
	// Name of the managed route; it must be listed in managedRoutes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Match lists header conditions, all of which must hold.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []HeaderMatch `json:"match,omitempty"`
}

// HeaderMatch matches one request header.
type HeaderMatch struct {
	// +kubebuilder:validation:MinLength=1
	HeaderName  string      `json:"headerName"`
	HeaderValue StringMatch `json:"headerValue"`
}

// StringMatch matches a string exactly, by prefix or by regular expression.
//
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",message="a string match must set exactly one of exact, prefix or regex"
type StringMatch struct {
	// +optional
	Exact string `json:"exact,omitempty"`
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// +optional
	Regex string `json:"regex,omitempty"`
}

// SetMirrorRoute adds (or, without match, removes) a managed route that
// mirrors matching requests to the canary.
type SetMirrorRoute struct {
	// Name of the managed route; it must be listed in managedRoutes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Match lists request conditions; a request matching any of them is
	// mirrored.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Match []RouteMatch `json:"match,omitempty"`
	// Percentage of matching requests to mirror.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Percentage *int32 `json:"percentage,omitempty"`
}

// RouteMatch matches a request by method, path and headers; all set parts must
// match.
type RouteMatch struct {
	// +optional
	Method *StringMatch `json:"method,omitempty"`
	// +optional
	Path *StringMatch `json:"path,omitempty"`
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	Headers map[string]StringMatch `json:"headers,omitempty"`
}

// RolloutExperimentStep runs an Experiment from the Rollout's templates.
type RolloutExperimentStep struct {
	// Templates to run.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Templates []RolloutExperimentTemplate `json:"templates"`
	// Duration of the experiment; without it the experiment runs until its
	// analyses finish.
	// +optional
	Duration Duration `json:"duration,omitempty"`
	// Analyses run against the experiment.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Analyses []ExperimentAnalysis `json:"analyses,omitempty"`
}

// RolloutExperimentTemplate is an experiment template copied from the stable
// or canary pod template.
type RolloutExperimentTemplate struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// SpecRef picks the pod template to copy.
	SpecRef SpecRef `json:"specRef"`
	// Replicas of the template.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Weight of traffic sent to this template (needs traffic routing).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// Metadata added to the pods.
	// +optional
	Metadata PodMetadata `json:"metadata,omitempty"`
	// Selector overrides the selector of the copied template.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Service creates a Service for the template.
	// +optional
	Service *TemplateService `json:"service,omitempty"`
}

// PodMetadata are labels and annotations added to pods.
type PodMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TemplateService asks for a Service in front of an experiment template.
type TemplateService struct {
	// Name of the Service; defaults to the ReplicaSet name.
	// +optional
	Name string `json:"name,omitempty"`
}

// TrafficRouting configures the routers that shift traffic.
//
// +kubebuilder:validation:XValidation:rule="has(self.istio) || has(self.gatewayAPI) || has(self.nginx)",message="trafficRouting needs at least one router: istio, gatewayAPI or nginx"
type TrafficRouting struct {
	// MaxTrafficWeight is the total weight; setWeight is out of it.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxTrafficWeight int32 `json:"maxTrafficWeight,omitempty"`
	// ManagedRoutes are the routes the controller may add, highest precedence
	// first.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	ManagedRoutes []ManagedRoute `json:"managedRoutes,omitempty"`
	// +optional
	Istio *IstioTrafficRouting `json:"istio,omitempty"`
	// +optional
	GatewayAPI *GatewayAPITrafficRouting `json:"gatewayAPI,omitempty"`
	// +optional
	Nginx *NginxTrafficRouting `json:"nginx,omitempty"`
}

// ManagedRoute names a route the controller owns.
type ManagedRoute struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// IstioTrafficRouting routes through Istio VirtualServices.
//
// +kubebuilder:validation:XValidation:rule="has(self.virtualService) != has(self.virtualServices)",message="istio needs exactly one of virtualService or virtualServices"
type IstioTrafficRouting struct {
	// +optional
	VirtualService *IstioVirtualService `json:"virtualService,omitempty"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +optional
	VirtualServices []IstioVirtualService `json:"virtualServices,omitempty"`
	// DestinationRule switches to a subset-level split.
	// +optional
	DestinationRule *IstioDestinationRule `json:"destinationRule,omitempty"`
}

// IstioVirtualService names a VirtualService and the routes in it to split.
type IstioVirtualService struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Routes are names of HTTP routes; may be omitted when there is only one.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Routes []string `json:"routes,omitempty"`
	// +kubebuilder:validation:MaxItems=32
	// +optional
	TLSRoutes []IstioTLSRoute `json:"tlsRoutes,omitempty"`
	// +kubebuilder:validation:MaxItems=32
	// +optional
	TCPRoutes []IstioTCPRoute `json:"tcpRoutes,omitempty"`
}

// IstioTLSRoute selects a TLS route by port and SNI hosts.
type IstioTLSRoute struct {
	// +optional
	Port int64 `json:"port,omitempty"`
	// +optional
	SNIHosts []string `json:"sniHosts,omitempty"`
}

// IstioTCPRoute selects a TCP route by port.
type IstioTCPRoute struct {
	// +optional
	Port int64 `json:"port,omitempty"`
}

// IstioDestinationRule names the subsets of a subset-level split.
type IstioDestinationRule struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	CanarySubsetName string `json:"canarySubsetName"`
	// +kubebuilder:validation:MinLength=1
	StableSubsetName string `json:"stableSubsetName"`
}

// GatewayAPITrafficRouting routes through Gateway API routes in the Rollout's
// namespace.
//
// +kubebuilder:validation:XValidation:rule="(has(self.httpRoutes) && size(self.httpRoutes) > 0) || (has(self.grpcRoutes) && size(self.grpcRoutes) > 0)",message="gatewayAPI needs at least one of httpRoutes or grpcRoutes"
type GatewayAPITrafficRouting struct {
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	HTTPRoutes []GatewayAPIRoute `json:"httpRoutes,omitempty"`
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	GRPCRoutes []GatewayAPIRoute `json:"grpcRoutes,omitempty"`
}

// GatewayAPIRoute names a route.
type GatewayAPIRoute struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// NginxTrafficRouting routes through an NGINX canary Ingress.
//
// +kubebuilder:validation:XValidation:rule="has(self.stableIngress) != has(self.stableIngresses)",message="nginx needs exactly one of stableIngress or stableIngresses"
type NginxTrafficRouting struct {
	// +optional
	StableIngress string `json:"stableIngress,omitempty"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +optional
	StableIngresses []string `json:"stableIngresses,omitempty"`
	// AnnotationPrefix of the canary annotations.
	// +kubebuilder:default="nginx.ingress.kubernetes.io"
	// +optional
	AnnotationPrefix string `json:"annotationPrefix,omitempty"`
	// AdditionalIngressAnnotations are added to the canary Ingress (under the
	// prefix), e.g. canary-by-header.
	// +optional
	AdditionalIngressAnnotations map[string]string `json:"additionalIngressAnnotations,omitempty"`
}
