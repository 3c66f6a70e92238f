package release

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ChartDir is the chart in the repository.
const ChartDir = "charts/rollouts"

// ChartVersion is the chart's version for b: its version without the v.
func ChartVersion(b Build) string { return strings.TrimPrefix(b.Version, "v") }

// PackageChart writes the chart of the checkout at root as `helm package`
// would (rollouts-<version>.tgz in dir), with its version and appVersion set
// to the release and its default image pinned to image (repository@digest),
// so that installing it with default values runs exactly the image that
// install.yaml runs. Returns the package's path.
func PackageChart(root, image string, b Build, dir string) (string, error) {
	repo, digest, err := splitDigestRef(image)
	if err != nil {
		return "", err
	}
	src, err := readTree(filepath.Join(root, ChartDir))
	if err != nil {
		return "", err
	}
	files := map[string][]byte{}
	for rel, data := range src {
		switch rel {
		case "Chart.yaml":
			data, err = setYAML(data, map[string]string{"version": ChartVersion(b), "appVersion": b.Version})
		case "values.yaml":
			data, err = setYAML(data, map[string]string{"image.repository": repo, "image.digest": digest})
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", rel, err)
		}
		files[path.Join("rollouts", rel)] = data
	}
	var raw bytes.Buffer
	if err := writeTar(&raw, files, b.Created); err != nil {
		return "", err
	}
	gz, err := gzipBytes(raw.Bytes())
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, fmt.Sprintf("rollouts-%s.tgz", ChartVersion(b)))
	return out, os.WriteFile(out, gz, 0o644)
}

// setYAML sets scalar values in a YAML document, keeping its comments;
// keys are dotted paths to existing string fields.
func setYAML(doc []byte, values map[string]string) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, err
	}
	if len(root.Content) != 1 {
		return nil, fmt.Errorf("want one YAML document")
	}
	for key, value := range values {
		n := root.Content[0]
		for _, part := range strings.Split(key, ".") {
			n = mapValue(n, part)
			if n == nil {
				return nil, fmt.Errorf("no field %s", key)
			}
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s is not a scalar", key)
		}
		n.Value, n.Tag, n.Style = value, "!!str", yaml.DoubleQuotedStyle
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	return out.Bytes(), enc.Close()
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
