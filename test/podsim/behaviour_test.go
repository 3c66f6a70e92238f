package podsim

import (
	"testing"
	"time"
)

func TestParseImage(t *testing.T) {
	for _, tc := range []struct {
		image string
		want  Behaviour
	}{
		{"web:1", Behaviour{}},
		{"registry.example/web", Behaviour{}},
		{"web:bad-30", Behaviour{ErrorShare: 0.3}},
		{"web:bad-5", Behaviour{ErrorShare: 0.05}},
		{"web:bad-100", Behaviour{ErrorShare: 1}},
		{"registry.example/web:3-bad", Behaviour{ErrorShare: 0.3}},
		{"web:bad", Behaviour{ErrorShare: 0.3}},
		{"web:slow-200ms", Behaviour{Latency: 200 * time.Millisecond}},
		{"web:slow", Behaviour{Latency: 100 * time.Millisecond}},
		{"web:2-bad-5-slow-50ms", Behaviour{ErrorShare: 0.05, Latency: 50 * time.Millisecond}},
		{"registry:5000/web:slow-1s@sha256:abc", Behaviour{Latency: time.Second}},
		// Words that only contain the keywords are versions.
		{"web:badger-2", Behaviour{}},
		{"web:v2-slowpoke", Behaviour{}},
	} {
		got, err := ParseImage(tc.image)
		if err != nil || got != tc.want {
			t.Errorf("ParseImage(%q) = %+v, %v; want %+v", tc.image, got, err, tc.want)
		}
	}
	for _, bad := range []string{"web:bad-101", "web:bad-NaN", "web:bad-Inf"} {
		if b, err := ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q) = %+v; want an error", bad, b)
		}
	}
}

func TestTag(t *testing.T) {
	for image, want := range map[string]string{
		"web":                           "latest",
		"web:3":                         "3",
		"registry:5000/web":             "latest",
		"registry:5000/web:bad-30":      "bad-30",
		"registry:5000/web@sha256:abcd": "latest",
		"web:2@sha256:abcd":             "2",
	} {
		if got := Tag(image); got != want {
			t.Errorf("Tag(%q) = %q, want %q", image, got, want)
		}
	}
}
