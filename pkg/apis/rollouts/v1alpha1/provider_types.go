package v1alpha1

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// ProviderKind names a metric provider.
type ProviderKind string

// Metric provider kinds.
const (
	ProviderPrometheus ProviderKind = "prometheus"
	ProviderWeb        ProviderKind = "web"
	ProviderJob        ProviderKind = "job"
	ProviderJudge      ProviderKind = "judge"
)

// MetricProvider measures a metric. Exactly one provider is set.
//
// +kubebuilder:validation:XValidation:rule="[has(self.prometheus), has(self.web), has(self.job), has(self.judge)].filter(x, x).size() == 1",message="provider must set exactly one of prometheus, web, job or judge"
type MetricProvider struct {
	// +optional
	Prometheus *PrometheusMetric `json:"prometheus,omitempty"`
	// +optional
	Web *WebMetric `json:"web,omitempty"`
	// +optional
	Job *JobMetric `json:"job,omitempty"`
	// +optional
	Judge *JudgeMetric `json:"judge,omitempty"`
}

// Kind returns which provider is set.
func (p MetricProvider) Kind() (ProviderKind, error) {
	var kinds []ProviderKind
	for _, c := range []struct {
		set  bool
		kind ProviderKind
	}{
		{p.Prometheus != nil, ProviderPrometheus},
		{p.Web != nil, ProviderWeb},
		{p.Job != nil, ProviderJob},
		{p.Judge != nil, ProviderJudge},
	} {
		if c.set {
			kinds = append(kinds, c.kind)
		}
	}
	if len(kinds) != 1 {
		return "", fmt.Errorf("a provider must set exactly one kind, found %d %v", len(kinds), kinds)
	}
	return kinds[0], nil
}

// PrometheusConnection is how to reach a Prometheus server.
type PrometheusConnection struct {
	// Address of the server; defaults to the controller's --prometheus-address.
	// +optional
	Address string `json:"address,omitempty"`
	// Timeout of one query (default 30s, at most 60s).
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('60s')",message="timeout must be at most 60s"
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// Headers sent with every query.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Headers []Header `json:"headers,omitempty"`
	// Authentication with a bearer token or basic auth from Secrets.
	// +optional
	Authentication *HTTPAuthentication `json:"authentication,omitempty"`
	// TLS settings.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`
}

// PrometheusMetric is a PromQL query.
type PrometheusMetric struct {
	PrometheusConnection `json:",inline"`
	// Query in PromQL; args are substituted.
	// +kubebuilder:validation:MinLength=1
	Query string `json:"query"`
	// Range makes it a range query.
	// +optional
	Range *PrometheusRange `json:"range,omitempty"`
}

// PrometheusRange is the window of a range query, relative to now.
type PrometheusRange struct {
	// Start is how far before now the window starts, e.g. 10m.
	Start Duration `json:"start"`
	// End is how far before now the window ends (default now).
	// +optional
	End Duration `json:"end,omitempty"`
	// Step between points.
	Step Duration `json:"step"`
}

// Header is an HTTP header whose value is literal or read from a Secret.
//
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="a header sets exactly one of value or valueFrom"
type Header struct {
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
	// +optional
	Value *string `json:"value,omitempty"`
	// +optional
	ValueFrom *SecretValueFrom `json:"valueFrom,omitempty"`
}

// SecretValueFrom reads a value from a Secret in the run's namespace.
type SecretValueFrom struct {
	SecretKeyRef corev1.SecretKeySelector `json:"secretKeyRef"`
}

// HTTPAuthentication is bearer token or basic auth, from Secrets.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.bearerToken) && has(self.basicAuth))",message="authentication sets at most one of bearerToken or basicAuth"
type HTTPAuthentication struct {
	// +optional
	BearerToken *corev1.SecretKeySelector `json:"bearerToken,omitempty"`
	// +optional
	BasicAuth *BasicAuth `json:"basicAuth,omitempty"`
}

// BasicAuth reads a user name and password from Secrets.
type BasicAuth struct {
	Username corev1.SecretKeySelector `json:"username"`
	Password corev1.SecretKeySelector `json:"password"`
}

// TLSConfig configures the client side of TLS.
type TLSConfig struct {
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// +optional
	ServerName string `json:"serverName,omitempty"`
	// CA bundle in PEM.
	// +optional
	CA *corev1.SecretKeySelector `json:"ca,omitempty"`
	// Client certificate in PEM.
	// +optional
	Cert *corev1.SecretKeySelector `json:"cert,omitempty"`
	// Client key in PEM.
	// +optional
	Key *corev1.SecretKeySelector `json:"key,omitempty"`
}

