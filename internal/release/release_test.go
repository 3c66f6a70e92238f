package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

const testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// objects splits a YAML stream into kind/name → object.
func objects(t *testing.T, stream []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(string(stream), "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = o
	}
	return out
}

func TestRenderManifestsPinsTheImage(t *testing.T) {
	image := "registry.example/team/rollouts@" + testDigest
	for file, dir := range Manifests {
		t.Run(file, func(t *testing.T) {
			y, err := RenderManifests(repoRoot(t), dir, image)
			if err != nil {
				t.Fatal(err)
			}
			objs := objects(t, y)
			_, hasDeploy := objs["Deployment/rollouts-controller"]
			_, hasCRD := objs["CustomResourceDefinition/rollouts.rollouts.kubeseed.io"]
			_, hasClusterRole := objs["ClusterRole/rollouts-controller"]
			want := map[string][3]bool{ // deployment, CRDs, ClusterRole
				"install.yaml":            {true, true, true},
				"install-namespaced.yaml": {true, false, false},
				"crds.yaml":               {false, true, false},
			}[file]
			if got := [3]bool{hasDeploy, hasCRD, hasClusterRole}; got != want {
				t.Errorf("Deployment, CRD, ClusterRole present: %v, want %v", got, want)
			}
			if hasDeploy && !strings.Contains(string(y), "image: "+image+"\n") {
				t.Errorf("the controller image is not pinned to %s:\n%s", image, y)
			}
			if strings.Contains(string(y), DefaultImage) {
				t.Errorf("%s still names %s", file, DefaultImage)
			}
		})
	}
	if _, err := RenderManifests(repoRoot(t), ".", "registry.example/rollouts:v1"); err == nil {
		t.Error("an image by tag was accepted; the release pins by digest")
	}
}

func TestPluginArchives(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, p := range PluginPlatforms {
		out := filepath.Join(dir, p.OS+p.Arch)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		a, err := PluginArchive(bin, p, testBuild, out)
		if err != nil {
			t.Fatal(err)
		}
		again, err := PluginArchive(bin, p, testBuild, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if sumA, sumB := mustSum(t, a), mustSum(t, again); sumA != sumB {
			t.Errorf("%s: two archives of one binary differ", p)
		}
		name, data, mode := unpackOne(t, a)
		if name != PluginBinary(p) || string(data) != "plugin" || mode&0o111 == 0 {
			t.Errorf("%s: archive holds %q (%o) %q; want %s, executable", p, name, mode, data, PluginBinary(p))
		}
		sums[filepath.Base(a)] = mustSum(t, a)
	}
	k, err := NewKrewPlugin(testBuild, PluginPlatforms, sums)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseKrewPlugin(y)
	if err != nil {
		t.Fatalf("the krew manifest does not parse back: %v\n%s", err, y)
	}
	if diff := cmp.Diff(k, parsed); diff != "" {
		t.Errorf("round trip (-written +parsed):\n%s", diff)
	}
	for _, p := range parsed.Spec.Platforms {
		archive := filepath.Base(p.URI)
		if p.Sha256 != sums[archive] {
			t.Errorf("%s: manifest sha256 %s, archive %s", archive, p.Sha256, sums[archive])
		}
		if !strings.HasPrefix(p.URI, "https://github.com/kubeseed/rollouts/releases/download/v1.2.3/") {
			t.Errorf("uri %s", p.URI)
		}
	}
	if _, err := NewKrewPlugin(testBuild, PluginPlatforms, map[string]string{}); err == nil {
		t.Error("a manifest without checksums was written")
	}
}

func TestKrewValidation(t *testing.T) {
	sums := map[string]string{}
	for _, p := range PluginPlatforms {
		sums[PluginArchiveName("v1.2.3", p)] = strings.Repeat("a", 64)
	}
	good, err := NewKrewPlugin(testBuild, PluginPlatforms, sums)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(*KrewPlugin)
		want string
	}{
		"version without v": {func(k *KrewPlugin) { k.Spec.Version = "1.2.3" }, "semantic version"},
		"short sum":         {func(k *KrewPlugin) { k.Spec.Platforms[0].Sha256 = "abc" }, "64 lower-case hex"},
		"windows bin":       {func(k *KrewPlugin) { k.Spec.Platforms[4].Bin = "kubectl-rollouts" }, ".exe"},
		"http uri":          {func(k *KrewPlugin) { k.Spec.Platforms[1].URI = "http://x/y.tar.gz" }, "not https"},
		"bad name":          {func(k *KrewPlugin) { k.Metadata.Name = "Rollouts" }, "lower-case"},
	} {
		t.Run(name, func(t *testing.T) {
			k := good
			k.Spec.Platforms = append([]KrewPlatform(nil), good.Spec.Platforms...)
			tc.edit(&k)
			if err := k.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}
	if _, err := ParseKrewPlugin([]byte("apiVersion: krew.googlecontainertools.github.com/v1alpha2\nkind: Plugin\nspec: {verzion: v1.0.0}\n")); err == nil {
		t.Error("a misspelt field parsed")
	}
}

func TestChecksums(t *testing.T) {
	dir := t.TempDir()
	for n, c := range map[string]string{"install.yaml": "a", "rollouts.yaml": "b"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteChecksums(dir); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, ChecksumsFile))
	want := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  install.yaml\n" +
		"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  rollouts.yaml\n"
	if string(got) != want {
		t.Errorf("checksums.txt:\n%s\nwant (sha256sum format):\n%s", got, want)
	}
	if err := VerifyChecksums(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "install.yaml"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyChecksums(dir); err == nil || !strings.Contains(err.Error(), "install.yaml") {
		t.Errorf("a changed file verified: %v", err)
	}
	if err := WriteChecksums(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "extra.tar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyChecksums(dir); err == nil || !strings.Contains(err.Error(), "extra.tar") {
		t.Errorf("an unlisted file verified: %v", err)
	}
}

func TestSetYAMLKeepsComments(t *testing.T) {
	in := "# the image\nimage:\n  # where\n  repository: ghcr.io/kubeseed/rollouts\n  digest: \"\"\nreplicas: 2\n"
	out, err := setYAML([]byte(in), map[string]string{"image.digest": testDigest})
	if err != nil {
		t.Fatal(err)
	}
	want := "# the image\nimage:\n  # where\n  repository: ghcr.io/kubeseed/rollouts\n  digest: \"" + testDigest + "\"\nreplicas: 2\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if _, err := setYAML([]byte(in), map[string]string{"image.tag": "v1"}); err == nil {
		t.Error("setting a field the document does not have succeeded")
	}
}

func mustSum(t *testing.T, f string) string {
	t.Helper()
	s, err := fileSHA256(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unpackOne returns the single file of a plugin archive.
func unpackOne(t *testing.T, archive string) (string, []byte, os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(archive, ".zip") {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil || len(zr.File) != 1 {
			t.Fatalf("zip: %v, %d files", err, len(zr.File))
		}
		f, err := zr.File[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		return zr.File[0].Name, data, zr.File[0].Mode()
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(tr)
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("more than one file in %s", archive)
	}
	return h.Name, data, os.FileMode(h.Mode)
}
