package main

import (
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func parse(t *testing.T, args ...string) (*options, error) {
	t.Helper()
	fs := flag.NewFlagSet("rollouts", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return parseFlags(fs, args)
}

func TestDefaultsMatchTheDesign(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{o.metricsAddr, o.metricsSecure, o.probeAddr, o.namespace, o.leaderElect, o.rolloutWorkers, o.analysisWorkers, o.reconcileTimeout}
	want := []any{":8090", true, ":8091", "", false, 10, 10, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestBadFlagsAreRejected(t *testing.T) {
	for _, args := range [][]string{
		{"--rollout-workers=0"},
		{"--analysis-workers=-1"},
		{"--analysis-measurements=0"},
		{"--analysis-measurements-per-namespace=0"},
		{"--reconcile-timeout=0"},
		{"--reconcile-timeout=-1s"},
		{"--no-such-flag"},
		{"--zap-log-level=loud"},
		{"--analysis-deny-cidrs=10.0.0.0/33"},
		{"--analysis-allow-cidrs=metadata.internal"},
	} {
		if _, err := parse(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestAnalysisEgressFlags(t *testing.T) {
	o, err := parse(t, "--analysis-deny-cidrs=127.0.0.77/32, 10.0.0.0/8", "--analysis-allow-cidrs=169.254.169.254/32")
	if err != nil {
		t.Fatal(err)
	}
	for ip, denied := range map[string]bool{"127.0.0.77": true, "10.1.2.3": true, "169.254.169.254": false, "169.254.0.1": true, "127.0.0.1": false} {
		if err := o.analysisEgress.Allowed(netip.MustParseAddr(ip)); (err != nil) != denied {
			t.Errorf("%s: %v, want denied=%v", ip, err, denied)
		}
	}
	d, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.analysisEgress.Allowed(netip.MustParseAddr("169.254.169.254")); err == nil {
		t.Error("the default policy lets measurements reach 169.254.169.254")
	}
}

func TestManagerOptions(t *testing.T) {
	o, err := parse(t, "--namespace=team-a", "--leader-elect")
	if err != nil {
		t.Fatal(err)
	}
	m := managerOptions(o)
	if _, ok := m.Cache.DefaultNamespaces["team-a"]; !ok || len(m.Cache.DefaultNamespaces) != 1 {
		t.Errorf("namespaced mode caches %v, want only team-a", m.Cache.DefaultNamespaces)
	}
	if !m.LeaderElection || m.LeaderElectionID == "" {
		t.Errorf("leader election not configured: %v %q", m.LeaderElection, m.LeaderElectionID)
	}
	var rsSelector labels.Selector
	for obj, by := range m.Cache.ByObject {
		if _, ok := obj.(*appsv1.ReplicaSet); ok {
			rsSelector = by.Label
		}
	}
	if rsSelector == nil {
		t.Fatal("the ReplicaSet cache is not label-filtered")
	}
	managed := labels.Set{v1alpha1.PodTemplateHashLabel: "abc"}
	unmanaged := labels.Set{"pod-template-hash": "abc"}
	if !rsSelector.Matches(managed) || rsSelector.Matches(unmanaged) {
		t.Errorf("ReplicaSet cache selector %q must keep only managed ReplicaSets", rsSelector)
	}

	all, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if ns := managerOptions(all).Cache.DefaultNamespaces; len(ns) != 0 {
		t.Errorf("cluster mode restricts the cache to %v", ns)
	}
}

// TestManifestArgsAreFlags keeps manifests/ in step with the binary: every
// argument the Deployments pass must parse.
func TestManifestArgsAreFlags(t *testing.T) {
	for _, path := range []string{
		filepath.Join("..", "..", "manifests", "controller", "deployment.yaml"),
		// The chart with every value that renders a flag set.
		filepath.Join("..", "..", "test", "release", "testdata", "helm-template-custom.golden"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if d.Kind == "Deployment" {
				args = d.Spec.Template.Spec.Containers[0].Args
			}
		}
		if len(args) == 0 {
			t.Fatalf("%s: no Deployment with args", path)
		}
		// The namespaced overlay appends this one.
		args = append(args, "--namespace=$(POD_NAMESPACE)")
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "$(POD_NAMESPACE)", "rollouts")
		}
		if _, err := parse(t, args...); err != nil {
			t.Errorf("%s: args %v: %v", path, args, err)
		}
	}
}

func TestControllerOptions(t *testing.T) {
	o, err := parse(t, "--reconcile-timeout=5s", "--analysis-workers=3", "--analysis-measurements=40", "--analysis-measurements-per-namespace=4")
	if err != nil {
		t.Fatal(err)
	}
	if c := o.controllerOptions(o.analysisWorkers); c.MaxConcurrentReconciles != 3 || c.ReconciliationTimeout != 5*time.Second {
		t.Errorf("controller options %d workers, timeout %s; want 3 and 5s", c.MaxConcurrentReconciles, c.ReconciliationTimeout)
	}
	// First in, first out: the priority queue starves what was listed at
	// start-up (found by the chaos soak).
	if c := o.controllerOptions(1); c.UsePriorityQueue == nil || *c.UsePriorityQueue {
		t.Errorf("controller options use the priority queue (%v), want a first-in first-out queue", c.UsePriorityQueue)
	}
	if o.measurements != 40 || o.measurementsPerNamespace != 4 {
		t.Errorf("measurements %d, per namespace %d; want 40 and 4", o.measurements, o.measurementsPerNamespace)
	}
}

func TestCacheTrimsObjects(t *testing.T) {
	if m := managerOptions(&options{}); m.Cache.DefaultTransform == nil {
		t.Error("the cache does not trim objects")
	}
}

func TestClientLimitsAreFlags(t *testing.T) {
	o, err := parse(t, "--kube-api-qps=50", "--kube-api-burst=80", "--pprof-bind-address=127.0.0.1:6060")
	if err != nil {
		t.Fatal(err)
	}
	if o.kubeAPIQPS != 50 || o.kubeAPIBurst != 80 || managerOptions(o).PprofBindAddress != "127.0.0.1:6060" {
		t.Errorf("qps %g burst %d pprof %q", o.kubeAPIQPS, o.kubeAPIBurst, managerOptions(o).PprofBindAddress)
	}
	for _, bad := range []string{"--kube-api-qps=0", "--kube-api-burst=0"} {
		if _, err := parse(t, bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestMetricsAreSecureUnlessSaidOtherwise: HTTPS with the API server's
// authentication and authorization by default; plain HTTP only on request.
func TestMetricsAreSecureUnlessSaidOtherwise(t *testing.T) {
	o, err := parse(t, "--metrics-cert-dir=/certs")
	if err != nil {
		t.Fatal(err)
	}
	m := metricsOptions(o)
	if !m.SecureServing || m.FilterProvider == nil || m.CertDir != "/certs" {
		t.Errorf("default metrics: secure %t, filter %t, cert dir %q; want HTTPS with authn/authz from /certs", m.SecureServing, m.FilterProvider != nil, m.CertDir)
	}
	o, err = parse(t, "--metrics-secure=false")
	if err != nil {
		t.Fatal(err)
	}
	if m := metricsOptions(o); m.SecureServing || m.FilterProvider != nil {
		t.Errorf("--metrics-secure=false: secure %t, filter %t; want plain HTTP", m.SecureServing, m.FilterProvider != nil)
	}
}
