package release

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Manifests are the kustomizations of manifests/ that a release renders,
// by the file name they get in the release.
var Manifests = map[string]string{
	"install.yaml":            ".",          // cluster-wide: namespace, CRDs, ClusterRole, controller
	"install-namespaced.yaml": "namespaced", // one namespace, Role only (CRDs installed once by an admin)
	"crds.yaml":               "crds",       // the CRDs alone, for that admin
}

// RenderManifests builds the kustomization manifests/<dir> of the checkout
// at root with the controller image replaced by image (repository@digest),
// the way `kubectl kustomize` would, and returns the YAML stream.
func RenderManifests(root, dir, image string) ([]byte, error) {
	repo, digest, err := splitDigestRef(image)
	if err != nil {
		return nil, err
	}
	// Kustomize reads from a file system of its own: a copy of manifests/
	// in memory, with a kustomization on top that pins the image.
	files, err := readTree(filepath.Join(root, "manifests"))
	if err != nil {
		return nil, err
	}
	mem := filesys.MakeFsInMemory()
	for rel, b := range files {
		if err := mem.WriteFile(path.Join("/manifests", rel), b); err != nil {
			return nil, err
		}
	}
	overlay := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../manifests/%s
images:
- name: %s
  newName: %s
  digest: %s
`, dir, DefaultImage, repo, digest)
	if err := mem.WriteFile("/release/kustomization.yaml", []byte(overlay)); err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/release")
	if err != nil {
		return nil, fmt.Errorf("kustomize manifests/%s: %w", dir, err)
	}
	return m.AsYaml()
}

// splitDigestRef splits repository@sha256:… into its two parts.
func splitDigestRef(image string) (repo, digest string, err error) {
	repo, digest, ok := strings.Cut(image, "@")
	if !ok || repo == "" || !strings.HasPrefix(digest, "sha256:") {
		return "", "", fmt.Errorf("image %q: want repository@sha256:…", image)
	}
	return repo, digest, nil
}

// readTree reads every file below dir: slash-separated path relative to
// dir → content.
func readTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	return files, err
}
