//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

const nginxYAML = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations: {nginx.ingress.kubernetes.io/rewrite-target: /}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-stable, port: {number: 80}}}}
---
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        managedRoutes: [{name: beta}]
        nginx: {stableIngress: web}
      steps:
      - setHeaderRoute: {name: beta, match: [{headerName: X-Beta, headerValue: {exact: "1"}}]}
      - setWeight: 25
      - pause: {}
`

// TestNginxCanary: the canary Ingress follows the steps (header route,
// weight), goes back to weight 0 on completion, and to 0 at once on abort.
func TestNginxCanary(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+nginxYAML, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 4/4")
	annotations := func(ctx context.Context) string {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ingress", "web-web-canary", "-o",
			`jsonpath={.metadata.annotations.nginx\.ingress\.kubernetes\.io/canary-weight} {.metadata.annotations.nginx\.ingress\.kubernetes\.io/canary-by-header}`)
		return strings.TrimSpace(out)
	}
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 2", "web:1 4/4, web:2 1/1")
	eventually(t, 10*time.Second, "weight 25 with the header route", func(ctx context.Context) (bool, string) {
		a := annotations(ctx)
		return a == "25 X-Beta", a
	})
	backend := cl.MustKubectl(t, "", "-n", ns, "get", "ingress", "web-web-canary", "-o", "jsonpath={.spec.rules[0].http.paths[0].backend.service.name}")
	if strings.TrimSpace(backend) != "web-canary" {
		t.Errorf("canary Ingress backend %q, want web-canary", backend)
	}

	request(t, ns, "abort", "a")
	eventually(t, 10*time.Second, "weight 0 after abort", func(ctx context.Context) (bool, string) {
		a := annotations(ctx)
		return a == "0", a
	})
	request(t, ns, "retry", "r")
	waitFor(t, ns, "Paused 2", "web:1 4/4, web:2 1/1")
	request(t, ns, "promote", "p")
	waitFor(t, ns, "Healthy 3", "web:2 4/4")
	if a := annotations(context.Background()); a != "0" {
		t.Errorf("after completion the canary Ingress has %q, want weight 0 and no header route", a)
	}
}
