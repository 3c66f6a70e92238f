//go:build e2e

// Package e2e runs the controller binary against a whole local cluster (kwok
// simulated nodes, real control plane), installed from manifests/ and running
// with exactly the permissions of its ServiceAccount.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/testenv"
)

const (
	controllerNS = kwok.ControllerNamespace
	controllerSA = kwok.ControllerServiceAccount
)

var (
	cl  *cluster
	ctl *controller
	// metricsToken is the token of a ServiceAccount bound to the ClusterRole
	// rollouts-metrics-reader, which may scrape the controller's /metrics.
	metricsToken string
)

// metricsScraper is the ServiceAccount whose token scrapes /metrics.
const metricsScraper = "metrics-scraper"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	cl, err = newCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cl.Down()
	ctx := context.Background()
	// The routers' CRDs (Istio, Gateway API), from their Go modules, as a
	// mesh or gateway install would provide them.
	crds, err := testenv.RouterCRDPaths()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := cl.Install(ctx, crds...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := startPodsim(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if metricsToken, err = scraperToken(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	kc, err := cl.ServiceAccountKubeconfig(controllerNS, controllerSA)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// TestTenancyEgressDenied needs an address of lo that the egress
	// policy denies.
	ctl, err = cl.StartController("controller", kc, controllerArgs()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := m.Run()
	if err := ctl.Stop(40 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: controller did not shut down cleanly: %v\n%s", err, ctl.Log())
		code = 1
	}
	if err := stopDataPlane(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	// Last, with every controller stopped: the RBAC the manifests grant is
	// the RBAC the run used. Only a run of every test can show a rule unused.
	complete := flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == ""
	if err := checkRBACAgainstAudit(cl.AuditLog(), complete); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: RBAC and the audit log %s disagree:\n%v\n", cl.AuditLog(), err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: controller log: %s\n", ctl.LogPath)
	}
	return code
}

// scraperToken creates the ServiceAccount metricsScraper, bound to the
// ClusterRole rollouts-metrics-reader, and returns a token of it.
func scraperToken(ctx context.Context) (string, error) {
	for _, args := range [][]string{
		{"-n", controllerNS, "create", "serviceaccount", metricsScraper},
		{"create", "clusterrolebinding", metricsScraper, "--clusterrole=rollouts-metrics-reader", "--serviceaccount=" + controllerNS + ":" + metricsScraper},
	} {
		if _, err := cl.Kubectl(ctx, "", args...); err != nil {
			return "", err
		}
	}
	return cl.Token(controllerNS, metricsScraper)
}

// scrape reads the controller's /metrics with the scraper's token.
func scrape(ctx context.Context, c *controller) (int, string, error) {
	return kwok.HTTPGetWithToken(ctx, c.Metrics+"/metrics", metricsToken)
}

// namespace creates a namespace of the test's own.
func namespace(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + hex.EncodeToString(b)
	cl.MustKubectl(t, "", "create", "namespace", name)
	t.Cleanup(func() { _, _ = cl.Kubectl(context.Background(), "", "delete", "namespace", name, "--wait=false") })
	return name
}

func TestDeploymentPodsBecomeReadyOnSimulatedNodes(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, "", "-n", ns, "create", "deployment", "web", "--image=registry.example/web:1", "--replicas=3")
	eventually(t, 60*time.Second, "3 ready pods", func(ctx context.Context) (bool, string) {
		out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}")
		return err == nil && strings.TrimSpace(out) == "3", "readyReplicas=" + out
	})
	out := cl.MustKubectl(t, "", "-n", ns, "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{"\n"}{end}`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "Running node-") {
			t.Errorf("pod not running on a simulated node: %q", line)
		}
	}
}

func TestControllerProbesAndMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, p := range []string{"/healthz", "/readyz"} {
		code, body, err := kwok.HTTPGet(ctx, ctl.Probes+p)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %q %v", p, code, body, err)
		}
	}
	code, body, err := kwok.HTTPGet(ctx, ctl.Probes+"/nonexistent")
	if err != nil || code == http.StatusOK {
		t.Errorf("GET /nonexistent answered %d %q %v; want an error status", code, body, err)
	}

	// A Rollout created now must be reconciled by the rollout controller,
	// which shows the watch works with the ServiceAccount's permissions.
	ns := namespace(t)
	before := reconcileCount(t, "rollout")
	cl.MustKubectl(t, `
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: registry.example/web:1}]}
  strategy: {canary: {steps: [{setWeight: 50}, {pause: {}}]}}
`, "-n", ns, "apply", "-f", "-")
	eventually(t, 30*time.Second, "rollout reconciled", func(context.Context) (bool, string) {
		n := reconcileCount(t, "rollout")
		return n > before, fmt.Sprintf("reconcile_total went from %d to %d", before, n)
	})
	info := `rollouts_info{name="web",namespace="` + ns + `",phase="Healthy",strategy="canary"} 1`
	eventually(t, 30*time.Second, "rollouts_info for the Healthy rollout", func(ctx context.Context) (bool, string) {
		_, body, err := scrape(ctx, ctl)
		return err == nil && strings.Contains(body, info), "want " + info
	})
	code, metrics, err := scrape(ctx, ctl)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics with the token of a rollouts-metrics-reader: %d %v", code, err)
	}
	for _, want := range []string{
		`controller_runtime_active_workers\{controller="analysisrun"\}`,
		`controller_runtime_active_workers\{controller="experiment"\}`,
		`controller_runtime_active_workers\{controller="rollout"\}`,
		`rest_client_requests_total\{`,
		`leader_election_master_status\{name="rollouts-controller.rollouts.kubeseed.io"\} 1`,
		`rollouts_reconcile_duration_seconds_count [1-9]`,
	} {
		if !regexp.MustCompile(want).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// reconcileCount reads controller_runtime_reconcile_total of one controller,
// summed over results.
func reconcileCount(t *testing.T, controllerName string) int {
	t.Helper()
	code, body, err := scrape(context.Background(), ctl)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	re := regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="` + controllerName + `",result="[a-z_]+"\} (\d+)$`)
	total := 0
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

// lastLine is the last non-empty line of out (kubectl auth can-i prints
// warnings before its answer).
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func TestControllerHoldsTheLeaderLease(t *testing.T) {
	t.Parallel()
	out := cl.MustKubectl(t, "", "-n", controllerNS, "get", "lease", "rollouts-controller.rollouts.kubeseed.io", "-o", "jsonpath={.spec.holderIdentity}")
	if strings.TrimSpace(out) == "" {
		t.Fatalf("lease has no holder")
	}
}

func TestControllerLogsAreJSONWithoutPermissionErrors(t *testing.T) {
	t.Parallel()
	log := ctl.Log()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) < 3 {
		t.Fatalf("expected log lines, got %q", log)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			t.Errorf("log line is not JSON: %s", l)
		}
		if rbacDenied(l) {
			t.Errorf("permission error in controller log: %s", l)
		}
	}
}

// rbacDenied reports an authorization failure of the controller's
// ServiceAccount (not, say, an event refused by a namespace being deleted).
func rbacDenied(log string) bool {
	return strings.Contains(log, `is forbidden: User "system:serviceaccount:`)
}

