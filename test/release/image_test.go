//go:build e2e

package release

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kubeseed/rollouts/internal/release"
)

// hostImage is the image of this machine's platform, read back from the
// OCI layout the build wrote.
func hostImage(t *testing.T) v1.Image {
	t.Helper()
	idx, tag, err := release.ReadLayout(rel.image.Layout)
	if err != nil {
		t.Fatal(err)
	}
	if tag != rel.opts.Build.Version {
		t.Errorf("the layout names tag %q, want the version %q", tag, rel.opts.Build.Version)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == host.Arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s image in %s", host.Arch, rel.image.Layout)
	return nil
}

func TestImageIsReproducible(t *testing.T) {
	t.Parallel()
	o := rel.opts
	o.ImageDir = t.TempDir()
	again, err := release.BuildImage(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != rel.image.Digest {
		t.Errorf("a second build of the same commit gave %s, the first %s", again.Digest, rel.image.Digest)
	}
}

func TestImageConfig(t *testing.T) {
	t.Parallel()
	cfg, err := hostImage(t).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/rollouts" || len(c.Cmd) != 0 {
		t.Errorf("user %q, entrypoint %q, cmd %q; want 65532:65532, /rollouts and no cmd", c.User, c.Entrypoint, c.Cmd)
	}
	b := rel.opts.Build
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/kubeseed/rollouts",
		"org.opencontainers.image.revision": b.Commit,
		"org.opencontainers.image.version":  b.Version,
		"org.opencontainers.image.created":  b.Created.Format(time.RFC3339),
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	rootfs := unpackImage(t)
	for _, p := range []string{"bin/sh", "bin", "usr/bin", "sbin"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/%s exists in the image (%v); it must have no shell", p, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "rollouts")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/rollouts: %v, %v; want an executable", fi, err)
	}
}

// TestImageVersion runs the image's binary inside the image's filesystem
// as the image's user.
func TestImageVersion(t *testing.T) {
	t.Parallel()
	out, err := inImage(t, unpackImage(t), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("/rollouts --version: %v\n%s", err, out)
	}
	want := fmt.Sprintf("%s (commit %s, ", rel.opts.Build.Version, rel.opts.Build.ShortCommit())
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("/rollouts --version printed %q, want it to start with %q", out, want)
	}
}

// unpackImage writes the host image's filesystem into a directory of its
// own, with the owners and modes the layer records, as a runtime would.
func unpackImage(t *testing.T) string {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	// The root of the filesystem must be searchable by the image's user.
	if err := os.Chmod(filepath.Dir(rootfs), 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(hostImage(t))
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return rootfs
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(rootfs, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, rootfs+string(filepath.Separator)) {
			t.Fatalf("layer entry %q leaves the filesystem", h.Name)
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, mode)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode); err == nil {
				_, err = io.Copy(f, tr)
				err = errors.Join(err, f.Close())
			}
		default:
			t.Fatalf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
		if err == nil {
			err = errors.Join(os.Chmod(p, mode), os.Lchown(p, h.Uid, h.Gid))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// inImage runs the image's entrypoint with args, chrooted into rootfs, as
// the user and with the environment of the image's config.
func inImage(t *testing.T, rootfs string, args ...string) *exec.Cmd {
	t.Helper()
	cfg, err := hostImage(t).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid uint32
	if _, err := fmt.Sscanf(cfg.Config.User, "%d:%d", &uid, &gid); err != nil {
		t.Fatalf("image user %q: %v", cfg.Config.User, err)
	}
	cmd := exec.Command(cfg.Config.Entrypoint[0], append(cfg.Config.Entrypoint[1:], args...)...)
	cmd.Dir = "/"
	cmd.Env = cfg.Config.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootfs,
		Credential: &syscall.Credential{Uid: uid, Gid: gid},
	}
	return cmd
}

// TestImagePush pushes the built image, as make image-push does, to an OCI
// registry served in this process and pulls it back by digest.
func TestImagePush(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	idx, tag, err := release.ReadLayout(rel.image.Layout)
	if err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimPrefix(srv.URL, "http://") + "/kubeseed/rollouts"
	ref, err := release.Push(context.Background(), idx, repo+":"+tag)
	if err != nil {
		t.Fatal(err)
	}
	_, digest, _ := strings.Cut(rel.image.Digest, "@")
	if ref != repo+"@"+digest {
		t.Errorf("pushed as %s, want %s@%s", ref, repo, digest)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: host.Arch}))
	if err != nil {
		t.Fatal(err)
	}
	want, err := hostImage(t).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pulled.Digest(); err != nil || got != want {
		t.Errorf("pulled linux/%s image %s (%v), built %s", host.Arch, got, err, want)
	}
}
