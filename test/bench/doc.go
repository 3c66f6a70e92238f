// Package bench holds the controller's benchmarks: Go benchmarks
// (testing.B, behind the bench build tag so `go test ./...` never runs them)
// that drive the real reconcilers against a real kube-apiserver from
// test/testenv, and time what matters to users from watch events.
//
// `make bench` runs them and leaves the results in bin/bench/results.json
// and bin/bench/results.md. Each benchmark is one scenario in its own file
// (abort_test.go, analysis_test.go); a new scenario adds a file with a
// Benchmark function that ends with publish. This file's package (results.go)
// holds what every scenario shares and can be tested without a cluster.
package bench
