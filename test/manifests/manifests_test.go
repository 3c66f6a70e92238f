// Package manifests checks the kustomize manifests for drift.
package manifests

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var root = filepath.Join("..", "..", "manifests")

func readInto(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestNamespacedRoleMatchesClusterRole: the namespaced Role grants what the
// ClusterRole grants, minus the cluster-scoped kinds.
func TestNamespacedRoleMatchesClusterRole(t *testing.T) {
	var cr rbacv1.ClusterRole
	var r rbacv1.Role
	readInto(t, "rbac/cluster/cluster_role.yaml", &cr)
	readInto(t, "namespaced/role.yaml", &r)
	var namespaced []rbacv1.PolicyRule
	for _, rule := range cr.Rules {
		if len(rule.Resources) == 1 && rule.Resources[0] == "clusteranalysistemplates" {
			continue
		}
		namespaced = append(namespaced, rule)
	}
	if diff := cmp.Diff(namespaced, r.Rules); diff != "" {
		t.Errorf("namespaced Role differs from the ClusterRole (-cluster +namespaced):\n%s", diff)
	}
}

// TestEveryCRDIsInstalled: each generated CRD is listed in crds/kustomization.yaml.
func TestEveryCRDIsInstalled(t *testing.T) {
	var k struct {
		Resources []string `json:"resources"`
	}
	readInto(t, "crds/kustomization.yaml", &k)
	files, err := filepath.Glob(filepath.Join(root, "crds", "rollouts.kubeseed.io_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated []string
	for _, f := range files {
		generated = append(generated, filepath.Base(f))
	}
	sort.Strings(generated)
	listed := append([]string(nil), k.Resources...)
	sort.Strings(listed)
	if diff := cmp.Diff(generated, listed); diff != "" {
		t.Errorf("crds/kustomization.yaml resources (-generated +listed):\n%s", diff)
	}
	if len(generated) != 5 {
		t.Errorf("want 5 CRDs (one per kind), found %d: %s", len(generated), strings.Join(generated, ", "))
	}
}
