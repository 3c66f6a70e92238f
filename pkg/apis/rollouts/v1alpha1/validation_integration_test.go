//go:build integration

package v1alpha1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// readDocs reads every YAML document of a file.
func readDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// toObject turns a YAML document into an object placed in ns. A
// cluster-scoped object gets a name unique to the namespace instead.
func toObject(t *testing.T, doc []byte, ns string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
		t.Fatalf("decoding %s: %v", doc, err)
	}
	if obj.GetKind() == "ClusterAnalysisTemplate" {
		obj.SetName(ns + "-" + obj.GetName())
	} else {
		obj.SetNamespace(ns)
	}
	return obj
}

func examplesDir() string { return filepath.Join(testenv.RepoRoot(), "manifests", "examples") }

func TestIntegrationExamplesAreAccepted(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(examplesDir(), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		// One namespace per file: examples may reuse names.
		ns := env.Namespace(t)
		for i, doc := range readDocs(t, f) {
			obj := toObject(t, doc, ns)
			if err := env.Client.Create(context.Background(), obj); err != nil {
				t.Errorf("%s document %d (%s %s) rejected: %v", filepath.Base(f), i, obj.GetKind(), obj.GetName(), err)
			}
			if obj.GetKind() == "ClusterAnalysisTemplate" {
				t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
			}
		}
	}
}

func TestIntegrationDefaults(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	obj := toObject(t, []byte(minimalCanary), ns)
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	var ro v1alpha1.Rollout
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), &ro); err != nil {
		t.Fatal(err)
	}
	type defaults struct {
		Replicas, RevisionHistoryLimit, ProgressDeadlineSeconds int32
		MaxSurge, MaxUnavailable                                intstr.IntOrString
		ScaleDownDelay, AbortScaleDownDelay                     int32
	}
	c := ro.Spec.Strategy.Canary
	got := defaults{
		*ro.Spec.Replicas, *ro.Spec.RevisionHistoryLimit, *ro.Spec.ProgressDeadlineSeconds,
		*c.MaxSurge, *c.MaxUnavailable, *c.ScaleDownDelaySeconds, *c.AbortScaleDownDelaySeconds,
	}
	want := defaults{1, 10, 600, intstr.FromString("25%"), intstr.FromString("25%"), 30, 30}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}

	bg := toObject(t, []byte(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: bg}
spec:
  selector: {matchLabels: {app: bg}}
  template:
    metadata: {labels: {app: bg}}
    spec: {containers: [{name: app, image: app:1}]}
  strategy:
    blueGreen: {activeService: bg-active}
`), ns)
	if err := env.Client.Create(context.Background(), bg); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(bg), &ro); err != nil {
		t.Fatal(err)
	}
	b := ro.Spec.Strategy.BlueGreen
	if b.AutoPromotionEnabled == nil || !*b.AutoPromotionEnabled || *b.ScaleDownDelaySeconds != 30 || *b.AbortScaleDownDelaySeconds != 30 {
		t.Errorf("blue-green defaults: autoPromotionEnabled=%v scaleDownDelaySeconds=%v abortScaleDownDelaySeconds=%v",
			b.AutoPromotionEnabled, b.ScaleDownDelaySeconds, b.AbortScaleDownDelaySeconds)
	}
}

const minimalCanary = `
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: web:1}]}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {}}]
`

const minimalTemplate = `
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  metrics:
  - name: rate
    successCondition: result[0] > 0.9
    provider:
      prometheus: {query: up}
