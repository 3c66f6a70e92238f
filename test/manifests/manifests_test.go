// Package manifests checks the kustomize manifests for drift.
package manifests

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
