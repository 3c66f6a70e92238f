package release

import (
	"fmt"
	"io/fs"
	"os"
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
	repo, digest, ok := strings.Cut(image, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		return nil, fmt.Errorf("image %q: want repository@sha256:…", image)
	}
	// Kustomize reads from a file system of its own: a copy of manifests/
	// in memory, with a kustomization on top that pins the image.
	mem := filesys.MakeFsInMemory()
	src := filepath.Join(root, "manifests")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/manifests", rel), b)
	})
	if err != nil {
		return nil, err
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
