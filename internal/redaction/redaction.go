// Package redaction hides Secret-derived values in text that leaves the
// controller's hands: status, events, logs and errors (DESIGN.md §14).
package redaction

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
)

// Mask is what a Secret-derived value is replaced with.
const Mask = "***"

// Replacer hides each secret as written, and as it appears escaped in a URL
// or in JSON, or base64-encoded (an error quoting the URL a secret went
// into, an answer echoing a header). Empty secrets are ignored; with none
// left it returns nil, and a nil *strings.Replacer must not be used: call
// String, which handles it.
func Replacer(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		quoted, _ := json.Marshal(s)
		// Only the outer quotes go: a secret ending in `"` ends in `\"`.
		inJSON := string(quoted[1 : len(quoted)-1])
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), inJSON, base64.StdEncoding.EncodeToString([]byte(s))} {
			pairs = append(pairs, form, Mask)
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	return strings.NewReplacer(pairs...)
}

// String applies r, a Replacer's result, to s.
func String(r *strings.Replacer, s string) string {
	if r == nil {
		return s
	}
	return r.Replace(s)
}
