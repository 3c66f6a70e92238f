package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i)
	}
	for _, tc := range []struct {
		name string
		in   []float64
		want Spread
	}{
		{"empty", nil, Spread{}},
		{"one", []float64{7}, Spread{Median: 7, Min: 7, Max: 7, P99: 7}},
		{"odd, unsorted", []float64{9, 1, 5}, Spread{Median: 5, Min: 1, Max: 9, P99: 9}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, Spread{Median: 2.5, Min: 1, Max: 4, P99: 4}},
		{"p99 is the nearest rank", hundred, Spread{Median: 50.5, Min: 1, Max: 100, P99: 99}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if diff := cmp.Diff(tc.want, Summarize(tc.in)); diff != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tc.in, diff)
			}
			if diff := cmp.Diff(in, tc.in); diff != "" {
				t.Errorf("Summarize changed its input:\n%s", diff)
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[float64]string{2500: "2500", 123.456: "123", 42.25: "42.2", 3: "3", 1.2345: "1.23", -0.5: "-0.50"} {
		if got := FormatValue(in); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestReportWrite(t *testing.T) {
	r := NewReport(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	r.Go, r.Platform, r.CPUs = "go1.26", "linux/amd64", 2
	r.Add(Result{Name: "BenchmarkA", Metrics: []Metric{{"x-ms", 1}}})
	r.Add(Result{Name: "BenchmarkB", Metrics: []Metric{{"y/s", 250.5}}, Columns: []string{"batch", "wall s"}, Rows: [][]string{{"1", "9.5"}}, Note: "Batches of 100.", Load: "0.50 0.40 0.30"})
	// A benchmark run again replaces its result.
	r.Add(Result{Name: "BenchmarkA", Metrics: []Metric{{"x-ms", 12.25}}})
	dir := t.TempDir()
	if err := r.Write(dir, "results"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := `# Benchmarks

2026-01-02T03:04:05Z, go1.26 linux/amd64, 2 CPUs.

## BenchmarkA

| metric | value |
| --- | --- |
| x-ms | 12.2 |

## BenchmarkB

Batches of 100.

| metric | value |
| --- | --- |
| y/s | 250 |

| batch | wall s |
| --- | --- |
| 1 | 9.5 |

Load average (1, 5, 15 min) at the end: 0.50 0.40 0.30.
`
	if diff := cmp.Diff(want, string(md)); diff != "" {
		t.Errorf("results.md (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, &back); diff != "" {
		t.Errorf("results.json does not round-trip (-want +got):\n%s", diff)
	}
}
