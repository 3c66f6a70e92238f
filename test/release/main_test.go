//go:build e2e

// Package release tests what a release ships, as a user installs it: the
// controller image run from its own filesystem as its own user, install.yaml
// on a fresh local cluster with the RBAC it grants, the plugin from its
// archive, the krew manifest and checksums, and the Helm chart.
package release

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kubeseed/rollouts/internal/release"
	"github.com/kubeseed/rollouts/test/testenv"
)

// rel is the release that TestMain builds once, for this machine's platform
// (make release builds every platform; the code is the same).
var rel struct {
	opts  release.Options
	image *release.BuiltImage
}

var host = release.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root := testenv.RepoRoot()
	dir, err := os.MkdirTemp(filepath.Join(root, "bin"), "release-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()
	b, err := release.Describe(ctx, root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	rel.opts = release.Options{
		Root:            root,
		Build:           b,
		Image:           release.DefaultImage,
		ImagePlatforms:  []release.Platform{{OS: "linux", Arch: runtime.GOARCH}},
		PluginPlatforms: []release.Platform{host},
		ImageDir:        filepath.Join(dir, "image"),
		ReleaseDir:      filepath.Join(dir, "release"),
		Log:             os.Stderr,
	}
	if rel.image, err = release.Release(ctx, rel.opts); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		return 1
	}
	return m.Run()
}
