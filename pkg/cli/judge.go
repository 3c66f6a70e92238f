package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubeseed/rollouts/pkg/analysis/judge"
)

type judgeOptions struct {
	baseline, canary string
	direction        string
	confidence       float64
	tolerance        float64
	nanStrategy      string
	outliers         string
	output           string
}

func newJudgeCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := judgeOptions{direction: string(judge.Either), confidence: 0.98, tolerance: 0.25, nanStrategy: "remove", outliers: "keep", output: "text"}
	cmd := &cobra.Command{
		Use:   "judge --baseline FILE --canary FILE",
		Short: "Run the statistical judge offline on two recorded series",
		Long: `judge classifies a canary series against a baseline series exactly as the
judge provider does during an analysis: a Mann–Whitney U confidence interval
on the shift, checked against a tolerance band around the Hodges–Lehmann
estimate. Use it to tune direction, confidence and tolerance on your own
recorded data before putting them in an AnalysisTemplate.

Each file holds one number per line (blank lines and # comments are
skipped) or a JSON array of numbers; "-" reads standard input. NaN is
accepted.`,
		Example: `  # Compare two latency recordings
  kubectl rollouts judge --baseline baseline.txt --canary canary.txt

  # Only an increase is bad; machine-readable output
  kubectl rollouts judge --baseline b.json --canary c.json --direction increase -o json

  # Series piped in from another tool
  promtool query range ... | jq '.[].values[][1]' | kubectl rollouts judge --baseline b.txt --canary -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(streams)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.baseline, "baseline", "", `file with the baseline series ("-" for stdin)`)
	f.StringVar(&o.canary, "canary", "", `file with the canary series ("-" for stdin)`)
	f.StringVar(&o.direction, "direction", o.direction, "the way the canary must not move: increase, decrease or either")
	f.Float64Var(&o.confidence, "confidence", o.confidence, "confidence of the interval on the shift, between 0 and 1")
	f.Float64Var(&o.tolerance, "tolerance", o.tolerance, "tolerance band as a share of the estimated shift")
	f.StringVar(&o.nanStrategy, "nan-strategy", o.nanStrategy, "what NaN values become: remove or replace (with 0)")
	f.StringVar(&o.outliers, "outliers", o.outliers, "keep or remove (3 × IQR fences) outlying points")
	f.StringVarP(&o.output, "output", "o", o.output, "output format: text or json")
	_ = cmd.MarkFlagRequired("baseline")
	_ = cmd.MarkFlagRequired("canary")
	return cmd
}

func (o *judgeOptions) run(streams genericiooptions.IOStreams) error {
	opts := judge.Options{Direction: judge.Direction(o.direction), Confidence: o.confidence, Tolerance: o.tolerance}
	switch opts.Direction {
	case judge.Increase, judge.Decrease, judge.Either:
	default:
		return fmt.Errorf("--direction must be increase, decrease or either, not %q", o.direction)
	}
	if o.confidence <= 0 || o.confidence >= 1 {
		return fmt.Errorf("--confidence must be between 0 and 1 (exclusive), not %g", o.confidence)
	}
	if o.tolerance < 0 {
		return fmt.Errorf("--tolerance must not be negative, not %g", o.tolerance)
	}
	switch o.nanStrategy {
	case "remove":
	case "replace":
		opts.ReplaceNaN = true
	default:
		return fmt.Errorf("--nan-strategy must be remove or replace, not %q", o.nanStrategy)
	}
	switch o.outliers {
	case "keep":
	case "remove":
		opts.RemoveOutliers = true
	default:
		return fmt.Errorf("--outliers must be keep or remove, not %q", o.outliers)
	}
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", o.output)
	}
	if o.baseline == "-" && o.canary == "-" {
		return fmt.Errorf("only one of --baseline and --canary can read standard input")
	}
	baseline, err := readSeries(o.baseline, streams.In)
	if err != nil {
		return fmt.Errorf("--baseline: %w", err)
	}
	canary, err := readSeries(o.canary, streams.In)
	if err != nil {
		return fmt.Errorf("--canary: %w", err)
	}
	res, err := judge.Classify(canary, baseline, opts)
	if err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Classification:  %s\n", res.Classification)
	if res.Reason != "" {
		fmt.Fprintf(&b, "Reason:          %s\n", res.Reason)
	}
	if res.Classification != judge.NoData && res.Classification != judge.NoDataFail {
		fmt.Fprintf(&b, "Interval (%g%%):  %s .. %s\n", 100*o.confidence, fmtNum(res.CILower), fmtNum(res.CIUpper))
		fmt.Fprintf(&b, "Estimate:        %s (Hodges–Lehmann), tolerance ±%s\n", fmtNum(res.Estimate), fmtNum(o.tolerance*abs(res.Estimate)))
		fmt.Fprintf(&b, "Mean ratio:      %s (canary / baseline)\n", fmtNum(res.MeanRatio))
		fmt.Fprintf(&b, "CLES:            %s (chance a canary value exceeds a baseline value)\n", fmtNum(res.CLES))
	}
	fmt.Fprintf(&b, "Samples:         baseline %d, canary %d\n", res.BaselineCount, res.CanaryCount)
	_, err = io.WriteString(streams.Out, b.String())
	return err
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// readSeries reads numbers from a file (or stdin for "-"): a JSON array,
// or one number per line.
func readSeries(path string, stdin io.Reader) ([]float64, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if trimmed := strings.TrimSpace(string(data)); strings.HasPrefix(trimmed, "[") {
		var raw []json.Number
		if err := json.Unmarshal([]byte(trimmed), &raw); err != nil {
			return nil, fmt.Errorf("not a JSON array of numbers: %w", err)
		}
		out := make([]float64, len(raw))
		for i, n := range raw {
			if out[i], err = n.Float64(); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return out, nil
	}
	var out []float64
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q is not a number", line, text)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}