// TestServiceAccountIsLeastPrivilege checks what the rendered RBAC grants.
func TestServiceAccountIsLeastPrivilege(t *testing.T) {
	t.Parallel()
	as := fmt.Sprintf("--as=system:serviceaccount:%s:%s", controllerNS, controllerSA)
	rows := []struct {
		verb, resource, ns string
		want               bool
	}{
		{"patch", "rollouts.rollouts.kubeseed.io --subresource=status", "any", true},
		{"patch", "rollouts.rollouts.kubeseed.io", "any", true}, // the cleanup finalizer
		{"create", "replicasets.apps", "any", true},
		{"create", "pods --subresource=eviction", "any", true},
		{"patch", "pods", "any", true}, // ephemeral metadata
		{"patch", "services", "any", true},
		{"get", "secrets", "any", true},
		{"patch", "httproutes.gateway.networking.k8s.io", "any", true},
		{"patch", "virtualservices.networking.istio.io", "any", true},
		{"create", "ingresses.networking.k8s.io", "any", true},
		{"create", "jobs.batch", "any", true},
		{"update", "leases.coordination.k8s.io", controllerNS, true},
		{"list", "clusteranalysistemplates.rollouts.kubeseed.io", "", true},
		{"create", "tokenreviews.authentication.k8s.io", "", true}, // /metrics authentication
		{"create", "subjectaccessreviews.authorization.k8s.io", "", true},
		{"update", "rollouts.rollouts.kubeseed.io --subresource=finalizers", "any", true}, // blockOwnerDeletion

		{"list", "secrets", "any", false},
		{"create", "pods", "any", false},
		{"delete", "pods", "any", false},
		{"update", "pods", "any", false},
		{"delete", "rollouts.rollouts.kubeseed.io", "any", false},
		// Everything is written by patch: no update, which would replace
		// whole objects.
		{"update", "rollouts.rollouts.kubeseed.io", "any", false},
		{"update", "rollouts.rollouts.kubeseed.io --subresource=status", "any", false},
		{"update", "replicasets.apps", "any", false},
		{"update", "services", "any", false},
		{"update", "httproutes.gateway.networking.k8s.io", "any", false},
		{"delete", "experiments.rollouts.kubeseed.io", "any", false},
		{"delete", "leases.coordination.k8s.io", controllerNS, false},
		{"update", "leases.coordination.k8s.io", "kube-system", false},
		{"delete", "nodes", "", false},
		{"delete", "namespaces", "", false},
		{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", false},
		{"update", "customresourcedefinitions.apiextensions.k8s.io", "", false},
		{"create", "clusteranalysistemplates.rollouts.kubeseed.io", "", false},
	}
	for _, r := range rows {
		args := append([]string{"auth", "can-i", r.verb}, strings.Fields(r.resource)...)
		args = append(args, as)
		if r.ns != "" {
			args = append(args, "-n", r.ns)
		}
		out, _ := cl.Kubectl(context.Background(), "", args...) // can-i exits 1 for "no"
		got := lastLine(out) == "yes"
		if got != r.want {
			t.Errorf("can-i %s %s -n %q: got %q, want %v", r.verb, r.resource, r.ns, strings.TrimSpace(out), r.want)
		}
	}
}

// TestNamespacedMode installs the namespaced overlay into a namespace and runs
// a second controller there with only the overlay's Role.
func TestNamespacedMode(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	nsCtl := startNamespaced(t, ns)

	as := fmt.Sprintf("--as=system:serviceaccount:%s:%s", ns, controllerSA)
	if out, _ := cl.Kubectl(context.Background(), "", "auth", "can-i", "list", "rollouts.rollouts.kubeseed.io", "-n", "default", as); lastLine(out) != "no" {
		t.Errorf("namespaced ServiceAccount may list rollouts in another namespace: %s", out)
	}
	if out, _ := cl.Kubectl(context.Background(), "", "auth", "can-i", "patch", "rollouts.rollouts.kubeseed.io", "--subresource=status", "-n", ns, as); lastLine(out) != "yes" {
		t.Errorf("namespaced ServiceAccount may not patch rollout status in its namespace: %s", out)
	}
	if rbacDenied(nsCtl.Log()) {
		t.Errorf("permission errors in the namespaced controller's log:\n%s", nsCtl.Log())
	}
}

// ownCluster starts a one-node cluster for one test, with the CRDs and the
// namespace ns: a namespaced controller there is the only one (the shared
// cluster's cluster-wide controller would reconcile ns too).
func ownCluster(t *testing.T, name, ns string) *cluster {
	t.Helper()
	own, err := kwok.Up(cl.Root, cl.Name+"-"+name, filepath.Join(cl.LogDir, name), kwok.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Down)
	own.MustKubectl(t, "", "create", "namespace", ns)
	own.MustKubectl(t, "", "apply", "--server-side", "-k", "manifests/crds")
	own.MustKubectl(t, "", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	return own
}

// startNamespaced installs the namespaced overlay into ns, through a user's
// own kustomization on top of it as the overlay's comment suggests, and
// starts a controller there as the overlay's ServiceAccount.
func startNamespaced(t *testing.T, ns string) *controller {
	t.Helper()
	return startNamespacedOn(t, cl, ns)
}

// startNamespacedOn is startNamespaced on another cluster.
func startNamespacedOn(t *testing.T, cl *cluster, ns string) *controller {
	t.Helper()
	dir := filepath.Join(cl.LogDir, "overlay-"+ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, filepath.Join(cl.Root, "manifests", "namespaced"))
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf("namespace: %s\nresources:\n- %s\n", ns, rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	rendered, err := exec.Command(cl.Bin("kubectl"), "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kustomize: %v\n%s", err, rendered)
	}
	if strings.Contains(string(rendered), "kind: ClusterRole") {
		t.Fatalf("namespaced overlay renders cluster-wide RBAC:\n%s", rendered)
	}
	cl.MustKubectl(t, string(rendered), "apply", "--server-side", "-f", "-")

	kc, err := cl.ServiceAccountKubeconfig(ns, controllerSA)
	if err != nil {
		t.Fatal(err)
	}
	nsCtl, err := cl.StartController("namespaced-"+ns, kc, "--namespace="+ns, "--leader-elect", "--leader-election-namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsCtl.Stop(40 * time.Second) })
	return nsCtl
}

// TestGracefulShutdown stops a controller with SIGTERM and expects a clean,
// prompt exit that releases its Lease.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	kc, err := cl.ServiceAccountKubeconfig(controllerNS, controllerSA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.StartController("shutdown", kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(40 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, c.Log())
	}
	if !strings.Contains(c.Log(), "Stopping and waiting for") {
		t.Errorf("no orderly shutdown in the log:\n%s", c.Log())
	}
}

func TestPluginVersionFindsTheController(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(cl.Bin("kubectl-rollouts"), "--kubeconfig", cl.Kubeconfig, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl-rollouts version: %v\n%s", err, out)
	}
	want := "controller: rollouts-system/rollouts-controller image "
	if !strings.Contains(string(out), want) {
		t.Errorf("version output lacks %q:\n%s", want, out)
	}
}

// controllerArgs are the flags of the shared e2e controller, also when a
// test restarts it.
func controllerArgs() []string { return kwok.ControllerArgs() }
