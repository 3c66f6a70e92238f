//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/podsim"
)

// The data plane (DESIGN §15): podsim makes every Running pod of the
// cluster answer HTTP on its loopback IP for the whole run, so its
// loopback guard covers every test; Traefik, the Gateway API
// implementation, starts with the first test that needs it.
var (
	pods       *podsim.Simulator
	stopPods   context.CancelFunc
	traefikMu  sync.Mutex
	traefik    *kwok.Traefik
	traefikErr error
)

// startPodsim starts the pod simulator, logging to the run's log directory.
func startPodsim() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(cl.LogDir, "podsim.log"))
	if err != nil {
		return err
	}
	if pods, err = podsim.New(cfg, logFile); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopPods = func() {
		cancel()
		pods.Stop()
		_ = logFile.Close()
	}
	if err := pods.Start(ctx); err != nil {
		stopPods()
		return fmt.Errorf("pod simulator: %w", err)
	}
	return nil
}

// stopDataPlane stops Traefik and the pod simulator and reports what went
// wrong with either during the run: a pod the simulator refused (an
// address outside loopback above all), Traefik exiting early.
func stopDataPlane() error {
	var problems []string
	traefikMu.Lock()
	if traefik != nil {
		if err := traefik.Exited(); err != nil {
			problems = append(problems, fmt.Sprintf("traefik: %v; log %s", err, traefik.LogPath))
		} else {
			_ = traefik.Stop(10 * time.Second)
		}
	}
	traefikMu.Unlock()
	if pods != nil {
		stopPods()
		if err := pods.Err(); err != nil {
			problems = append(problems, fmt.Sprintf("pod simulator (log %s): %v", filepath.Join(cl.LogDir, "podsim.log"), err))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("data plane:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

// proxy returns the run's Traefik, starting it on first use; a Traefik
// that does not start fails the test with its log.
func proxy(t *testing.T) *kwok.Traefik {
	t.Helper()
	traefikMu.Lock()
	defer traefikMu.Unlock()
	if traefik == nil && traefikErr == nil {
		traefik, traefikErr = cl.StartTraefik("traefik")
	}
	if traefikErr != nil {
		t.Fatal(traefikErr)
	}
	if err := traefik.Exited(); err != nil {
		t.Fatalf("%v; log %s:\n%s", err, traefik.LogPath, traefik.Log())
	}
	return traefik
}

// checkDataPlane fails the test when the pod simulator refused a pod so
// far (the run fails too, at its end, for pods of other tests).
func checkDataPlane(t *testing.T) {
	t.Helper()
	if err := pods.Err(); err != nil {
		t.Errorf("pod simulator: %v", err)
	}
}

// routedApp installs, in ns, a Gateway "edge" of Traefik's class, the
// Services web-stable and web-canary (port 80 to the pods' 8080), an
// HTTPRoute "web" for host <ns>.example sending everything to web-stable,
// and the Rollout of rolloutYAML (which routes through the HTTPRoute); it
// waits until Traefik has programmed the Gateway and accepted the route,
// and returns where requests for the route go.
func routedApp(t *testing.T, ns, rolloutYAML string) load.Target {
	t.Helper()
	tr := proxy(t)
	host := ns + ".example"
	cl.MustKubectl(t, tr.GatewayYAML("edge")+fmt.Sprintf(`
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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: edge}]
  hostnames: [%s]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-stable, port: 80}]
---
%s`, host, rolloutYAML), "-n", ns, "apply", "-f", "-")
	for _, obj := range []string{"gateway/edge", "httproute/web"} {
		cond := "Programmed"
		if strings.HasPrefix(obj, "httproute") {
			// A route's conditions sit under each of its parents.
			cond = "jsonpath={.status.parents[0].conditions[?(@.type==\"Accepted\")].status}=True"
		} else {
			cond = "condition=" + cond
		}
		if _, err := cl.Kubectl(context.Background(), "", "-n", ns, "wait", "--for="+cond, obj, "--timeout=60s"); err != nil {
			t.Fatalf("%v\ntraefik log %s:\n%s", err, tr.LogPath, tail(tr.Log(), 30))
		}
	}
	return load.Target{URL: tr.Web + "/", Host: host}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// revisions returns the stable and the canary (current) pod-template-hash
// of the Rollout web.
func revisions(t *testing.T, ns string) (stable, canary string) {
	t.Helper()
	stable, canary = revisionsOf(context.Background(), ns)
	if stable == "" {
		t.Fatalf("Rollout web has no stable and current hash")
	}
	return stable, canary
}

// traefikService is a service of Traefik's API, /api/http/services.
type traefikService struct {
	Name     string `json:"name"`
	Weighted *struct {
		Services []struct {
			Name   string `json:"name"`
			Weight int    `json:"weight"`
		} `json:"services"`
	} `json:"weighted"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

// applied is what Traefik routes by now for the HTTPRoute web of a
// namespace: for each weighted service Traefik made of the route's rules,
// "backend=weight,…" in the order of the rule's backendRefs; for each
// backend Service, the addresses it sends to ("ip:port,…", sorted). Names
// follow Traefik's Gateway provider: <namespace>-<service>-http-<port>.
type applied struct {
	weights []string
	servers map[string]string
}

func (a applied) String() string { return fmt.Sprintf("weights %v, servers %v", a.weights, a.servers) }

func appliedRoutes(ctx context.Context, ns string) (applied, error) {
	code, body, err := kwok.HTTPGet(ctx, traefik.API+"/api/http/services?per_page=1000")
	if err != nil {
		return applied{}, fmt.Errorf("traefik API: %w", err)
	}
	if code != http.StatusOK {
		return applied{}, fmt.Errorf("traefik API: %d %s", code, body)
	}
	var services []traefikService
	if err := json.Unmarshal([]byte(body), &services); err != nil {
		return applied{}, fmt.Errorf("traefik API: %w", err)
	}
	short := func(name string) string {
		name, _, _ = strings.Cut(name, "@")
		return strings.TrimSuffix(strings.TrimPrefix(name, ns+"-"), "-http-80")
	}
	out := applied{servers: map[string]string{}}
	for _, s := range services {
		switch {
		case s.Weighted != nil && strings.HasPrefix(s.Name, "httproute-"+ns+"-web-"):
			var ws []string
			for _, b := range s.Weighted.Services {
				ws = append(ws, fmt.Sprintf("%s=%d", short(b.Name), b.Weight))
			}
			out.weights = append(out.weights, strings.Join(ws, ","))
		case s.LoadBalancer != nil && strings.HasPrefix(s.Name, ns+"-"):
			var urls []string
			for _, srv := range s.LoadBalancer.Servers {
				urls = append(urls, strings.TrimPrefix(srv.URL, "http://"))
			}
			slices.Sort(urls)
			out.servers[short(s.Name)] = strings.Join(urls, ",")
		}
	}
	slices.Sort(out.weights)
	return out, nil
}

// readyAddresses returns "ip:8080,…" (sorted) of the Running, Ready pods of
// ns of a revision that are not being deleted.
func readyAddresses(ctx context.Context, ns, revision string) (string, error) {
	out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "pods", "-l", "rollouts.kubeseed.io/pod-template-hash="+revision, "-o",
		`jsonpath={range .items[*]}{.status.podIP} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return "", err
	}
	var addrs []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "Running" && f[2] == "True" {
			addrs = append(addrs, f[0]+":8080")
		}
	}
	slices.Sort(addrs)
	return strings.Join(addrs, ","), nil
}

// waitApplied waits until Traefik routes the route web of ns as the
// Rollout says: the rules' weights are weights (one entry per rule, such as
// "web-stable=90,web-canary=10"), and web-stable and web-canary send to
// exactly the ready pods of the stable and canary revisions. The
// controller writes weights and Service selectors apart, and the proxy
// learns of each on its own; a measurement starts once both have arrived.
func waitApplied(t *testing.T, ns string, weights []string) {
	t.Helper()
	slices.Sort(weights)
	eventually(t, 60*time.Second, fmt.Sprintf("traefik routes %v to the revisions' pods", weights), func(ctx context.Context) (bool, string) {
		got, err := appliedRoutes(ctx, ns)
		if err != nil {
			return false, err.Error()
		}
		stable, canary := revisionsOf(ctx, ns)
		want := map[string]string{}
		for svc, rev := range map[string]string{"web-stable": stable, "web-canary": canary} {
			if want[svc], err = readyAddresses(ctx, ns, rev); err != nil {
				return false, err.Error()
			}
		}
		ok := slices.Equal(got.weights, weights) && got.servers["web-stable"] == want["web-stable"] && got.servers["web-canary"] == want["web-canary"]
		return ok, fmt.Sprintf("%v; want servers %v", got, want)
	})
}

// revisionsOf returns the stable and the canary (current) pod-template-hash
// of the Rollout web.
func revisionsOf(ctx context.Context, ns string) (stable, canary string) {
	out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.stableRS} {.status.currentPodHash}")
	f := strings.Fields(out)
	if len(f) != 2 {
		return "", ""
	}
	return f[0], f[1]
}
