//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
)

// TestTenancyNamespacedClusterScopeIsInvalidSpec: a namespaced controller
// cannot read ClusterAnalysisTemplates. A Rollout (or Experiment) that
// refers to one — an existing one — is refused with a message that says
// so, instead of holding a worker while the controller waits for a
// cluster-wide cache its Role cannot fill; another Rollout of the
// namespace keeps going through an update.
//
// It has a cluster of its own, with only the namespaced install: the shared
// cluster's cluster-wide controller would reconcile the namespace too.
func TestTenancyNamespacedClusterScopeIsInvalidSpec(t *testing.T) {
	t.Parallel()
	const ns = "team-a"
	cl := ownCluster(t, "tenancy", ns) // the helpers below use the package's cl: shadowed on purpose
	nsCtl := startNamespacedOn(t, cl, ns)
	template := "shared-" + ns
	cl.MustKubectl(t, fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: %s}
spec:
  metrics:
  - name: ok
    provider: {web: {url: "http://127.0.0.1:1/"}}
`, template), "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cl.Kubectl(context.Background(), "", "delete", "clusteranalysistemplate", template, "--wait=false")
	})

	cl.MustKubectl(t, fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: shared-ref}
spec:
  replicas: 1
  selector: {matchLabels: {app: shared-ref}}
  template:
    metadata: {labels: {app: shared-ref}}
    spec: {containers: [{name: app, image: "shared-ref:1"}]}
  strategy:
    canary:
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: %s, clusterScope: true}]}
---
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Experiment
metadata: {name: shared-ref}
spec:
  templates:
  - name: baseline
    selector: {matchLabels: {app: exp}}
    template:
      metadata: {labels: {app: exp}}
      spec: {containers: [{name: app, image: "exp:1"}]}
  analyses:
  - {name: shared, templateName: %s, clusterScope: true}
`, template, template), "-n", ns, "apply", "-f", "-")
	want := fmt.Sprintf(`refers to ClusterAnalysisTemplate %q, but the controller runs namespaced (--namespace=%s) and cannot read cluster-scoped templates`, template, ns)
	eventually(t, 60*time.Second, "the Rollout InvalidSpec", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "rollout", "shared-ref", "-o",
			`jsonpath={.status.phase}|{.status.conditions[?(@.type=="Stalled")].reason}|{.status.conditions[?(@.type=="Stalled")].message}`)
		return out == "Degraded|InvalidSpec|spec.strategy.canary.steps[1].analysis.templates[0] "+want, out
	})
	eventually(t, 60*time.Second, "the Experiment ended", func(ctx context.Context) (bool, string) {
		out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "experiments.rollouts.kubeseed.io", "shared-ref", "-o", "jsonpath={.status.phase}|{.status.message}")
		return err == nil && out == "Error|spec.analyses[0] "+want, fmt.Sprintf("%q %v", out, err)
	})
	if out := cl.MustKubectl(t, "", "-n", ns, "get", "rs,analysisruns", "-l", "app.kubernetes.io/name!=rollouts-controller", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("objects created for the refused Rollout and Experiment:\n%s", out)
	}

	// The namespace's other Rollout goes through an update.
	cl.MustKubectl(t, kwok.CanaryServices+"---"+kwok.CanaryRolloutYAML(2, "[{setWeight: 50}]"), "-n", ns, "apply", "-f", "-")
	healthy := func(image string) {
		t.Helper()
		eventually(t, 90*time.Second, "Healthy "+image, func(ctx context.Context) (bool, string) {
			out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "rollout", "web", "-o", "jsonpath={.status.phase} {.status.updatedReplicas}/{.status.availableReplicas} {.status.observedGeneration}/{.metadata.generation}")
			img, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "rs", "-l", "app=web,rollouts.kubeseed.io/pod-template-hash", "-o", "jsonpath={range .items[?(@.spec.replicas>0)]}{.spec.template.spec.containers[0].image} {end}")
			f := strings.Fields(out)
			gen := strings.Split(f[len(f)-1], "/")
			return len(f) == 3 && f[0] == "Healthy" && f[1] == "2/2" && gen[0] == gen[1] && strings.TrimSpace(img) == image, out + " " + img
		})
	}
	healthy("web:1")
	cl.MustKubectl(t, "", "-n", ns, "patch", "rollout", "web", "--type=merge", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:2"}]}}}}`)
	healthy("web:2")

	log := nsCtl.Log()
	if strings.Contains(log, "is cluster-scoped and the controller watches only namespace") {
		t.Errorf("the namespaced controller asked its cache for a cluster-scoped kind:\n%s", log)
	}
	if rbacDenied(log) {
		t.Errorf("permission errors in the namespaced controller's log:\n%s", log)
	}
}

// TestTenancyMetricsNeedAReaderToken: /metrics is served over HTTPS to
// callers the API server authenticates and authorizes: a token bound to
// the ClusterRole rollouts-metrics-reader gets it, a token without that
// binding is forbidden, no token is unauthorized.
func TestTenancyMetricsNeedAReaderToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if !strings.HasPrefix(ctl.Metrics, "https://") {
		t.Fatalf("the controller serves /metrics at %s, want https", ctl.Metrics)
	}
	ns := namespace(t)
	cl.MustKubectl(t, "", "-n", ns, "create", "serviceaccount", "nosy")
	nosy, err := cl.Token(ns, "nosy")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, token string
		want       []int
	}{
		{"no token", "", []int{http.StatusUnauthorized}},
		// The TokenReview reports an error for a malformed token, which
		// controller-runtime's filter answers with 500.
		{"a token that is no token", "not-a-token", []int{http.StatusUnauthorized, http.StatusInternalServerError}},
		{"a ServiceAccount without rollouts-metrics-reader", nosy, []int{http.StatusForbidden}},
		{"a ServiceAccount with rollouts-metrics-reader", metricsToken, []int{http.StatusOK}},
	} {
		code, body, err := kwok.HTTPGetWithToken(ctx, ctl.Metrics+"/metrics", tc.token)
		if err != nil || !slices.Contains(tc.want, code) {
			t.Errorf("%s: GET /metrics answered %d %v, want %v", tc.who, code, err, tc.want)
		}
		if code == http.StatusOK && !strings.Contains(body, "controller_runtime_reconcile_total") {
			t.Errorf("%s: the answer is not the controller's metrics:\n%.300s", tc.who, body)
		}
	}
	plain := strings.Replace(ctl.Metrics, "https://", "http://", 1) + "/metrics"
	if code, _, err := kwok.HTTPGet(ctx, plain); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP GET %s answered 200", plain)
	}
}
