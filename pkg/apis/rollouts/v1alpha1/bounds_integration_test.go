//go:build integration

package v1alpha1_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// minimalRun is the minimal AnalysisTemplate's spec in an AnalysisRun.
var minimalRun = strings.Replace(minimalTemplate, "kind: AnalysisTemplate", "kind: AnalysisRun", 1)

// jobMetric is a job metric whose Job spec adds extra.
func jobMetric(extra string) string {
	return `spec: {metrics: [{name: m, provider: {job: {spec: {` + extra + `template: {spec: {restartPolicy: Never, containers: [{name: c, image: check:1}]}}}}}}]}`
}

// TestIntegrationBounds has rows for each bound of a shared cluster, on
// both sides of it: the API server refuses a value past the bound with
// the message the controller also uses (v1alpha1.Message*), and accepts
// the bound itself.
func TestIntegrationBounds(t *testing.T) {
	t.Parallel()
	prom := func(field string) string {
		return `spec: {metrics: [{name: m, ` + field + `, provider: {prometheus: {query: up}}}]}`
	}
	withTimeout := func(provider, timeout string) string {
		switch provider {
		case "prometheus":
			return `spec: {metrics: [{name: m, provider: {prometheus: {query: up, timeout: ` + timeout + `}}}]}`
		case "web":
			return `spec: {metrics: [{name: m, provider: {web: {url: "http://x", timeout: ` + timeout + `}}}]}`
		}
		return `spec: {metrics: [{name: m, provider: {judge: {timeout: ` + timeout + `, window: {start: 10m, step: 1m}, metrics: [{name: e, canaryQuery: a, baselineQuery: b}]}}}]}`
	}
	retention := func(limit int) string {
		return fmt.Sprintf(`spec: {measurementRetention: [{metricName: "*", limit: %d}]}`, limit)
	}
	rows := []struct {
		name, base, patch string
		objName           string // default row-<i>
		want              string // "" means accepted
	}{
		{name: "interval below 1s", base: "tmpl", patch: prom("interval: 999ms"), want: v1alpha1.MessageInterval},
		{name: "interval 0s", base: "tmpl", patch: prom("interval: 0s"), want: v1alpha1.MessageInterval},
		{name: "interval 1s", base: "tmpl", patch: prom("interval: 1s")},
		{name: "interval 0.5m", base: "tmpl", patch: prom("interval: 0.5m")},
		{name: "run interval below 1s", base: "run", patch: prom("interval: 100ms"), want: v1alpha1.MessageInterval},
		{name: "run interval 1s", base: "run", patch: prom("interval: 1s")},

		{name: "prometheus timeout 61s", base: "tmpl", patch: withTimeout("prometheus", "61s"), want: v1alpha1.MessageTimeout},
		{name: "prometheus timeout 60s", base: "tmpl", patch: withTimeout("prometheus", "60s")},
		{name: "web timeout 1m0.5s", base: "tmpl", patch: withTimeout("web", "1m0.5s"), want: v1alpha1.MessageTimeout},
		{name: "web timeout 1m", base: "tmpl", patch: withTimeout("web", "1m")},
		{name: "judge timeout 2m", base: "tmpl", patch: withTimeout("judge", "2m"), want: v1alpha1.MessageTimeout},
		{name: "judge timeout 60000ms", base: "tmpl", patch: withTimeout("judge", "60000ms")},
		{name: "run web timeout 5m", base: "run", patch: withTimeout("web", "5m"), want: v1alpha1.MessageTimeout},

		{name: "measurementRetention 101", base: "tmpl", patch: retention(101), want: v1alpha1.MessageRetention},
		{name: "measurementRetention 100", base: "tmpl", patch: retention(100)},
		{name: "run measurementRetention 1000", base: "run", patch: retention(1000), want: v1alpha1.MessageRetention},
		{name: "experiment measurementRetention 101", base: "exp", patch: retention(101), want: v1alpha1.MessageRetention},
		{name: "experiment measurementRetention 100", base: "exp", patch: retention(100)},

		{name: "job activeDeadlineSeconds 601", base: "tmpl", patch: jobMetric("activeDeadlineSeconds: 601, "), want: v1alpha1.MessageJobDeadline},
		{name: "job activeDeadlineSeconds 600", base: "tmpl", patch: jobMetric("activeDeadlineSeconds: 600, ")},
		{name: "job without activeDeadlineSeconds", base: "tmpl", patch: jobMetric("")},
		{name: "run job activeDeadlineSeconds 3600", base: "run", patch: jobMetric("activeDeadlineSeconds: 3600, "), want: v1alpha1.MessageJobDeadline},

		{name: "Rollout name of 53 characters", base: "min", patch: "{}", objName: strings.Repeat("r", 53), want: v1alpha1.MessageRolloutNameLen},
		{name: "Rollout name of 52 characters", base: "min", patch: "{}", objName: strings.Repeat("r", 52)},
		{name: "blue-green Rollout name of 60 characters", base: "bg", patch: "{}", objName: "bg-" + strings.Repeat("x", 57), want: v1alpha1.MessageRolloutNameLen},
	}
	ns := env.Namespace(t)
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			var doc []byte
			switch row.base {
			case "run":
				doc = patchedDoc(t, []byte(minimalRun), row.patch)
			case "exp":
				doc = patchedDoc(t, readDocs(t, filepath.Join(examplesDir(), "experiment.yaml"))[0], row.patch)
			default:
				doc = patched(t, row.base, row.patch)
			}
			obj := toObject(t, doc, ns)
			obj.SetName(fmt.Sprintf("row-%d", i))
			if row.objName != "" {
				obj.SetName(row.objName)
			}
			err := env.Client.Create(context.Background(), obj)
			switch {
			case row.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case row.want != "" && err == nil:
				t.Fatalf("accepted; want rejection with %q", row.want)
			case row.want != "" && !strings.Contains(err.Error(), row.want):
				t.Fatalf("rejected with\n  %v\nwant a message containing\n  %q", err, row.want)
			}
		})
	}
}
