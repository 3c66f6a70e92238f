// Package dataplane sets up the real data plane of DESIGN §15 on a local
// kwok cluster, for the e2e tests and the benchmarks alike: the pod
// simulator that makes every Running pod answer on its loopback IP, and
// a routed app — Gateway, Services, HTTPRoute and Rollout — that Traefik
// has accepted, so requests through its entrypoint reach the pods.
package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/podsim"
)

// Pods is a running pod simulator of a cluster.
type Pods struct {
	*podsim.Simulator
	// LogPath is its log, a JSON line per pod served, stopped or refused.
	LogPath string
	// Metrics is where its counts of the requests it answered are served
	// (host:port, path /metrics), for a Prometheus to scrape.
	Metrics string
	stop    func()
}

// StartPods starts the pod simulator of cl, logging to podsim.log in its
// log directory, and returns once it has read the cluster's pods. Its
// loopback guard covers every pod of the cluster from then on.
func StartPods(cl *kwok.Cluster) (*Pods, error) {
	if !cl.Claimed() {
		// Another process may serve the same addresses.
		return nil, fmt.Errorf("cluster %s: its pods' loopback block %s is not claimed by this process (kwok.Options.Loopback, loopback.ClaimFree)", cl.Name, cl.Loopback)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		return nil, err
	}
	p := &Pods{LogPath: filepath.Join(cl.LogDir, "podsim.log")}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	if p.Simulator, err = podsim.New(cfg, logFile); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.Simulator.Metrics())
	metrics := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = metrics.Serve(l) }()
	p.Metrics = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = func() {
		cancel()
		_ = metrics.Close()
		p.Simulator.Stop()
		_ = logFile.Close()
	}
	if err := p.Start(ctx); err != nil {
		p.Stop()
		return nil, fmt.Errorf("pod simulator: %w", err)
	}
	return p, nil
}

// Stop stops serving the pods; Err still tells what went wrong before.
func (p *Pods) Stop() { p.stop() }

// RoutedApp installs, in ns, a Gateway "edge" of Traefik's class, the
// Services web-stable and web-canary (port 80 to the pods' 8080), an
// HTTPRoute "web" for host <ns>.example sending everything to web-stable,
// and the Rollout of rolloutYAML (a canary routing through the HTTPRoute,
// kwok.RoutedCanaryRolloutYAML, or a blue-green one whose active Service
// is web-stable); it waits until Traefik has programmed the Gateway and
// accepted the route, and returns where requests for the route go.
func RoutedApp(ctx context.Context, cl *kwok.Cluster, tr *kwok.Traefik, ns, rolloutYAML string) (load.Target, error) {
	host := ns + ".example"
	if _, err := cl.Kubectl(ctx, tr.GatewayYAML("edge")+fmt.Sprintf(`
---
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---%s---
%s`, HTTPRouteYAML("web", host, "[{name: web-stable, port: 80}]"), rolloutYAML), "-n", ns, "apply", "-f", "-"); err != nil {
		return load.Target{}, err
	}
	if _, err := cl.Kubectl(ctx, "", "-n", ns, "wait", "--for=condition=Programmed", "gateway/edge", "--timeout=60s"); err != nil {
		return load.Target{}, withLog(tr, err)
	}
	if err := WaitAccepted(ctx, cl, tr, ns, "web"); err != nil {
		return load.Target{}, err
	}
	return load.Target{URL: tr.Web + "/", Host: host}, nil
}

// HTTPRouteYAML is an HTTPRoute of the Gateway edge of RoutedApp for
// host, sending every request to backendRefs (a YAML list).
func HTTPRouteYAML(name, host, backendRefs string) string {
	return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s}
spec:
  parentRefs: [{name: edge}]
  hostnames: [%s]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: %s
`, name, host, backendRefs)
}

// WaitAccepted waits until Traefik has accepted the HTTPRoute route of ns.
func WaitAccepted(ctx context.Context, cl *kwok.Cluster, tr *kwok.Traefik, ns, route string) error {
	// A route's conditions sit under each of its parents.
	cond := `jsonpath={.status.parents[0].conditions[?(@.type=="Accepted")].status}=True`
	if _, err := cl.Kubectl(ctx, "", "-n", ns, "wait", "--for="+cond, "httproute/"+route, "--timeout=60s"); err != nil {
		return withLog(tr, err)
	}
	return nil
}

// withLog adds the end of Traefik's log to err.
func withLog(tr *kwok.Traefik, err error) error {
	return fmt.Errorf("%w\ntraefik log %s:\n%s", err, tr.LogPath, tail(tr.Log(), 30))
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
