package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func writeSeries(t *testing.T, name string, values []float64, asJSON bool) string {
	t.Helper()
	var b strings.Builder
	if asJSON {
		raw, _ := json.Marshal(values)
		b.Write(raw)
	} else {
		b.WriteString("# recorded latency, ms\n")
		for _, v := range values {
			fmt.Fprintf(&b, "%g\n\n", v)
		}
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func ramp(from float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = from + float64(i%10)
	}
	return out
}

func TestJudgeJSON(t *testing.T) {
	baseline := writeSeries(t, "b.txt", ramp(100, 30), false)
	canary := writeSeries(t, "c.json", ramp(140, 30), true)
	out, err := runCLI(t, "judge", "--baseline", baseline, "--canary", canary, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, key := range []string{"classification", "ciLower", "ciUpper", "estimate", "meanRatio", "cles", "baselineCount", "canaryCount"} {
		if _, ok := got[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, out)
		}
	}
	if got["classification"] != "High" || got["estimate"] != 40.0 || got["canaryCount"] != 30.0 {
		t.Errorf("judge said %s", out)
	}
	// Only a decrease matters: the same data pass.
	out, err = runCLI(t, "judge", "--baseline", baseline, "--canary", canary, "--direction", "decrease", "-o", "json")
	if err != nil || !strings.Contains(out, `"classification": "Pass"`) {
		t.Errorf("with --direction decrease: %v %s", err, out)
	}
}

func TestJudgeTextFromStdin(t *testing.T) {
	baseline := writeSeries(t, "b.txt", ramp(100, 20), false)
	streams, in, _, _ := genericiooptions.NewTestIOStreams()
	in.WriteString("[100, 101, 102, 103, 104, 105, 106, 107, 108, 109, NaN]")
	cmd := NewRootCommand(streams)
	cmd.SetArgs([]string{"judge", "--baseline", baseline, "--canary", "-"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("NaN is not JSON: want an error")
	}
	streams, in, out, _ := genericiooptions.NewTestIOStreams()
	in.WriteString("100\n101\nNaN\n102\n103\n104\n105\n106\n107\n108\n109\n")
	cmd = NewRootCommand(streams)
	cmd.SetArgs([]string{"judge", "--baseline", baseline, "--canary", "-"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Classification:  Pass", "Samples:         baseline 20, canary 10", "Estimate:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestJudgeBadInput(t *testing.T) {
	good := writeSeries(t, "b.txt", ramp(1, 5), false)
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("1\n2\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--baseline", good}, `required flag(s) "canary" not set`},
		{[]string{"--baseline", good, "--canary", bad}, `--canary: line 3: "three" is not a number`},
		{[]string{"--baseline", good, "--canary", "/nonexistent"}, "--canary: open /nonexistent"},
		{[]string{"--baseline", good, "--canary", good, "--direction", "up"}, "--direction must be increase, decrease or either"},
		{[]string{"--baseline", good, "--canary", good, "--confidence", "1.5"}, "--confidence must be between 0 and 1"},
		{[]string{"--baseline", "-", "--canary", "-"}, "only one of --baseline and --canary"},
		{[]string{"--baseline", good, "--canary", good, "-o", "yaml"}, "--output must be text or json"},
	} {
		streams, _, _, _ := genericiooptions.NewTestIOStreams()
		cmd := NewRootCommand(streams)
		silence(cmd)
		cmd.SetArgs(append([]string{"judge"}, tc.args...))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("judge %v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func silence(cmd *cobra.Command) {
	cmd.SilenceErrors = true
	for _, c := range cmd.Commands() {
		c.SilenceErrors = true
	}
}
