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
	return canaryRolloutYAML(replicas, `{name: web, image: "web:1"}`, `
      maxSurge: "25%"
      maxUnavailable: 0`, steps)
}

// RoutedCanaryRolloutYAML is a canary Rollout "web" of image web:1 serving
// HTTP on 8080, routed through the HTTPRoute web (test/dataplane's
// RoutedApp installs it), with the given replicas, managed routes and
// steps (YAML lists).
func RoutedCanaryRolloutYAML(replicas int, managedRoutes, steps string) string {
	return canaryRolloutYAML(replicas, `{name: web, image: "web:1", ports: [{containerPort: 8080}]}`, `
      scaleDownDelaySeconds: 5
      abortScaleDownDelaySeconds: 5
      trafficRouting:
        managedRoutes: `+managedRoutes+`
        gatewayAPI: {httpRoutes: [{name: web}]}`, steps)
}

// canaryRolloutYAML is a canary Rollout "web" of one container, between
// the Services of CanaryServices, with more fields of its canary strategy
// (YAML lines indented as they are).
func canaryRolloutYAML(replicas int, container, canary, steps string) string {
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [%s]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable%s
      steps: %s
`, replicas, container, canary, steps)
}
