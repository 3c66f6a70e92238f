// Package bench holds the controller's benchmarks: Go benchmarks
// (testing.B, behind the bench build tag so `go test ./...` never runs them)
// that drive the real reconcilers against a real kube-apiserver from
// test/testenv, and time what matters to users from watch events.
//
// `make bench` runs them and leaves the results in bin/bench/results.json
// and bin/bench/results.md; the controller binary at scale on a kwok cluster
// is benchmarked by the subpackage scale (bin/bench/scale.{json,md}). Each
// benchmark is one scenario in its own file; a new scenario adds a file with
// a Benchmark function that ends with publish. The package's non-test files
// (results.go, verdict.go) hold what every scenario shares.
package bench
