package kwok

import "fmt"

// CanaryServices are the stable and canary Services of the Rollout that
// CanaryRolloutYAML writes.
const CanaryServices = `
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec: {selector: {app: web}, ports: [{port: 80}]}
`

// CanaryRolloutYAML is a canary Rollout "web" of image web:1 without
// traffic routing, with the given replicas and steps (a YAML list).
func CanaryRolloutYAML(replicas int, steps string) string {
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      maxSurge: "25%%"
      maxUnavailable: 0
      steps: %s
`, replicas, steps)
}
