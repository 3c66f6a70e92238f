//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWorkloadRefTakesOverADeployment: a Rollout referencing an existing
// Deployment runs its template and scales the Deployment down on success.
func TestWorkloadRefTakesOverADeployment(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
---
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: legacy, scaleDown: onsuccess}
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]
`, "-n", ns, "apply", "-f", "-")
	eventually(t, 60*time.Second, "Rollout Healthy and Deployment at 0", func(ctx context.Context) (bool, string) {
		ro, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.phase} {.status.availableReplicas}")
		d, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "deploy", "legacy", "-o", "jsonpath={.spec.replicas}")
		return strings.TrimSpace(ro) == "Healthy 3" && strings.TrimSpace(d) == "0", "rollout " + ro + ", deployment " + d
	})
	sel := cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.selector}")
	if strings.TrimSpace(sel) != "app=web" {
		t.Errorf("status.selector %q, want the Deployment's selector app=web", sel)
	}
}
