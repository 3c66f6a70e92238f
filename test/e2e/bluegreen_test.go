//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

const blueGreenYAML = `
apiVersion: v1
kind: Service
metadata: {name: web-active}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-preview}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 3
`

func TestBlueGreenManualPromotion(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, blueGreenYAML, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy", "web:1 3/3")

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused", "web:1 3/3, web:2 3/3")
	if got := serviceImages(t, ns, "web-active", "web-preview"); strings.Join(got, ",") != "web:1,web:2" {
		t.Fatalf("before promotion active,preview = %v; want web:1,web:2", got)
	}
	time.Sleep(2 * time.Second) // a paused rollout must stay put
	if got := serviceImages(t, ns, "web-active"); got[0] != "web:1" {
		t.Fatalf("active Service switched without promotion: %v", got)
	}

	request(t, ns, "promote", "go")
	eventually(t, 30*time.Second, "active Service on web:2", func(ctx context.Context) (bool, string) {
		got := serviceImages(t, ns, "web-active", "web-preview")
		return strings.Join(got, ",") == "web:2,web:2", strings.Join(got, ",")
	})
	// Healthy at once; the old ReplicaSet goes after scaleDownDelaySeconds.
	waitFor(t, ns, "Healthy", "web:2 3/3")
	deadline := cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-l", "app=web", "-o", `jsonpath={.items[*].metadata.annotations.rollouts\.kubeseed\.io/scale-down-deadline}`)
	if strings.TrimSpace(deadline) == "" {
		t.Error("the previous ReplicaSet has no scale-down deadline")
	}
}
