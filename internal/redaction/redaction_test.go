package redaction

import (
	"encoding/base64"
	"testing"
)

func TestReplacer(t *testing.T) {
	secret := `to ken/"x"`
	r := Replacer([]string{"", secret})
	for in, want := range map[string]string{
		"plain " + secret:     "plain ***",
		"?t=to+ken%2F%22x%22": "?t=***",
		"/to%20ken%2F%22x%22": "/***",
		`"to ken/\"x\""`:      `"***"`,
		base64.StdEncoding.EncodeToString([]byte(secret)): "***",
	} {
		if got := String(r, in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if r := Replacer([]string{""}); r != nil {
		t.Errorf("Replacer of only empty secrets = %v, want nil", r)
	}
	if got := String(nil, "0.9"); got != "0.9" {
		t.Errorf("String(nil, 0.9) = %q", got)
	}
}
