package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Metric is one number a benchmark reports, named by its unit as
// testing.B.ReportMetric takes it ("abort-p50-ms").
type Metric struct {
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
}

// Result is what one benchmark found: its metrics, and its samples as a
// table (one row per iteration).
type Result struct {
	Name    string     `json:"name"`
	Metrics []Metric   `json:"metrics"`
	Columns []string   `json:"columns,omitempty"`
	Rows    [][]string `json:"rows,omitempty"`
	// Note says, in a paragraph above the tables, what a reader needs to
	// read the numbers: how they were measured, the settings they depend on.
	Note string `json:"note,omitempty"`
	// Load is the machine's load average (1, 5, 15 minutes) when the
	// benchmark ended: busy neighbours make its numbers worse.
	Load string `json:"load,omitempty"`
}

// Report is the results of one run of the benchmarks.
type Report struct {
	Started  time.Time `json:"started"`
	Go       string    `json:"go"`
	Platform string    `json:"platform"`
	CPUs     int       `json:"cpus"`
	Results  []Result  `json:"results"`
}

// NewReport starts an empty report describing this machine.
func NewReport(started time.Time) *Report {
	return &Report{
		Started:  started,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		CPUs:     runtime.NumCPU(),
	}
}

// Add records a result, replacing an earlier one of the same name.
func (r *Report) Add(res Result) {
	if i := slices.IndexFunc(r.Results, func(o Result) bool { return o.Name == res.Name }); i >= 0 {
		r.Results[i] = res
		return
	}
	r.Results = append(r.Results, res)
}

// Publish reports a result's metrics to the benchmark framework (they print
// on its line), logs its samples as a table, adds it to the report and
// rewrites NAME.{json,md} in dir, so a later failure keeps what came before.
// The framework keeps only ten lines of a benchmark's log; the files have
// everything.
func (r *Report) Publish(b *testing.B, res Result, dir, name string) {
	b.Helper()
	for _, m := range res.Metrics {
		b.ReportMetric(m.Value, m.Unit)
	}
	if len(res.Rows) > 0 {
		b.Log("\n" + markdownTable(res.Columns, res.Rows))
	}
	res.Load = LoadAverage()
	r.Add(res)
	if err := r.Write(dir, name); err != nil {
		b.Fatal(err)
	}
}

// Write writes the report into dir as NAME.json and NAME.md.
func (r *Report) Write(dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	return nil
}

// Markdown renders the report: per benchmark, its metrics, then its samples.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\n%s, %s %s, %d CPUs.\n", r.Started.UTC().Format(time.RFC3339), r.Go, r.Platform, r.CPUs)
	for _, res := range r.Results {
		fmt.Fprintf(&b, "\n## %s\n\n%s", res.Name, res.Markdown())
	}
	return b.String()
}

// Markdown renders a result's note, its metrics and, when it has any, its
// samples.
func (res Result) Markdown() string {
	var out string
	if res.Note != "" {
		out = res.Note + "\n\n"
	}
	if len(res.Metrics) > 0 {
		rows := make([][]string, len(res.Metrics))
		for i, m := range res.Metrics {
			rows[i] = []string{m.Unit, FormatValue(m.Value)}
		}
		out += markdownTable([]string{"metric", "value"}, rows)
	}
	if len(res.Rows) > 0 && len(res.Metrics) > 0 {
		out += "\n"
	}
	if len(res.Rows) > 0 {
		out += markdownTable(res.Columns, res.Rows)
	}
	if res.Load != "" {
		out += "\nLoad average (1, 5, 15 min) at the end: " + res.Load + ".\n"
	}
	return out
}

// LoadAverage returns the load averages of /proc/loadavg, or "" where
// there is none.
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return ""
	}
	return strings.Join(fields[:3], " ")
}

func markdownTable(columns []string, rows [][]string) string {
	var b strings.Builder
	line := func(cells []string) { fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | ")) }
	line(columns)
	sep := make([]string, len(columns))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, row := range rows {
		line(row)
	}
	return b.String()
}

// FormatValue prints a measured value with the precision it deserves:
// whole numbers from 100 up, one decimal from 10, two below.
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Spread summarises a sample.
type Spread struct {
	Median, Min, Max, P99 float64
}

// Summarize returns the spread of xs; the 99th percentile is the nearest
// rank. An empty sample is all zeros.
func Summarize(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	rank := int(math.Ceil(0.99*float64(n))) - 1
	return Spread{Median: median, Min: s[0], Max: s[n-1], P99: s[rank]}
}

// Millis is a duration in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
