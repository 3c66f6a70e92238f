//go:build e2e

package release

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubeseed/rollouts/internal/release"
)

// TestReleaseBundle: every file of the release is listed in checksums.txt
// with its sha256, and the krew manifest parses with krew's rules and names
// the archives' sums.
func TestReleaseBundle(t *testing.T) {
	t.Parallel()
	dir := rel.opts.ReleaseDir
	if err := release.VerifyChecksums(dir); err != nil {
		t.Error(err)
	}
	v := rel.opts.Build.Version
	for _, f := range []string{"install.yaml", "install-namespaced.yaml", "crds.yaml", "rollouts.yaml",
		release.ArchiveName(v), release.PluginArchiveName(v, host), "rollouts-" + release.ChartVersion(rel.opts.Build) + ".tgz"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the release lacks %s: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "rollouts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := release.ParseKrewPlugin(b)
	if err != nil {
		t.Fatalf("rollouts.yaml: %v\n%s", err, b)
	}
	if k.Spec.Version != v || len(k.Spec.Platforms) != len(rel.opts.PluginPlatforms) {
		t.Errorf("krew manifest version %s with %d platforms, want %s with %d", k.Spec.Version, len(k.Spec.Platforms), v, len(rel.opts.PluginPlatforms))
	}
	sums, err := release.ReadChecksums(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range k.Spec.Platforms {
		archive := filepath.Base(p.URI)
		if sums[archive] == "" || p.Sha256 != sums[archive] {
			t.Errorf("krew says %s has sha256 %s; checksums.txt says %q", archive, p.Sha256, sums[archive])
		}
	}
}
