package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// The golden files are rewritten with go test ./pkg/cli -run 'TestLint|TestNotifications' -update.
// get_integration_test.go defines the same flag under the integration tag;
// package variables are set before init runs, so this only adds it when that
// file is not built.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata/")
	}
}

func updateGolden() bool {
	return flag.Lookup("update").Value.String() == "true"
}

// runLint runs the command as kubectl would and returns its standard output,
// followed by the error line the plugin prints, if any.
func runLint(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	cmd := newLintCommand(streams)
	cmd.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	cmd.SetOut(out)
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	if err != nil {
		out.WriteString("error: " + err.Error() + "\n")
	}
	if errOut.Len() > 0 {
		t.Errorf("the command wrote to the error stream: %s", errOut)
	}
	return out.String(), err
}

// goldenFile compares got with a file of testdata, or rewrites it.
func goldenFile(t *testing.T, path, got string) {
	t.Helper()
	if updateGolden() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/cli -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("output differs from %s (-want +got):\n%s", path, diff)
	}
}

// countProblems counts the problem lines of an output.
func countProblems(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasSuffix(line, ", no problems") && !strings.HasPrefix(line, "error: ") {
			n++
		}
	}
	return n
}

func TestLintValid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "lint", "valid", "*"))
	if len(files) == 0 {
		t.Fatal("no valid manifests")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := runLint(t, "", "-f", f)
			if err != nil || countProblems(out) != 0 {
				t.Errorf("valid manifests have problems:\n%s", out)
			}
		})
	}
	// All together, read from their directory: nothing clashes either.
	out, err := runLint(t, "", "-f", filepath.Join("testdata", "lint", "valid"))
	if err != nil || strings.Count(out, ", no problems\n") != len(files) {
		t.Errorf("the valid directory:\n%s", out)
	}
}

// TestLintInvalid checks each invalid manifest alone against its golden
// output. A first line "# lint: FLAGS" adds flags.
func TestLintInvalid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "lint", "invalid", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no invalid manifests")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"-f", f}
			if first, _, _ := strings.Cut(string(data), "\n"); strings.HasPrefix(first, "# lint: ") {
				args = append(args, strings.Fields(strings.TrimPrefix(first, "# lint: "))...)
			}
			out, err := runLint(t, "", args...)
			if err == nil || ExitCode(err) != 1 {
				t.Errorf("want exit code 1 for an invalid manifest, got error %v", err)
			}
			goldenFile(t, strings.TrimSuffix(f, ".yaml")+".out", out)
		})
	}
}

// exampleExternals are the objects the examples say live elsewhere.
var exampleExternals = map[string][]string{
	"bluegreen.yaml":         {"--external", "Service/storefront-active,Service/storefront-preview"},
	"canary-every-step.yaml": {"--external", "Service,VirtualService,HTTPRoute,GRPCRoute,Ingress"},
}

// knownExampleProblems are the problems the examples have today (none);
// each would be explained in its golden file.
var knownExampleProblems = map[string]int{}

// TestLintExamples lints each example of manifests/examples with the
// analysis templates they reference.
func TestLintExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "manifests", "examples")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			args := append([]string{"-f", f, "-f", filepath.Join(dir, "analysistemplates.yaml")}, exampleExternals[name]...)
			out, _ := runLint(t, "", args...)
			if got, want := countProblems(out), knownExampleProblems[name]; got != want {
				t.Errorf("%s has %d problems, want %d:\n%s", name, got, want, out)
			}
			goldenFile(t, filepath.Join("testdata", "lint", "examples", strings.TrimSuffix(name, ".yaml")+".out"), out)
		})
	}
}

func TestLintStdin(t *testing.T) {
	manifest := `apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
  strategy:
    blueGreen: {activeService: web}
`
	service := filepath.Join(t.TempDir(), "service.yaml")
	if err := os.WriteFile(service, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runLint(t, manifest, "-f", "-", "-f", service)
	if err != nil || out != "<stdin>: 1 object, no problems\n"+service+": 1 object, no problems\n" {
		t.Errorf("with the Service: %v\n%s", err, out)
	}
	out, err = runLint(t, manifest, "-f", "-")
	want := `<stdin>:10: Rollout/web: spec.strategy.blueGreen.activeService: Service "web" was not found in the files given (if it exists elsewhere, pass --external Service/web)
error: 1 problem in 1 file
`
	if err == nil || out != want {
		t.Errorf("without the Service: %v\n%s", err, cmp.Diff(want, out))
	}
}

func TestLintFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `required flag(s) "filename" not set`},
		{[]string{"-f", "-", "-f", "-"}, "standard input"},
		{[]string{"-f", "does-not-exist.yaml"}, "no such file"},
		{[]string{"-f", "-", "--external", "ConfigMap/x"}, `--external "ConfigMap/x": the kind must be one of AnalysisTemplate, ClusterAnalysisTemplate, Service,`},
	} {
		if _, err := runLint(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lint %v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestFieldNode(t *testing.T) {
	const doc = `kind: Rollout
metadata:
  labels:
    app.kubernetes.io/name: web
spec:
  strategy:
    canary:
      steps:
      - setWeight: 10
      - pause:
          duration: 30s
      - {setWeight: 20}
`
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"":                           1,
		"kind":                       1,
		"spec.strategy.canary.steps": 8,
		"spec.strategy.canary.steps[0].setWeight":      9,
		"spec.strategy.canary.steps[1]":                10,
		"spec.strategy.canary.steps[1].pause.duration": 11,
		"spec.strategy.canary.steps[2].setWeight":      12,
		"spec.strategy.canary.steps[7].setWeight":      8,  // past the end: the list
		"spec.strategy.canary.steps[1].pause.reason":   10, // not written: its parent
		"metadata.labels.app.kubernetes.io/name":       4,  // a key with dots
		"metadata.labels[app.kubernetes.io/name]":      4,
		"spec.strategy.blueGreen.activeService":        6,
	} {
		if got := fieldNode(root.Content[0], path).Line; got != want {
			t.Errorf("line of %q = %d, want %d", path, got, want)
		}
	}
}
