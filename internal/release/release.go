package release

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

// Options say what to build and where.
type Options struct {
	Root            string // the checkout
	Build           Build
	Image           string // repository of the controller image
	ImagePlatforms  []Platform
	PluginPlatforms []Platform
	ImageDir        string // bin/image: OCI layout, archive, build tree
	ReleaseDir      string // bin/release
	Log             io.Writer
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		_, _ = fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// BuiltImage is the controller image, written out.
type BuiltImage struct {
	Index   v1.ImageIndex
	Tag     string // repository:version
	Digest  string // repository@sha256:…, what the manifests pin
	Layout  string // OCI layout directory
	Archive string // docker-loadable archive
}

// ArchiveName is the image archive's file name in a release.
func ArchiveName(version string) string { return fmt.Sprintf("rollouts-image_%s.tar", version) }

// BuildImage builds the controller for every image platform and writes the
// image index as an OCI layout (ImageDir/oci) and an archive.
func BuildImage(ctx context.Context, o Options) (*BuiltImage, error) {
	binaries := map[Platform]string{}
	for _, p := range o.ImagePlatforms {
		o.logf(">> building the controller for %s", p)
		bin, err := GoBuild(ctx, o.Root, "./cmd/rollouts", p, o.Build, filepath.Join(o.ImageDir, "build", p.OS+"_"+p.Arch))
		if err != nil {
			return nil, err
		}
		binaries[p] = bin
	}
	idx, err := Image(binaries, o.Build)
	if err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	img := &BuiltImage{
		Index:   idx,
		Tag:     o.Image + ":" + o.Build.Version,
		Digest:  o.Image + "@" + d.String(),
		Layout:  filepath.Join(o.ImageDir, "oci"),
		Archive: filepath.Join(o.ImageDir, ArchiveName(o.Build.Version)),
	}
	if err := WriteLayout(img.Layout, idx, img.Tag); err != nil {
		return nil, fmt.Errorf("writing the OCI layout: %w", err)
	}
	legacy := o.ImagePlatforms[0]
	for _, p := range o.ImagePlatforms {
		if p.Arch == "amd64" {
			legacy = p
		}
	}
	if err := WriteArchive(img.Archive, idx, img.Tag, legacy, o.Build.Created); err != nil {
		return nil, fmt.Errorf("writing the image archive: %w", err)
	}
	o.logf(">> image %s (%s)\n   layout %s\n   archive %s", img.Tag, img.Digest, img.Layout, img.Archive)
	return img, nil
}

// Release builds the image and writes every release artifact to
// ReleaseDir: the manifests pinned to the image by digest, the plugin
// archives and their krew manifest, the chart, the image archive, and
// checksums.txt. It returns the image.
func Release(ctx context.Context, o Options) (*BuiltImage, error) {
	img, err := BuildImage(ctx, o)
	if err != nil {
		return nil, err
	}
	return img, writeRelease(ctx, o, img)
}

func writeRelease(ctx context.Context, o Options, img *BuiltImage) error {
	if err := os.RemoveAll(o.ReleaseDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.ReleaseDir, 0o755); err != nil {
		return err
	}
	for file, dir := range Manifests {
		y, err := RenderManifests(o.Root, dir, img.Digest)
		if err != nil {
			return err
		}
		header := fmt.Sprintf("# rollouts %s (%s)\n# kubectl apply --server-side -f %s\n", o.Build.Version, o.Build.Commit, file)
		if err := os.WriteFile(filepath.Join(o.ReleaseDir, file), append([]byte(header), y...), 0o644); err != nil {
			return err
		}
	}
	if _, err := PackageChart(o.Root, img.Digest, o.Build, o.ReleaseDir); err != nil {
		return fmt.Errorf("packaging the chart: %w", err)
	}
	if err := copyFile(img.Archive, filepath.Join(o.ReleaseDir, filepath.Base(img.Archive))); err != nil {
		return err
	}
	sums := map[string]string{}
	for _, p := range o.PluginPlatforms {
		o.logf(">> building the plugin for %s", p)
		bin, err := GoBuild(ctx, o.Root, "./cmd/kubectl-rollouts", p, o.Build, filepath.Join(o.ImageDir, "build", "plugin", p.OS+"_"+p.Arch))
		if err != nil {
			return err
		}
		archive, err := PluginArchive(bin, p, o.Build, o.ReleaseDir)
		if err != nil {
			return err
		}
		if sums[filepath.Base(archive)], err = fileSHA256(archive); err != nil {
			return err
		}
	}
	krew, err := NewKrewPlugin(o.Build, o.PluginPlatforms, sums)
	if err != nil {
		return fmt.Errorf("krew manifest: %w", err)
	}
	k, err := yaml.Marshal(krew)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.ReleaseDir, "rollouts.yaml"), k, 0o644); err != nil {
		return err
	}
	if err := WriteChecksums(o.ReleaseDir); err != nil {
		return err
	}
	o.logf(">> release %s in %s", o.Build.Version, o.ReleaseDir)
	return nil
}

// ChecksumsFile lists the sha256 of every other file of a release.
const ChecksumsFile = "checksums.txt"

// WriteChecksums writes dir/checksums.txt in `sha256sum` format, so
// `sha256sum -c checksums.txt` verifies a download.
func WriteChecksums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || e.Name() == ChecksumsFile {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		fmt.Fprintf(&out, "%s  %s\n", sum, e.Name())
	}
	return os.WriteFile(filepath.Join(dir, ChecksumsFile), out.Bytes(), 0o644)
}

// ReadChecksums reads dir/checksums.txt: file name → sha256.
func ReadChecksums(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, ChecksumsFile))
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		sum, file, ok := strings.Cut(s.Text(), "  ")
		if !ok || !sha256Hex.MatchString(sum) || file == "" || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("%s: malformed line %q", ChecksumsFile, s.Text())
		}
		sums[file] = sum
	}
	return sums, s.Err()
}

// VerifyChecksums checks dir against its checksums.txt: every file listed
// has its sum, and every file of dir is listed.
func VerifyChecksums(dir string) error {
	sums, err := ReadChecksums(dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var unlisted []string
	for _, e := range entries {
		if e.IsDir() || e.Name() == ChecksumsFile {
			continue
		}
		want, ok := sums[e.Name()]
		if !ok {
			unlisted = append(unlisted, e.Name())
			continue
		}
		got, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s: sha256 %s, %s says %s", e.Name(), got, ChecksumsFile, want)
		}
		delete(sums, e.Name())
	}
	if len(unlisted) > 0 {
		return fmt.Errorf("not in %s: %s", ChecksumsFile, strings.Join(unlisted, ", "))
	}
	for file := range sums {
		return fmt.Errorf("%s lists %s, which is missing", ChecksumsFile, file)
	}
	return nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
