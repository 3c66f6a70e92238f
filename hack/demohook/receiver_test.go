package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 12, 3, 12, 25, 4, 0, time.UTC)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body, want string
	}{
		{"message", "POST", "/rollout-paused", "Rollout default/web is paused at step 4 of 4 (canary weight 50%).",
			"12:25:04 POST /rollout-paused Rollout default/web is paused at step 4 of 4 (canary weight 50%).\n"},
		{"trailing newlines dropped", "POST", "/", "done\r\n\n", "12:25:04 POST / done\n"},
		{"no body", "GET", "/x?y=1", "", "12:25:04 GET /x?y=1 \n"},
		{"line breaks quoted", "POST", "/", "two\nlines", "12:25:04 POST / \"two\\nlines\"\n"},
		{"control characters quoted", "PUT", "/", "a\tb\x00", "12:25:04 PUT / \"a\\tb\\x00\"\n"},
		{"unicode kept", "POST", "/", "web:1 → web:2", "12:25:04 POST / web:1 → web:2\n"},
	} {
		if got := line(at, tc.method, tc.path, []byte(tc.body)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestReceiver(t *testing.T) {
	var out strings.Builder
	rc := newReceiver(&out, func() time.Time { return at })
	post := func(path, body string) int {
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		return w.Code
	}
	if code := post("/rollout-completed", "Rollout default/web completed."); code != http.StatusNoContent {
		t.Errorf("a notification: status %d, want 204", code)
	}
	if code := post("/big", strings.Repeat("x", maxBody+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over %d bytes: status %d, want 413", maxBody, code)
	}
	if want := "12:25:04 POST /rollout-completed Rollout default/web completed.\n"; out.String() != want {
		t.Errorf("log:\n got %q\nwant %q (nothing of the refused request)", out.String(), want)
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:18096": true,
		"127.3.0.7:80":    true,
		"[::1]:18096":     true,
		"0.0.0.0:18096":   false,
		":18096":          false,
		"localhost:18096": false,
		"0.0.0.1:18096":   false,
		"127.0.0.1":       false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok %t", addr, err, ok)
		}
	}
}
