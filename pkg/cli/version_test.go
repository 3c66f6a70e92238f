package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubeseed/rollouts/pkg/version"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	cmd := NewRootCommand(streams)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersionClientJSON(t *testing.T) {
	out, err := runCLI(t, "version", "--client", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got versionOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if diff := cmp.Diff(versionOutput{Plugin: version.Get()}, got); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
}

func TestVersionText(t *testing.T) {
	var b bytes.Buffer
	err := printVersion(&b, versionOutput{
		Plugin:     version.Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26", Platform: "linux/amd64"},
		Controller: []controllerVersion{{Namespace: "rollouts-system", Name: "rollouts-controller", Image: "img:v1"}},
	}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	want := "kubectl-rollouts: v1.2.3 (commit abc, go1.26, linux/amd64)\ncontroller: rollouts-system/rollouts-controller image img:v1\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b.Reset()
	if err := printVersion(&b, versionOutput{}, "", false); err != nil || !strings.Contains(b.String(), "controller: not found") {
		t.Errorf("missing controller: %q, %v", b.String(), err)
	}
}

func TestVersionRejectsUnknownFormat(t *testing.T) {
	_, err := runCLI(t, "version", "--client", "-o", "yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown output format "yaml"`) {
		t.Errorf("got %v", err)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, err := runCLI(t, "completion", shell)
		if err != nil || !strings.Contains(out, "kubectl-rollouts") {
			t.Errorf("completion %s: %v (%d bytes)", shell, err, len(out))
		}
	}
}
