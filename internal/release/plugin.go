package release

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// PluginBinary is the plugin's executable name on p.
func PluginBinary(p Platform) string {
	if p.OS == "windows" {
		return "kubectl-rollouts.exe"
	}
	return "kubectl-rollouts"
}

// PluginArchiveName is the archive of the plugin for p in a release.
func PluginArchiveName(version string, p Platform) string {
	ext := ".tar.gz"
	if p.OS == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("kubectl-rollouts_%s_%s_%s%s", version, p.OS, p.Arch, ext)
}

// PluginArchive packs the plugin binary for p into dir (a zip for
// windows, a gzipped tar elsewhere) and returns the archive's path.
func PluginArchive(bin string, p Platform, b Build, dir string) (string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	name := PluginBinary(p)
	if p.OS == "windows" {
		zw := zip.NewWriter(&buf)
		h := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: b.Created}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return "", err
		}
		if _, err := w.Write(data); err != nil {
			return "", err
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
	} else {
		var raw bytes.Buffer
		if err := writeTar(&raw, map[string][]byte{name: data}, b.Created, name); err != nil {
			return "", err
		}
		gz, err := gzipBytes(raw.Bytes())
		if err != nil {
			return "", err
		}
		buf.Write(gz)
	}
	out := filepath.Join(dir, PluginArchiveName(b.Version, p))
	return out, os.WriteFile(out, buf.Bytes(), 0o644)
}

// KrewPlugin is a krew plugin manifest (krew.googlecontainertools.github.com/v1alpha2).
type KrewPlugin struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   KrewMetadata   `json:"metadata"`
	Spec       KrewPluginSpec `json:"spec"`
}

// KrewMetadata names the plugin: `kubectl krew install <name>`.
type KrewMetadata struct {
	Name string `json:"name"`
}

// KrewPluginSpec describes a version of the plugin.
type KrewPluginSpec struct {
	Version          string         `json:"version"`
	Homepage         string         `json:"homepage,omitempty"`
	ShortDescription string         `json:"shortDescription"`
	Description      string         `json:"description,omitempty"`
	Platforms        []KrewPlatform `json:"platforms"`
}

// KrewPlatform is the download for the platforms its selector matches.
type KrewPlatform struct {
	Selector metav1.LabelSelector `json:"selector"`
	URI      string               `json:"uri"`
	Sha256   string               `json:"sha256"`
	Files    []KrewFile           `json:"files"`
	Bin      string               `json:"bin"`
}

// KrewFile is copied from the archive into the plugin's directory.
type KrewFile struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// NewKrewPlugin describes the plugin archives of b; sums maps each archive's
// file name to its sha256.
func NewKrewPlugin(b Build, platforms []Platform, sums map[string]string) (KrewPlugin, error) {
	k := KrewPlugin{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   KrewMetadata{Name: "rollouts"},
		Spec: KrewPluginSpec{
			Version:          b.Version,
			Homepage:         Source,
			ShortDescription: "Watch, promote, abort and lint progressive-delivery Rollouts",
			Description: "The kubectl plugin of rollouts (rollouts.kubeseed.io), a progressive-delivery\n" +
				"controller: list and watch Rollouts, AnalysisRuns and Experiments; promote,\n" +
				"abort, retry, pause, resume, restart and undo them; lint manifests offline.\n",
		},
	}
	for _, p := range platforms {
		archive := PluginArchiveName(b.Version, p)
		sum, ok := sums[archive]
		if !ok {
			return k, fmt.Errorf("no checksum for %s", archive)
		}
		bin := PluginBinary(p)
		k.Spec.Platforms = append(k.Spec.Platforms, KrewPlatform{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"os": p.OS, "arch": p.Arch}},
			URI:      fmt.Sprintf("%s/releases/download/%s/%s", Source, b.Version, archive),
			Sha256:   sum,
			Files:    []KrewFile{{From: bin, To: "."}},
			Bin:      bin,
		})
	}
	return k, k.Validate()
}

var (
	krewName   = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	krewSemver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	sha256Hex  = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// Validate applies the rules krew's index applies to a plugin manifest.
func (k KrewPlugin) Validate() error {
	switch {
	case k.APIVersion != "krew.googlecontainertools.github.com/v1alpha2":
		return fmt.Errorf("apiVersion %q: want krew.googlecontainertools.github.com/v1alpha2", k.APIVersion)
	case k.Kind != "Plugin":
		return fmt.Errorf("kind %q: want Plugin", k.Kind)
	case !krewName.MatchString(k.Metadata.Name):
		return fmt.Errorf("name %q: want lower-case letters, digits and dashes", k.Metadata.Name)
	case !krewSemver.MatchString(k.Spec.Version):
		return fmt.Errorf("version %q: want a semantic version with a leading v", k.Spec.Version)
	case k.Spec.ShortDescription == "":
		return fmt.Errorf("shortDescription is empty")
	case len(k.Spec.Platforms) == 0:
		return fmt.Errorf("no platforms")
	}
	for i, p := range k.Spec.Platforms {
		switch {
		case len(p.Selector.MatchLabels) == 0 && len(p.Selector.MatchExpressions) == 0:
			return fmt.Errorf("platforms[%d]: empty selector", i)
		case !strings.HasPrefix(p.URI, "https://"):
			return fmt.Errorf("platforms[%d]: uri %q is not https", i, p.URI)
		case !sha256Hex.MatchString(p.Sha256):
			return fmt.Errorf("platforms[%d]: sha256 %q is not 64 lower-case hex digits", i, p.Sha256)
		case p.Bin == "" || strings.ContainsAny(p.Bin, `/\`):
			return fmt.Errorf("platforms[%d]: bin %q must be a file name", i, p.Bin)
		case p.Selector.MatchLabels["os"] == "windows" && !strings.HasSuffix(p.Bin, ".exe"):
			return fmt.Errorf("platforms[%d]: a windows bin must end in .exe, got %q", i, p.Bin)
		case len(p.Files) == 0:
			return fmt.Errorf("platforms[%d]: no files", i)
		}
	}
	return nil
}

// ParseKrewPlugin reads a manifest strictly: unknown fields are errors.
func ParseKrewPlugin(b []byte) (KrewPlugin, error) {
	var k KrewPlugin
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return k, err
	}
	return k, k.Validate()
}