// WebMetric calls an HTTP endpoint and judges its JSON answer.
type WebMetric struct {
	// +kubebuilder:validation:MinLength=1
	URL string `json:"url"`
	// +kubebuilder:validation:Enum=GET;POST
	// +kubebuilder:default=GET
	// +optional
	Method string `json:"method,omitempty"`
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Headers []Header `json:"headers,omitempty"`
	// Body sent as is. Setting both body and jsonBody is an error of the
	// measurement (CEL cannot see inside jsonBody).
	// +optional
	Body string `json:"body,omitempty"`
	// JSONBody is sent as JSON.
	// +optional
	JSONBody *apiextensionsv1.JSON `json:"jsonBody,omitempty"`
	// Timeout of the request (default 10s, at most 60s).
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('60s')",message="timeout must be at most 60s"
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
	// JSONPath selects the result in Kubernetes JSONPath syntax ({$.data.ok}).
	// +optional
	JSONPath string `json:"jsonPath,omitempty"`
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// JobMetric runs a Job; it succeeds or fails with the Job. The Job runs at
// most 600 seconds: spec.activeDeadlineSeconds defaults to 600 and may be
// set lower, not higher. Its Pods run as the namespace's default
// ServiceAccount unless the pod template names another, which must exist.
//
// +kubebuilder:validation:XValidation:rule="!has(self.spec.activeDeadlineSeconds) || self.spec.activeDeadlineSeconds <= 600",fieldPath=".spec.activeDeadlineSeconds",message="activeDeadlineSeconds of a job metric must be at most 600 (10 minutes)"
type JobMetric struct {
	// +optional
	Metadata PodMetadata     `json:"metadata,omitempty"`
	Spec     batchv1.JobSpec `json:"spec"`
}

// Decimal is a non-negative decimal number written as a string, such as 0.98.
// +kubebuilder:validation:Pattern=`^[0-9]+([.][0-9]+)?$`
type Decimal string

// JudgeMetric compares canary and baseline series with a Mann–Whitney U test
// and scores the release, the rule of Kayenta's NetflixACAJudge.
type JudgeMetric struct {
	PrometheusConnection `json:",inline"`
	// Window of the range queries, shared by canary and baseline.
	Window PrometheusRange `json:"window"`
	// Metrics to compare.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	Metrics []JudgeMetricQuery `json:"metrics"`
	// Groups weight the metrics' groups in the score; unlisted groups share
	// what is left equally.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Groups []JudgeGroup `json:"groups,omitempty"`
	// Thresholds turn the score into a verdict.
	// +optional
	Thresholds JudgeThresholds `json:"thresholds,omitempty"`
}

// JudgeMetricQuery is one compared metric.
type JudgeMetricQuery struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Group the metric scores in (default: its name).
	// +optional
	Group string `json:"group,omitempty"`
	// +kubebuilder:validation:MinLength=1
	CanaryQuery string `json:"canaryQuery"`
	// +kubebuilder:validation:MinLength=1
	BaselineQuery string `json:"baselineQuery"`
	// Direction the canary must not move in.
	// +kubebuilder:validation:Enum=increase;decrease;either
	// +kubebuilder:default=either
	// +optional
	Direction string `json:"direction,omitempty"`
	// Critical: a failure of this metric fails the whole analysis.
	// +optional
	Critical bool `json:"critical,omitempty"`
	// MustHaveData: no data counts as a failure.
	// +optional
	MustHaveData bool `json:"mustHaveData,omitempty"`
	// NaNStrategy removes NaN points or replaces them with 0.
	// +kubebuilder:validation:Enum=remove;replace
	// +kubebuilder:default=remove
	// +optional
	NaNStrategy string `json:"nanStrategy,omitempty"`
	// Outliers keeps or removes (IQR rule) outlying points.
	// +kubebuilder:validation:Enum=keep;remove
	// +kubebuilder:default=keep
	// +optional
	Outliers string `json:"outliers,omitempty"`
	// Confidence of the interval on the shift (default 0.98).
	// +optional
	Confidence Decimal `json:"confidence,omitempty"`
	// Tolerance band around the estimate as a share of it (default 0.25).
	// +optional
	Tolerance Decimal `json:"tolerance,omitempty"`
	// EffectSize gates a difference on its practical size.
	// +optional
	EffectSize *JudgeEffectSize `json:"effectSize,omitempty"`
}

// JudgeEffectSize is the practical-size gate of a difference.
type JudgeEffectSize struct {
	// Measure is meanRatio (canary mean / baseline mean) or cles (common
	// language effect size).
	// +kubebuilder:validation:Enum=meanRatio;cles
	// +kubebuilder:default=meanRatio
	// +optional
	Measure string `json:"measure,omitempty"`
	// AllowedIncrease: a High verdict needs the effect above this.
	// +optional
	AllowedIncrease Decimal `json:"allowedIncrease,omitempty"`
	// AllowedDecrease: a Low verdict needs the effect below this.
	// +optional
	AllowedDecrease Decimal `json:"allowedDecrease,omitempty"`
}

// JudgeGroup weights a group of metrics.
type JudgeGroup struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// JudgeThresholds turn a 0–100 score into Successful (>= pass), Inconclusive
// (>= marginal) or Failed.
//
// +kubebuilder:validation:XValidation:rule="self.marginal <= self.pass",message="thresholds.marginal must not exceed thresholds.pass"
type JudgeThresholds struct {
	// +kubebuilder:default=95
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Pass int32 `json:"pass,omitempty"`
	// +kubebuilder:default=75
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Marginal int32 `json:"marginal,omitempty"`
}