`

func baseDoc(t *testing.T, base string) []byte {
	t.Helper()
	switch base {
	case "min":
		return []byte(minimalCanary)
	case "tmpl":
		return []byte(minimalTemplate)
	case "full":
		return readDocs(t, filepath.Join(examplesDir(), "canary-every-step.yaml"))[0]
	case "bg":
		return readDocs(t, filepath.Join(examplesDir(), "bluegreen.yaml"))[0]
	}
	t.Fatalf("unknown base %q", base)
	return nil
}

// patched applies a JSON merge patch, written in YAML, to a base document.
func patched(t *testing.T, base, patch string) []byte {
	t.Helper()
	return patchedDoc(t, baseDoc(t, base), patch)
}

// patchedDoc applies a JSON merge patch, written in YAML, to a document.
func patchedDoc(t *testing.T, doc []byte, patch string) []byte {
	t.Helper()
	orig, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := yaml.YAMLToJSON([]byte(patch))
	if err != nil {
		t.Fatalf("patch %q: %v", patch, err)
	}
	out, err := jsonpatch.MergePatch(orig, p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIntegrationValidation has one row per admission rule: each row breaks a
// valid object in one way and expects the API server to refuse it with the
// rule's message.
func TestIntegrationValidation(t *testing.T) {
	t.Parallel()
	noRouting := "trafficRouting: null, canaryService: null, stableService: null, minPodsPerReplicaSet: null, analysis: null"
	rows := []struct {
		name, base, patch, want string
	}{
		// Rollout spec.
		{"both strategies", "min", `spec: {strategy: {blueGreen: {activeService: a}}}`, "exactly one of strategy.canary or strategy.blueGreen must be set"},
		{"no strategy", "min", `spec: {strategy: {canary: null}}`, "exactly one of strategy.canary or strategy.blueGreen must be set"},
		{"template and workloadRef", "min", `spec: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}`, "exactly one of template or workloadRef must be set"},
		{"neither template nor workloadRef", "min", `spec: {template: null, selector: null}`, "exactly one of template or workloadRef must be set"},
		{"template without selector", "min", `spec: {selector: null}`, "selector is required when template is set"},
		{"selector with workloadRef", "min", `spec: {template: null, workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}`, "selector must not be set with workloadRef"},
		{"workloadRef to a StatefulSet", "min", `spec: {template: null, selector: null, workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}}`, `Unsupported value: "StatefulSet"`},
		{"workloadRef unknown scaleDown", "min", `spec: {template: null, selector: null, workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web, scaleDown: sometimes}}`, `Unsupported value: "sometimes"`},
		{"negative replicas", "min", `spec: {replicas: -1}`, "spec.replicas in body should be greater than or equal to 0"},

		// Canary strategy.
		{"canary and stable Service equal", "full", `spec: {strategy: {canary: {canaryService: checkout-stable}}}`, "canaryService and stableService must be different Services"},
		{"traffic routing without Services", "full", `spec: {strategy: {canary: {canaryService: null}}}`, "trafficRouting requires both canaryService and stableService"},
		{"setWeight above maxTrafficWeight", "full", `spec: {strategy: {canary: {trafficRouting: {maxTrafficWeight: 40}}}}`, "setWeight must be between 0 and trafficRouting.maxTrafficWeight"},
		{"setWeight above 100 without routing", "min", `spec: {strategy: {canary: {steps: [{setWeight: 150}]}}}`, "setWeight must be between 0 and trafficRouting.maxTrafficWeight (100 without traffic routing)"},
		{"negative setWeight", "min", `spec: {strategy: {canary: {steps: [{setWeight: -1}]}}}`, "setWeight in body should be greater than or equal to 0"},
		{"setHeaderRoute not in managedRoutes", "full", `spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: mirror-route}]}}}}`, "every setHeaderRoute name must be listed in trafficRouting.managedRoutes"},
		{"setMirrorRoute not in managedRoutes", "full", `spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: header-route}]}}}}`, "every setMirrorRoute name must be listed in trafficRouting.managedRoutes"},
		{"setHeaderRoute without routing", "min", `spec: {strategy: {canary: {steps: [{setHeaderRoute: {name: h}}]}}}`, "every setHeaderRoute name must be listed in trafficRouting.managedRoutes"},
		{"duplicate managed route", "full", `spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: header-route}, {name: mirror-route}, {name: header-route}]}}}}`, "Duplicate value"},
		{"experiment weight without routing", "full", `spec: {strategy: {canary: {` + noRouting + `, steps: [{experiment: {templates: [{name: a, specRef: canary, weight: 5}]}}]}}}`, "experiment template weights require trafficRouting"},
		{"setCanaryScale without routing", "min", `spec: {strategy: {canary: {steps: [{setCanaryScale: {replicas: 1}}]}}}`, "setCanaryScale requires trafficRouting"},
		{"dynamicStableScale without routing", "min", `spec: {strategy: {canary: {dynamicStableScale: true}}}`, "dynamicStableScale requires trafficRouting"},
		{"minPodsPerReplicaSet without routing", "min", `spec: {strategy: {canary: {minPodsPerReplicaSet: 2}}}`, "minPodsPerReplicaSet requires trafficRouting"},
		{"maxSurge and maxUnavailable both 0", "min", `spec: {strategy: {canary: {maxSurge: 0, maxUnavailable: 0}}}`, "maxSurge and maxUnavailable cannot both be 0"},
		{"maxSurge 0% and maxUnavailable 0", "min", `spec: {strategy: {canary: {maxSurge: "0%", maxUnavailable: 0}}}`, "maxSurge and maxUnavailable cannot both be 0"},
		{"maxSurge not a percentage", "min", `spec: {strategy: {canary: {maxSurge: lots}}}`, "maxSurge must be a non-negative integer or a percentage"},
		{"maxUnavailable negative", "min", `spec: {strategy: {canary: {maxUnavailable: -1}}}`, "maxUnavailable must be a non-negative integer or a percentage"},
		{"startingStep past the steps", "min", `spec: {strategy: {canary: {analysis: {startingStep: 5, templates: [{templateName: a}]}}}}`, "analysis.startingStep must be the index of a step"},
		{"step with two kinds", "min", `spec: {strategy: {canary: {steps: [{setWeight: 10, pause: {}}]}}}`, "a step must set exactly one of setWeight, pause, analysis, experiment, setCanaryScale, setHeaderRoute, setMirrorRoute"},
		{"empty step", "min", `spec: {strategy: {canary: {steps: [{}]}}}`, "a step must set exactly one of"},
		{"pause duration not a duration", "min", `spec: {strategy: {canary: {steps: [{pause: {duration: ten}}]}}}`, "pause duration must be a number of seconds or a duration"},
		{"negative pause duration", "min", `spec: {strategy: {canary: {steps: [{pause: {duration: -5}}]}}}`, "pause duration must be a number of seconds or a duration"},
		{"setCanaryScale with two sizes", "full", `spec: {strategy: {canary: {steps: [{setCanaryScale: {replicas: 1, weight: 10}}]}}}`, "setCanaryScale must set exactly one of weight, replicas or matchTrafficWeight"},
		{"header match with exact and prefix", "full", `spec: {strategy: {canary: {steps: [{setHeaderRoute: {name: header-route, match: [{headerName: X, headerValue: {exact: a, prefix: b}}]}}]}}}`, "a string match must set exactly one of exact, prefix or regex"},
		{"mirror percentage over 100", "full", `spec: {strategy: {canary: {steps: [{setMirrorRoute: {name: mirror-route, percentage: 120}}]}}}`, "percentage in body should be less than or equal to 100"},
		{"traffic routing without a router", "full", `spec: {strategy: {canary: {trafficRouting: {istio: null, gatewayAPI: null, nginx: null}}}}`, "trafficRouting needs at least one router: istio, gatewayAPI or nginx"},
		{"unknown router", "full", `spec: {strategy: {canary: {trafficRouting: {istio: null, gatewayAPI: null, nginx: null, traefik: {service: x}}}}}`, "trafficRouting needs at least one router"},
		{"maxTrafficWeight 0", "full", `spec: {strategy: {canary: {trafficRouting: {maxTrafficWeight: 0}}}}`, "maxTrafficWeight in body should be greater than or equal to 1"},
		{"istio with both virtualService forms", "full", `spec: {strategy: {canary: {trafficRouting: {istio: {virtualServices: [{name: other}]}}}}}`, "istio needs exactly one of virtualService or virtualServices"},
		{"nginx without an Ingress", "full", `spec: {strategy: {canary: {trafficRouting: {nginx: {stableIngress: null}}}}}`, "nginx needs exactly one of stableIngress or stableIngresses"},
		{"gatewayAPI without routes", "full", `spec: {strategy: {canary: {trafficRouting: {gatewayAPI: {httpRoutes: null, grpcRoutes: null}}}}}`, "gatewayAPI needs at least one of httpRoutes or grpcRoutes"},
		{"antiAffinity both kinds", "full", `spec: {strategy: {canary: {antiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {}}}}}`, "antiAffinity needs exactly one of"},
		{"experiment template from unknown spec", "full", `spec: {strategy: {canary: {steps: [{experiment: {templates: [{name: a, specRef: preview}]}}]}}}`, `Unsupported value: "preview"`},
		{"analysis step without templates", "min", `spec: {strategy: {canary: {steps: [{analysis: {templates: []}}]}}}`, "should have at least 1 items"},
		{"arg with value and valueFrom", "min", `spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: a}], args: [{name: x, value: "1", valueFrom: {podTemplateHashValue: Stable}}]}}]}}}`, "an arg sets at most one of value or valueFrom"},
		{"arg valueFrom with two sources", "min", `spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: a}], args: [{name: x, valueFrom: {podTemplateHashValue: Stable, fieldRef: {fieldPath: metadata.name}}}]}}]}}}`, "valueFrom sets exactly one of secretKeyRef, fieldRef or podTemplateHashValue"},
		{"unknown pod template hash source", "min", `spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: a}], args: [{name: x, valueFrom: {podTemplateHashValue: Newest}}]}}]}}}`, `Unsupported value: "Newest"`},

		// Ephemeral metadata.
		{"canaryMetadata with the hash label", "min", `spec: {strategy: {canary: {canaryMetadata: {labels: {rollouts.kubeseed.io/pod-template-hash: x}}}}}`, "canaryMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"},
		{"stableMetadata with a selector key", "min", `spec: {strategy: {canary: {stableMetadata: {labels: {app: stable}}}}}`, "strategy.canary.stableMetadata.labels must not use the keys of selector.matchLabels"},
		{"canaryMetadata with a selector key", "min", `spec: {strategy: {canary: {canaryMetadata: {labels: {role: canary, app: canary}}}}}`, "strategy.canary.canaryMetadata.labels must not use the keys of selector.matchLabels"},
		{"previewMetadata with the hash label", "bg", `spec: {strategy: {blueGreen: {previewMetadata: {labels: {rollouts.kubeseed.io/pod-template-hash: x}}}}}`, "previewMetadata.labels must not set rollouts.kubeseed.io/pod-template-hash"},
		{"activeMetadata with a selector key", "bg", `spec: {strategy: {blueGreen: {activeMetadata: {labels: {app: active}}}}}`, "strategy.blueGreen.activeMetadata.labels must not use the keys of selector.matchLabels"},

		// Blue-green strategy.
		{"active and preview Service equal", "bg", `spec: {strategy: {blueGreen: {previewService: storefront-active}}}`, "activeService and previewService must be different Services"},
		{"autoPromotionSeconds without auto promotion", "bg", `spec: {strategy: {blueGreen: {autoPromotionSeconds: 30}}}`, "autoPromotionSeconds has no effect when autoPromotionEnabled is false"},
		{"blue-green without activeService", "bg", `spec: {strategy: {blueGreen: {activeService: null}}}`, "spec.strategy.blueGreen.activeService: Required value"},

		// Analysis templates.
		{"metric with two providers", "tmpl", `spec: {metrics: [{name: m, provider: {prometheus: {query: up}, web: {url: "http://x"}}}]}`, "provider must set exactly one of prometheus, web, job or judge"},
		{"metric with unknown provider", "tmpl", `spec: {metrics: [{name: m, provider: {datadog: {query: up}}}]}`, "provider must set exactly one of prometheus, web, job or judge"},
		{"template without metrics", "tmpl", `spec: {metrics: []}`, "should have at least 1 items"},
		{"duplicate metric names", "tmpl", `spec: {metrics: [{name: m, provider: {prometheus: {query: up}}}, {name: m, provider: {prometheus: {query: up}}}]}`, "Duplicate value"},
		{"unknown noDataPolicy", "tmpl", `spec: {metrics: [{name: m, noDataPolicy: Ignore, provider: {prometheus: {query: up}}}]}`, `Unsupported value: "Ignore"`},
		{"interval not a duration", "tmpl", `spec: {metrics: [{name: m, interval: 5 minutes, provider: {prometheus: {query: up}}}]}`, "interval in body should match"},
		{"header with value and valueFrom", "tmpl", `spec: {metrics: [{name: m, provider: {prometheus: {query: up, headers: [{key: A, value: b, valueFrom: {secretKeyRef: {name: s, key: k}}}]}}}]}`, "a header sets exactly one of value or valueFrom"},
		{"web method PUT", "tmpl", `spec: {metrics: [{name: m, provider: {web: {url: "http://x", method: PUT}}}]}`, `Unsupported value: "PUT"`},
		{"judge marginal above pass", "tmpl", `spec: {metrics: [{name: m, provider: {judge: {window: {start: 10m, step: 1m}, thresholds: {pass: 70, marginal: 80}, metrics: [{name: e, canaryQuery: a, baselineQuery: b}]}}}]}`, "thresholds.marginal must not exceed thresholds.pass"},
		{"judge unknown direction", "tmpl", `spec: {metrics: [{name: m, provider: {judge: {window: {start: 10m, step: 1m}, metrics: [{name: e, direction: sideways, canaryQuery: a, baselineQuery: b}]}}}]}`, `Unsupported value: "sideways"`},
		{"judge confidence not a number", "tmpl", `spec: {metrics: [{name: m, provider: {judge: {window: {start: 10m, step: 1m}, metrics: [{name: e, confidence: high, canaryQuery: a, baselineQuery: b}]}}}]}`, "confidence in body should match"},
	}
	ns := env.Namespace(t)
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			obj := toObject(t, patched(t, row.base, row.patch), ns)
			obj.SetName(fmt.Sprintf("row-%d", i))
			err := env.Client.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("accepted; want rejection with %q", row.want)
			}
			if !strings.Contains(err.Error(), row.want) {
				t.Fatalf("rejected with\n  %v\nwant a message containing\n  %q", err, row.want)
			}
		})
	}
}

// TestIntegrationEphemeralMetadataAccepted: the four metadata fields are
// stored as written.
func TestIntegrationEphemeralMetadataAccepted(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	canary := toObject(t, patched(t, "min", `spec: {strategy: {canary: {canaryMetadata: {labels: {role: canary}, annotations: {example.com/note: new}}, stableMetadata: {labels: {role: stable}}}}}`), ns)
	bg := toObject(t, patched(t, "bg", `spec: {strategy: {blueGreen: {activeMetadata: {labels: {role: active}}, previewMetadata: {labels: {role: preview}}}}}`), ns)
	for _, obj := range []*unstructured.Unstructured{canary, bg} {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	var ro v1alpha1.Rollout
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(canary), &ro); err != nil {
		t.Fatal(err)
	}
	c := ro.Spec.Strategy.Canary
	want := v1alpha1.CanaryStrategy{
		CanaryMetadata: &v1alpha1.PodMetadata{Labels: map[string]string{"role": "canary"}, Annotations: map[string]string{"example.com/note": "new"}},
		StableMetadata: &v1alpha1.PodMetadata{Labels: map[string]string{"role": "stable"}},
	}
	if diff := cmp.Diff([]*v1alpha1.PodMetadata{want.CanaryMetadata, want.StableMetadata}, []*v1alpha1.PodMetadata{c.CanaryMetadata, c.StableMetadata}); diff != "" {
		t.Errorf("canary metadata (-want +got):\n%s", diff)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(bg), &ro); err != nil {
		t.Fatal(err)
	}
	b := ro.Spec.Strategy.BlueGreen
	if b.ActiveMetadata == nil || b.ActiveMetadata.Labels["role"] != "active" || b.PreviewMetadata == nil || b.PreviewMetadata.Labels["role"] != "preview" {
		t.Errorf("blue-green metadata %+v %+v", b.ActiveMetadata, b.PreviewMetadata)
	}
}

func TestIntegrationSelectorIsImmutable(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	obj := toObject(t, []byte(minimalCanary), ns)
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedStringMap(obj.Object, map[string]string{"app": "web", "tier": "front"}, "spec", "selector", "matchLabels"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedStringMap(obj.Object, map[string]string{"app": "web", "tier": "front"}, "spec", "template", "metadata", "labels"); err != nil {
		t.Fatal(err)
	}
	err := env.Client.Update(context.Background(), obj)
	if err == nil || !strings.Contains(err.Error(), "selector is immutable") {
		t.Fatalf("update of the selector: got %v, want a rejection with %q", err, "selector is immutable")
	}
}

// TestIntegrationScaleSubresource: an HPA scales a Rollout through /scale,
// which maps to spec.replicas, status.HPAReplicas and status.selector.
func TestIntegrationScaleSubresource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	obj := toObject(t, []byte(minimalCanary), ns)
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	var ro v1alpha1.Rollout
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), &ro); err != nil {
		t.Fatal(err)
	}
	ro.Status.HPAReplicas = 2
	ro.Status.Selector = "app=web"
	if err := env.Client.Status().Update(ctx, &ro); err != nil {
		t.Fatal(err)
	}

	scale := &autoscalingv1.Scale{}
	if err := env.Client.SubResource("scale").Get(ctx, &ro, scale); err != nil {
		t.Fatal(err)
	}
	if scale.Spec.Replicas != 1 || scale.Status.Replicas != 2 || scale.Status.Selector != "app=web" {
		t.Errorf("scale = spec %d, status %d %q; want spec 1, status 2 \"app=web\"", scale.Spec.Replicas, scale.Status.Replicas, scale.Status.Selector)
	}
	scale.Spec.Replicas = 7
	if err := env.Client.SubResource("scale").Update(ctx, &ro, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), &ro); err != nil {
		t.Fatal(err)
	}
	if *ro.Spec.Replicas != 7 {
		t.Errorf("spec.replicas after scaling = %d, want 7", *ro.Spec.Replicas)
	}
}
