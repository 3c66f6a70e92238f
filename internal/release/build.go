// Package release builds what a release of rollouts ships (DESIGN §12): the
// controller's OCI image, made in Go without Docker; the install manifests
// pinned to that image by digest; the plugin's archives with a krew manifest;
// the chart with the image pinned; and checksums of all of it.
//
// Every artifact is reproducible: its bytes depend only on the commit and the
// Go toolchain. Times are the commit's time, archive entries are sorted and
// carry fixed owners and modes, and gzip headers carry no name or time.
package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Source is where the code lives; it names the image's source and the
// download addresses of the plugin archives.
const Source = "https://github.com/kubeseed/rollouts"

// Build identifies what is being released.
type Build struct {
	Version string    // semantic version with a leading v (hack/version.sh)
	Commit  string    // full commit hash
	Created time.Time // the commit's time: the time of every artifact
}

// ShortCommit is the commit as binaries report it.
func (b Build) ShortCommit() string {
	if len(b.Commit) > 7 {
		return b.Commit[:7]
	}
	return b.Commit
}

// Describe reads the Build of the checkout at root from git.
func Describe(ctx context.Context, root string) (Build, error) {
	version, err := run(ctx, root, nil, filepath.Join(root, "hack", "version.sh"))
	if err != nil {
		return Build{}, err
	}
	commit, err := run(ctx, root, nil, "git", "rev-parse", "HEAD")
	if err != nil {
		return Build{}, err
	}
	ts, err := run(ctx, root, nil, "git", "log", "-1", "--format=%ct")
	if err != nil {
		return Build{}, err
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Build{}, fmt.Errorf("commit time %q: %w", ts, err)
	}
	return Build{Version: version, Commit: commit, Created: time.Unix(secs, 0).UTC()}, nil
}

// Platform is an operating system and architecture Go builds for.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatforms reads a comma-separated list such as "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]Platform, error) {
	var ps []Platform
	for _, f := range strings.Split(s, ",") {
		os, arch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || os == "" || arch == "" {
			return nil, fmt.Errorf("platform %q: want os/arch, such as linux/amd64", f)
		}
		ps = append(ps, Platform{OS: os, Arch: arch})
	}
	return ps, nil
}

// ImagePlatforms are the platforms of the controller image.
var ImagePlatforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}}

// PluginPlatforms are the platforms the plugin is released for.
var PluginPlatforms = []Platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// GoBuild builds the main package pkg (relative to root, e.g. ./cmd/rollouts)
// for p into dir, statically and stamped with b, and returns the binary's
// path. The flags are those of `make build`, so a host build shares Go's
// build cache with it and gives the same bytes.
func GoBuild(ctx context.Context, root, pkg string, p Platform, b Build, dir string) (string, error) {
	name := filepath.Base(pkg)
	if p.OS == "windows" {
		name += ".exe"
	}
	out := filepath.Join(dir, name)
	ldflags := fmt.Sprintf("-s -w -X github.com/kubeseed/rollouts/pkg/version.Version=%s -X github.com/kubeseed/rollouts/pkg/version.Commit=%s", b.Version, b.ShortCommit())
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Arch, "GOFLAGS="}
	if _, err := run(ctx, root, env, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg); err != nil {
		return "", fmt.Errorf("building %s for %s: %w", pkg, p, err)
	}
	return out, nil
}

// run runs a command in dir and returns its trimmed standard output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
