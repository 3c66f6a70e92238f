package release

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var testBuild = Build{
	Version: "v1.2.3",
	Commit:  "0123456789abcdef0123456789abcdef01234567",
	Created: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
}

// fakeBinaries stands in for the controller: the image code treats the
// binary as bytes, so small files per platform suffice here (the e2e test
// in test/release builds and runs the real one).
func fakeBinaries(t *testing.T) map[Platform]string {
	t.Helper()
	dir := t.TempDir()
	bins := map[Platform]string{}
	for _, p := range ImagePlatforms {
		f := filepath.Join(dir, p.Arch)
		if err := os.WriteFile(f, []byte("controller for "+p.String()), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[p] = f
	}
	return bins
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestImageIsReproducible(t *testing.T) {
	bins := fakeBinaries(t)
	a, err := Image(bins, testBuild)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Image(bins, testBuild)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) != digest(t, b) {
		t.Errorf("two builds of the same input: %s and %s", digest(t, a), digest(t, b))
	}
	later := testBuild
	later.Created = later.Created.Add(time.Second)
	c, err := Image(bins, later)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, a) == digest(t, c) {
		t.Errorf("a different commit time gave the same digest %s: the time is not in the image", digest(t, a))
	}
}

func TestImageConfigAndFilesystem(t *testing.T) {
	idx, err := Image(fakeBinaries(t), testBuild)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
		t.Errorf("index platforms (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Labels(testBuild), im.Annotations); diff != "" {
		t.Errorf("index annotations (-want +got):\n%s", diff)
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != d.Platform.Architecture || cfg.OS != "linux" {
			t.Errorf("%s: config says %s/%s", d.Platform.Architecture, cfg.OS, cfg.Architecture)
		}
		if cfg.Config.User != "65532:65532" || !cmp.Equal(cfg.Config.Entrypoint, []string{"/rollouts"}) || len(cfg.Config.Cmd) != 0 {
			t.Errorf("user %q, entrypoint %q, cmd %q; want 65532:65532, [/rollouts], none", cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Cmd)
		}
		wantLabels := map[string]string{
			"org.opencontainers.image.source":   "https://github.com/kubeseed/rollouts",
			"org.opencontainers.image.revision": testBuild.Commit,
			"org.opencontainers.image.version":  "v1.2.3",
			"org.opencontainers.image.created":  "2026-11-30T12:00:00Z",
			"org.opencontainers.image.title":    "rollouts",
		}
		if diff := cmp.Diff(wantLabels, cfg.Config.Labels); diff != "" {
			t.Errorf("labels (-want +got):\n%s", diff)
		}
		if !cfg.Created.Equal(testBuild.Created) {
			t.Errorf("created %s, want the commit time %s", cfg.Created.Time, testBuild.Created)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers: %d, %v; want exactly one", len(layers), err)
		}
		files := extract(t, img)
		for _, n := range []string{"bin/sh", "bin/", "usr/"} {
			if _, ok := files[n]; ok {
				t.Errorf("the image has %s; it must hold no shell or userland", n)
			}
		}
		if got := string(files["rollouts"].data); got != "controller for linux/"+d.Platform.Architecture {
			t.Errorf("/rollouts holds %q: not this platform's binary", got)
		}
		if files["rollouts"].mode != 0o755 {
			t.Errorf("/rollouts mode %o, want 755", files["rollouts"].mode)
		}
		if !strings.Contains(string(files["etc/passwd"].data), ":65532:65532:") {
			t.Errorf("/etc/passwd has no entry for uid 65532:\n%s", files["etc/passwd"].data)
		}
		if n := countCerts(t, files["etc/ssl/certs/ca-certificates.crt"].data); n < 100 {
			t.Errorf("CA bundle holds %d certificates, want the public roots (over 100)", n)
		}
	}
}

type file struct {
	data []byte
	mode int64
}

// extract reads the image's flattened filesystem, as a runtime would.
func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{data: b, mode: h.Mode}
	}
}

func countCerts(t *testing.T, pemData []byte) int {
	t.Helper()
	n := 0
	for {
		var block *pem.Block
		block, pemData = pem.Decode(pemData)
		if block == nil {
			return n
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Fatalf("CA bundle entry %d: %v", n, err)
		}
		n++
	}
}

