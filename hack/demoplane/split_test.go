package main

import (
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/load"
)

func TestSplit(t *testing.T) {
	answered := func(image string, status, n int) load.Results {
		var rs load.Results
		for range n {
			rs = append(rs, load.Result{Status: status, Image: image, Pod: "p", Revision: "r"})
		}
		return rs
	}
	var mixed load.Results
	mixed = append(mixed, answered("registry.example/web:2", 200, 49)...)
	mixed = append(mixed, answered("registry.example/web:1", 200, 140)...)
	mixed = append(mixed, answered("registry.example/web:2", 500, 1)...)
	mixed = append(mixed, answered("", 503, 4)...)
	mixed = append(mixed, answered("", 404, 4)...)
	mixed = append(mixed, load.Result{Err: "connection refused"}, load.Result{Err: "connection refused"})
	for _, tc := range []struct {
		name string
		rs   load.Results
		want string
	}{
		{"none", nil, "last 5s: 0 requests"},
		{"one image", answered("registry.example/web:1", 200, 200), "last 5s: 200 requests, 100.0 % answered by web:1, 0.0 % 5xx"},
		{"bad canary", append(answered("web:3-bad", 500, 15), answered("web:2", 200, 185)...),
			"last 5s: 200 requests, 92.5 % answered by web:2, 7.5 % by web:3-bad, 7.5 % 5xx"},
		{"no pod last, with what came instead", mixed,
			"last 5s: 200 requests, 70.0 % answered by web:1, 25.0 % by web:2, 5.0 % by no pod (404, 503, no answer), 2.5 % 5xx"},
		{"no route yet", answered("", 404, 3), "last 5s: 3 requests, 100.0 % answered by no pod (404), 0.0 % 5xx"},
	} {
		if got := split(5*time.Second, tc.rs); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
