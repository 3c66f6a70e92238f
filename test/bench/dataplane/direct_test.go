//go:build bench

package dataplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
	"github.com/kubeseed/rollouts/test/dataplane"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
)

// directRoute is an HTTPRoute "direct" that no controller writes: the
// benchmark patches its weights itself, between the Services of two
// Deployments of one pod each whose pods answer as revisions a and b. It
// times Traefik alone: from the patch to the split, with no pods or
// endpoints changing around it.
type directRoute struct {
	k8s    client.Client
	ns     string
	target load.Target
	took   []float64
	rows   [][]string
}

// directStart is b's weight in the route as installed: half, so that the
// split shows Traefik routes to both.
const directStart = 50

// installDirect installs the route, its Services and Deployments in ns,
// and waits until Traefik sends half its requests to each revision.
func installDirect(b *testing.B, cl *kwok.Cluster, tr *kwok.Traefik, k8s client.Client, ns string) *directRoute {
	b.Helper()
	host := "direct." + ns + ".example"
	var yaml strings.Builder
	for _, rev := range []string{"a", "b"} {
		fmt.Fprintf(&yaml, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: direct-%[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: direct-%[1]s}}
  template:
    metadata: {labels: {app: direct-%[1]s, %[2]s: %[1]s}}
    spec: {containers: [{name: web, image: "direct:%[1]s", ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: direct-%[1]s}
spec: {selector: {app: direct-%[1]s}, ports: [{port: 80, targetPort: 8080}]}
---`, rev, v1alpha1.PodTemplateHashLabel)
	}
	yaml.WriteString(dataplane.HTTPRouteYAML("direct", host, fmt.Sprintf("[{name: direct-a, port: 80, weight: %d}, {name: direct-b, port: 80, weight: %d}]",
		100-directStart, directStart)))
	cl.MustKubectl(b, yaml.String(), "-n", ns, "apply", "-f", "-")
	if err := dataplane.WaitAccepted(context.Background(), cl, tr, ns, "direct"); err != nil {
		b.Fatal(err)
	}
	d := &directRoute{k8s: k8s, ns: ns, target: load.Target{URL: tr.Web + "/", Host: host}}
	waitRouted(b, d.target, "b", directStart/100.0)
	return d
}

// measure sets b's weight to each of stepWeights, under a steady load of
// its own, and times each from the patch's return to the measured split.
// A patch comes a throttle after Traefik applied the last change, when it
// takes a configuration at once; then the weight goes back to where it
// was. Nothing else may change meanwhile.
func (d *directRoute) measure(b *testing.B, tr *kwok.Traefik) {
	b.Helper()
	// installDirect saw the last change applied.
	time.Sleep(kwok.TraefikProvidersThrottle)
	gen, err := load.Start(context.Background(), d.target, load.Options{Rate: splitRate})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gen.Stop() })
	from := directStart
	for _, w := range stepWeights {
		at := d.patch(b, w)
		took, held := timeToEffect(b, gen, "b", write{at: at, weight: w})
		d.took = append(d.took, bench.Millis(took))
		d.rows = append(d.rows, []string{fmt.Sprintf("%d → %d", from, w), at.Format("15:04:05.000"), bench.FormatValue(bench.Millis(took)), heldShare(held, "b")})
		from = w
		time.Sleep(time.Until(at.Add(took + kwok.TraefikProvidersThrottle)))
	}
	d.patch(b, directStart)
	checkLoad(b, gen.Stop(), d.target, tr)
}

// patch sets the weights of the route: w to b, the rest to a. It returns
// when the API server has taken the patch.
func (d *directRoute) patch(b *testing.B, w int) time.Time {
	b.Helper()
	route := &gatewayv1.HTTPRoute{}
	route.Namespace, route.Name = d.ns, "direct"
	return jsonPatch(b, d.k8s, route, fmt.Sprintf(`[
		{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": %d},
		{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": %d}]`, 100-w, w))
}

func (d *directRoute) result() bench.Result {
	s := bench.Summarize(d.took)
	return bench.Result{
		Name: "HTTPRoute patched → measured split (BenchmarkDataPlaneTimeToEffect)",
		Note: "The benchmark patches the weights of an HTTPRoute of its own between two Deployments of one pod each, which nothing else changes, " +
			"and times each patch from the return of its call to the split measured as above. Each comes " + kwok.TraefikProvidersThrottle.String() +
			" (Traefik's providersThrottleDuration) after the previous split took effect: this is Traefik's delay with its throttle run out.",
		Metrics: []bench.Metric{
			{Unit: "route-to-split-p50-ms", Value: s.Median},
			{Unit: "route-to-split-min-ms", Value: s.Min},
			{Unit: "route-to-split-max-ms", Value: s.Max},
		},
		Columns: []string{"canary weight patched", "at", "split reached after (ms)", "canary % of the requests after the first window"},
		Rows:    d.rows,
	}
}
