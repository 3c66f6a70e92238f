package trafficsim

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Rule
		wantErr string
	}{
		{in: "*bad*:errors=0.3", want: Rule{Tag: "*bad*", Behaviour: Behaviour{ErrorShare: 0.3}}},
		{in: "*bad*:errors=30%", want: Rule{Tag: "*bad*", Behaviour: Behaviour{ErrorShare: 0.3}}},
		{in: "*:errors=1%,latency=250ms", want: Rule{Tag: "*", Behaviour: Behaviour{ErrorShare: 0.01, MeanLatency: 0.25}}},
		{in: "2.*:latency=1s", want: Rule{Tag: "2.*", Behaviour: Behaviour{MeanLatency: 1}}},
		{in: "*bad*", wantErr: "want PATTERN:errors=SHARE"},
		{in: "*bad*:", wantErr: "want PATTERN:errors=SHARE"},
		{in: "[:errors=0.1", wantErr: "syntax error in pattern"},
		{in: "*:errors=1.5", wantErr: "not between 0 and 1"},
		{in: "*:errors=-1%", wantErr: "not between 0 and 1"},
		{in: "*:errors=lots", wantErr: `"lots" is not a number`},
		{in: "*:latency=0s", wantErr: "positive duration"},
		{in: "*:latency=fast", wantErr: "positive duration"},
		{in: "*:status=503", wantErr: `unknown setting "status"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRule(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseRule(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseRule(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestRulesFirstMatchOnTheTag(t *testing.T) {
	bad := Behaviour{ErrorShare: 0.3}
	some := Behaviour{ErrorShare: 0.01}
	rules := Rules{Rules: []Rule{{Tag: "*bad*", Behaviour: bad}, {Tag: "*", Behaviour: some}}}
	for _, tc := range []struct {
		image string
		want  Behaviour
	}{
		{"registry.example/web:3-bad", bad},
		{"registry.example:5000/web:bad", bad},
		{"registry.example/web:2", some},
		// The tag, not the repository, decides.
		{"registry.example/bad/web:2", some},
		{"registry.example:5000/web", some},
		{"web@sha256:bad0", some},
	} {
		got, served := rules.Behaviour("default", tc.image)
		if !served || got != tc.want {
			t.Errorf("Behaviour(%q) = %+v, %t; want %+v, true", tc.image, got, served, tc.want)
		}
	}
	if got, served := (Rules{}).Behaviour("default", "web:bad"); !served || got != (Behaviour{}) {
		t.Errorf("without rules: %+v, %t; want every request answered", got, served)
	}
}

func TestRulesNamespaces(t *testing.T) {
	rules := Rules{Namespaces: []string{"shop", "default"}}
	for ns, want := range map[string]bool{"shop": true, "default": true, "kube-system": false} {
		if _, served := rules.Behaviour(ns, "web:1"); served != want {
			t.Errorf("namespace %s served %t, want %t", ns, served, want)
		}
	}
}

func TestTable(t *testing.T) {
	var table Table
	if _, served := table.Behaviour("a", "web:1"); served {
		t.Error("the zero Table serves a namespace")
	}
	table.Serve("a")
	if b, served := table.Behaviour("a", "web:1"); !served || b != (Behaviour{}) {
		t.Errorf("served namespace: %+v, %t; want no errors, served", b, served)
	}
	table.SetErrorShare("a", "web:2", 0.5)
	table.SetLatency("a", "web:2", 0.2)
	table.SetLatency("b", "web:1", 0.1)
	for _, tc := range []struct {
		ns, image string
		want      Behaviour
	}{
		{"a", "web:1", Behaviour{}},
		{"a", "web:2", Behaviour{ErrorShare: 0.5, MeanLatency: 0.2}},
		{"b", "web:1", Behaviour{MeanLatency: 0.1}},
		{"b", "web:2", Behaviour{}},
	} {
		if got, served := table.Behaviour(tc.ns, tc.image); !served || got != tc.want {
			t.Errorf("%s %s: %+v, %t; want %+v, served", tc.ns, tc.image, got, served, tc.want)
		}
	}
	table.Forget("a")
	table.Serve("a")
	if b, _ := table.Behaviour("a", "web:2"); b != (Behaviour{}) {
		t.Errorf("settings survived Forget: %+v", b)
	}
}
