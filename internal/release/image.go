package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// DefaultImage is the controller image's name unless IMAGE= says otherwise.
const DefaultImage = "ghcr.io/kubeseed/rollouts"

// The image's filesystem.
const (
	Entrypoint = "/rollouts"
	CABundle   = "/etc/ssl/certs/ca-certificates.crt"
	UID        = 65532
)

// passwd and group know the image's only user, so tools that map the uid
// to a name (ps, log shippers) have one; root is listed as every passwd is
// expected to list it, with no login.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// Labels are the OCI annotations of b, set as the image config's labels and
// as annotations of the index and of each manifest.
func Labels(b Build) map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.revision": b.Commit,
		"org.opencontainers.image.version":  b.Version,
		"org.opencontainers.image.created":  b.Created.Format(time.RFC3339),
		"org.opencontainers.image.title":    "rollouts",
	}
}

// Image assembles the controller image index from one static controller
// binary per platform (linux only): an empty base and one layer holding the
// binary, a CA bundle and a passwd entry for the non-root user. Nothing is
// pulled; the result depends only on the binaries and b.
func Image(binaries map[Platform]string, b Build) (v1.ImageIndex, error) {
	platforms := make([]Platform, 0, len(binaries))
	for p := range binaries {
		platforms = append(platforms, p)
	}
	sort.Slice(platforms, func(i, j int) bool { return platforms[i].String() < platforms[j].String() })
	ca, err := caBundle()
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		if p.OS != "linux" {
			return nil, fmt.Errorf("image for %s: the controller image is linux only", p)
		}
		bin, err := os.ReadFile(binaries[p])
		if err != nil {
			return nil, err
		}
		img, err := platformImage(p, bin, ca, b)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	annotated, ok := mutate.Annotations(idx, Labels(b)).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("annotating the index: unexpected type")
	}
	return annotated, nil
}

func platformImage(p Platform, bin, ca []byte, b Build) (v1.Image, error) {
	layer, err := rootLayer(bin, ca, b.Created)
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: p.Arch,
		OS:           p.OS,
		Created:      v1.Time{Time: b.Created},
		Config: v1.Config{
			Entrypoint: []string{Entrypoint},
			User:       fmt.Sprintf("%d:%d", UID, UID),
			WorkingDir: "/",
			Env:        []string{"SSL_CERT_FILE=" + CABundle},
			Labels:     Labels(b),
		},
	}
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: b.Created},
			CreatedBy: "rollouts release " + b.Version,
			Comment:   "static controller, CA bundle, passwd",
		},
	})
	if err != nil {
		return nil, err
	}
	annotated, ok := mutate.Annotations(img, Labels(b)).(v1.Image)
	if !ok {
		return nil, fmt.Errorf("annotating the image: unexpected type")
	}
	return annotated, nil
}

// rootLayer is the image's single layer, gzip-compressed once: the layer's
// digest is computed from these bytes, and every write reuses them.
func rootLayer(bin, ca []byte, created time.Time) (v1.Layer, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	entries := []struct {
		name string
		mode int64
		uid  int
		data []byte // nil for a directory
	}{
		{"etc/", 0o755, 0, nil},
		{"etc/group", 0o644, 0, []byte(group)},
		{"etc/passwd", 0o644, 0, []byte(passwd)},
		{"etc/ssl/", 0o755, 0, nil},
		{"etc/ssl/certs/", 0o755, 0, nil},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, ca},
		{"home/", 0o755, 0, nil},
		{"home/nonroot/", 0o700, UID, nil},
		{"rollouts", 0o755, 0, bin},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: created, Format: tar.FormatPAX}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	compressed, err := gzipBytes(raw.Bytes())
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// gzipBytes compresses b with an empty gzip header (no name, no time), so
// equal input gives equal output.
func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// caBundle is the Mozilla root set that Go's x509roots/fallback module
// carries, as PEM. It comes from a pinned module rather than the build
// machine, so the image does not depend on where it was built. Roots that
// carry a constraint (a distrust date) are left out: a PEM bundle cannot
// express the constraint.
func caBundle() ([]byte, error) {
	var out bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("the CA bundle is empty")
	}
	return out.Bytes(), nil
}