// TestPushToRegistry pushes the index the way make image-push does (from
// the OCI layout) to a real OCI registry served in this process, pulls it
// back by digest, and compares manifests and layers.
func TestPushToRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(nullLogger())))
	defer srv.Close()
	idx, err := Image(fakeBinaries(t), testBuild)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	if err := WriteLayout(dir, idx, DefaultImage+":v1.2.3"); err != nil {
		t.Fatal(err)
	}
	fromLayout, tag, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tag != "v1.2.3" {
		t.Errorf("layout names tag %q, want v1.2.3", tag)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := Push(t.Context(), fromLayout, host+"/kubeseed/rollouts:"+tag)
	if err != nil {
		t.Fatal(err)
	}
	want := digest(t, idx)
	if ref != host+"/kubeseed/rollouts@"+want.String() {
		t.Errorf("Push returned %s, want the reference by digest %s", ref, want)
	}
	byDigest, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(byDigest)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest(t, pulled); got != want {
		t.Errorf("pulled index %s, pushed %s", got, want)
	}
	byTag, err := remote.Index(mustRef(t, host+"/kubeseed/rollouts:v1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if got := digest(t, byTag); got != want {
		t.Errorf("the tag points at %s, want %s", got, want)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		local, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		remoteImg, err := pulled.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(layerDigests(t, local), layerDigests(t, remoteImg)); diff != "" {
			t.Errorf("%s layers (-pushed +pulled):\n%s", d.Platform.Architecture, diff)
		}
		if got := digest(t, remoteImg); got != d.Digest {
			t.Errorf("%s: pulled manifest %s, pushed %s", d.Platform.Architecture, got, d.Digest)
		}
		if diff := cmp.Diff(extract(t, local), extract(t, remoteImg), cmp.AllowUnexported(file{})); diff != "" {
			t.Errorf("%s filesystem (-pushed +pulled):\n%s", d.Platform.Architecture, diff)
		}
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, l := range layers {
		ds = append(ds, digest(t, l).String())
	}
	return ds
}

// TestArchive: the archive is both an OCI layout (the whole index) and a
// docker-save tarball (manifest.json, the amd64 image), and is byte for byte
// the same when written twice.
func TestArchive(t *testing.T) {
	idx, err := Image(fakeBinaries(t), testBuild)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, f := range []string{a, b} {
		if err := WriteArchive(f, idx, DefaultImage+":v1.2.3", Platform{"linux", "amd64"}, testBuild.Created); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Error("the archive differs between two writes of the same index")
	}

	// docker load's view: manifest.json.
	tag, err := name.NewTag(DefaultImage + ":v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := tarball.ImageFromPath(a, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := legacy.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "amd64" {
		t.Errorf("manifest.json names the %s image, want amd64", cfg.Architecture)
	}
	amd64 := imageFor(t, idx, "amd64")
	if diff := cmp.Diff(layerDigests(t, amd64), layerDigests(t, legacy)); diff != "" {
		t.Errorf("legacy image layers (-index +archive):\n%s", diff)
	}

	// An OCI runtime's view: the layout inside the archive.
	unpacked := filepath.Join(dir, "layout")
	untar(t, ab, unpacked)
	outer, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Manifests) != 1 || om.Manifests[0].Digest != digest(t, idx) {
		t.Fatalf("index.json: %+v, want the image index %s", om.Manifests, digest(t, idx))
	}
	if got := om.Manifests[0].Annotations["io.containerd.image.name"]; got != DefaultImage+":v1.2.3" {
		t.Errorf("io.containerd.image.name %q", got)
	}
	inner, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	arm := imageFor(t, inner, "arm64")
	if diff := cmp.Diff(extract(t, imageFor(t, idx, "arm64")), extract(t, arm), cmp.AllowUnexported(file{})); diff != "" {
		t.Errorf("arm64 filesystem from the archive (-index +archive):\n%s", diff)
	}
}

func imageFor(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s image in the index", arch)
	return nil
}

func untar(t *testing.T, data []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func nullLogger() *log.Logger { return log.New(io.Discard, "", 0) }
