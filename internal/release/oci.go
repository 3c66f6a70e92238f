package release

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations naming the image in an OCI layout: the OCI one and the one
// containerd (and so Docker's containerd image store) reads on load.
const (
	refNameAnnotation    = "org.opencontainers.image.ref.name"
	imageNameAnnotation  = "io.containerd.image.name"
	ociLayoutFileContent = `{"imageLayoutVersion":"1.0.0"}`
)

// WriteLayout writes idx as an OCI image layout into dir, replacing what was
// there, and names it ref (repository:tag).
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		refNameAnnotation:   t.TagStr(),
		imageNameAnnotation: t.String(),
	}))
}

// ReadLayout returns the image index that WriteLayout wrote into dir, and
// the tag it was named with.
func ReadLayout(dir string) (v1.ImageIndex, string, error) {
	outer, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 || m.Manifests[0].MediaType != types.OCIImageIndex {
		return nil, "", fmt.Errorf("%s: want one image index in the layout, found %d entries", dir, len(m.Manifests))
	}
	idx, err := outer.ImageIndex(m.Manifests[0].Digest)
	return idx, m.Manifests[0].Annotations[refNameAnnotation], err
}

// WriteArchive writes idx to file as the archive `docker save` writes since
// Docker 25: an OCI image layout (which Docker's containerd store, podman,
// skopeo and crane read, all platforms) plus the older manifest.json that
// every `docker load` reads, listing the image for legacy (linux/amd64 on
// such hosts; the index covers the rest). Entries are sorted and timed
// created, so equal input gives equal bytes.
func WriteArchive(file string, idx v1.ImageIndex, ref string, legacy Platform, created time.Time) error {
	t, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	add := func(h v1.Hash, b []byte) { blobs[path.Join("blobs", h.Algorithm, h.Hex)] = b }
	rawIdx, err := idx.RawManifest()
	if err != nil {
		return err
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		return err
	}
	add(idxDigest, rawIdx)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var legacyManifest tarball.Manifest
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		d, err := imageBlobs(img, add)
		if err != nil {
			return err
		}
		if desc.Platform != nil && desc.Platform.OS == legacy.OS && desc.Platform.Architecture == legacy.Arch {
			d.RepoTags = []string{t.String()}
			legacyManifest = append(legacyManifest, d)
		}
	}
	if len(legacyManifest) != 1 {
		return fmt.Errorf("the index has no image for %s", legacy)
	}
	top := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   types.OCIImageIndex,
			Digest:      idxDigest,
			Size:        int64(len(rawIdx)),
			Annotations: map[string]string{refNameAnnotation: t.TagStr(), imageNameAnnotation: t.String()},
		}},
	}
	topJSON, err := json.Marshal(top)
	if err != nil {
		return err
	}
	legacyJSON, err := json.Marshal(legacyManifest)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"oci-layout":    []byte(ociLayoutFileContent),
		"index.json":    topJSON,
		"manifest.json": legacyJSON,
	}
	for n, b := range blobs {
		files[n] = b
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, files, created); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

// imageBlobs adds an image's manifest, config and layers to the blobs and
// describes it as manifest.json does.
func imageBlobs(img v1.Image, add func(v1.Hash, []byte)) (tarball.Descriptor, error) {
	var d tarball.Descriptor
	raw, err := img.RawManifest()
	if err != nil {
		return d, err
	}
	digest, err := img.Digest()
	if err != nil {
		return d, err
	}
	add(digest, raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return d, err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return d, err
	}
	add(cfgName, cfg)
	d.Config = path.Join("blobs", cfgName.Algorithm, cfgName.Hex)
	layers, err := img.Layers()
	if err != nil {
		return d, err
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return d, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return d, err
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return d, err
		}
		add(h, b)
		d.Layers = append(d.Layers, path.Join("blobs", h.Algorithm, h.Hex))
	}
	return d, nil
}

// writeTar writes files (with the directories they need) sorted by name,
// owned by root, timed at mtime; the files named in executable get mode 0755.
func writeTar(w io.Writer, files map[string][]byte, mtime time.Time, executable ...string) error {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for n := range files {
		names = append(names, n)
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		h := &tar.Header{Name: n, ModTime: mtime, Format: tar.FormatPAX}
		if dirs[n] {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(files[n]))
			if slices.Contains(executable, n) {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Push pushes idx to ref (a tag or a digest reference) and returns the
// reference by digest. Credentials come from the Docker config, as with
// `docker login` or `crane auth login`.
func Push(ctx context.Context, idx v1.ImageIndex, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", r, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}
