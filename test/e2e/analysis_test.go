//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/podsim"
)

// maxErrorRate is what the analysis tolerates; failingShare is the share of
// 500s a broken version answers, far above it. analysisInterval and
// analysisDelay are the metric's interval and initialDelay.
const (
	maxErrorRate     = 0.05
	failingShare     = 0.5
	analysisInterval = time.Second
	analysisDelay    = 2 * time.Second
)

// errorRateTemplate is an AnalysisTemplate measuring, every second, the share
// of 5xx answers of the pods of one template hash in one namespace, from the
// pods' counts of the requests they answered, through a real Prometheus.
// count 0 measures until the run is terminated. The initial delay gives Prometheus the two
// scrapes of a new pod that rate() needs; before them the query is empty,
// which counts as an Error measurement.
func errorRateTemplate(prometheus string, count int) string {
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: hash}, {name: namespace}]
  metrics:
  - name: error-rate
    interval: %s
    initialDelay: %s
    count: %d
    successCondition: "result[0] < %g"
    provider:
      prometheus:
        address: %s
        query: |
          sum(rate(%[6]s{namespace="{{args.namespace}}",pod_template_hash="{{args.hash}}",code=~"5.."}[5s]))
          /
          sum(rate(%[6]s{namespace="{{args.namespace}}",pod_template_hash="{{args.hash}}"}[5s]))
`, analysisInterval, analysisDelay, count, maxErrorRate, prometheus, podsim.RequestsMetric)
}

// errorRateArgs pass the template the new version's hash and the Rollout's
// namespace.
const (
	errorRateArgs     = `[{name: hash, valueFrom: {podTemplateHashValue: Latest}}, {name: namespace, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]`
	errorRateAnalysis = `{templates: [{templateName: error-rate}], args: ` + errorRateArgs + `}`
)

// TestAnalysis runs Rollouts whose pods answer real requests, and whose
// analysis queries a real Prometheus that scrapes the pods' request
// counters, and flips versions to failing. The pod simulator and
// Prometheus are shared; series carry the test's namespace.
func TestAnalysis(t *testing.T) {
	t.Parallel()
	withTraffic(t,
		trafficCase{"CanaryStepPasses", canaryStepPasses},
		trafficCase{"CanaryStepFailsMidway", canaryStepFailsMidway},
		trafficCase{"BlueGreenPrePromotionFails", blueGreenPrePromotionFails},
		trafficCase{"CanaryBackgroundFailsWhilePaused", canaryBackgroundFailsWhilePaused},
	)
}

// canaryStepPasses: the analysis step holds the update at 20 % while it
// measures; three good measurements promote it.
func canaryStepPasses(t *testing.T, prom string) {
	ns := namespace(t)
	serve(t, ns)
	steps := fmt.Sprintf("[{setWeight: 20}, {analysis: %s}, {setWeight: 50}]", errorRateAnalysis)
	cl.MustKubectl(t, canaryServices+"---"+errorRateTemplate(prom, 3)+"---"+canaryRolloutYAML(5, steps), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 5/5")
	if runs := cl.MustKubectl(t, "", "-n", ns, "get", "ar", "-o", "name"); strings.TrimSpace(runs) != "" {
		t.Errorf("the first deploy ran analysis: %s", runs)
	}

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Progressing 1", "web:1 4/4, web:2 1/1")
	ro := getRollout(t, ns)
	if ro.Status.Canary.CurrentStepAnalysisRun == nil {
		t.Fatalf("no status.canary.currentStepAnalysisRun at the analysis step: %+v", ro.Status.Canary)
	}
	runName, hash := ro.Status.Canary.CurrentStepAnalysisRun.Name, ro.Status.CurrentPodHash
	waitFor(t, ns, "Healthy 3", "web:2 5/5")
	if got := stableAndCanary(t, ns); got != "web:2,web:2" {
		t.Errorf("Services select %v, want both on web:2", got)
	}

	run := getAnalysisRun(t, ns, runName)
	query := run.Spec.Metrics[0].Provider.Prometheus.Query
	for _, want := range []string{`namespace="` + ns + `"`, `pod_template_hash="` + hash + `"`} {
		if !strings.Contains(query, want) {
			t.Errorf("the run's query lacks %s:\n%s", want, query)
		}
	}
	if run.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Fatalf("AnalysisRun %s is %s (%s), want Successful", runName, run.Status.Phase, run.Status.Message)
	}
	mr := onlyMetric(t, run)
	if mr.Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Count != 3 || mr.Successful != 3 || mr.Failed != 0 {
		t.Errorf("metric %s: phase %s, count %d, successful %d, failed %d; want Successful 3/3/0", mr.Name, mr.Phase, mr.Count, mr.Successful, mr.Failed)
	}
	good := 0
	for _, m := range mr.Measurements {
		if m.Phase != v1alpha1.AnalysisPhaseSuccessful {
			continue
		}
		good++
		if v, ok := measuredValue(m); !ok || v >= maxErrorRate {
			t.Errorf("successful measurement with value %q, want a number below %g", m.Value, maxErrorRate)
		}
	}
	if good != 3 {
		t.Errorf("%d successful measurements retained, want 3: %+v", good, mr.Measurements)
	}
	checkTiming(t, run, mr.Measurements)
	t.Logf("AnalysisRun %s measured %s", runName, measurementSummary(mr.Measurements))
}

// canaryStepFailsMidway: the canary starts answering 500s after the first
// good measurement; the next one fails the analysis, which aborts the
// update at once and says why.
func canaryStepFailsMidway(t *testing.T, prom string) {
	ns := namespace(t)
	serve(t, ns)
	steps := fmt.Sprintf("[{setWeight: 20}, {analysis: %s}, {setWeight: 50}]", errorRateAnalysis)
	// Many measurements: the run must still be going when the canary breaks.
	cl.MustKubectl(t, canaryServices+"---"+errorRateTemplate(prom, 30)+"---"+canaryRolloutYAML(5, steps), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 5/5")

	setImage(t, ns, "web:2")
	runName := waitForGoodMeasurement(t, ns, func(ro *v1alpha1.Rollout) *v1alpha1.RunStatus { return ro.Status.Canary.CurrentStepAnalysisRun })
	setBehaviour(t, ns, "web:2", podsim.Behaviour{ErrorShare: failingShare})

	waitFor(t, ns, "Degraded 1", "web:1 5/5")
	ro := getRollout(t, ns)
	checkAbortedByRun(t, ro, runName)
	if w := ro.Status.Canary.Weights; w == nil || w.Canary.Weight != 0 {
		t.Errorf("status.canary.weights = %+v, want canary weight 0", w)
	}
	if got := stableAndCanary(t, ns); got != "web:1,web:1" {
		t.Errorf("after the abort Services select %v, want both on web:1", got)
	}
	events := cl.MustKubectl(t, "", "-n", ns, "get", "events", "--field-selector", "involvedObject.kind=Rollout", "-o", "jsonpath={.items[*].reason}")
	if !strings.Contains(events, v1alpha1.ReasonAnalysisRunFailed) {
		t.Errorf("no %s event; events: %s", v1alpha1.ReasonAnalysisRunFailed, events)
	}
}

const blueGreenAnalysisYAML = `
apiVersion: v1
kind: Service
metadata: {name: web-active}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-preview}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      abortScaleDownDelaySeconds: 2
      prePromotionAnalysis: ` + errorRateAnalysis + `
`

// blueGreenPrePromotionFails: the preview serves the new version while the
// pre-promotion analysis measures it; once it fails the update aborts and
// the active Service never leaves the stable version.
func blueGreenPrePromotionFails(t *testing.T, prom string) {
	ns := namespace(t)
	serve(t, ns)
	cl.MustKubectl(t, errorRateTemplate(prom, 30)+"---"+blueGreenAnalysisYAML, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy", "web:1 3/3")
	stableHash := getRollout(t, ns).Status.StableRS
	active := watchSelector(t, ns, "web-active")

	setImage(t, ns, "web:2")
	runName := waitForGoodMeasurement(t, ns, func(ro *v1alpha1.Rollout) *v1alpha1.RunStatus { return ro.Status.BlueGreen.PrePromotionAnalysisRun })
	if got := serviceImages(t, ns, "web-active", "web-preview"); strings.Join(got, ",") != "web:1,web:2" {
		t.Errorf("during pre-promotion analysis active,preview = %v; want web:1,web:2", got)
	}
	newHash := getRollout(t, ns).Status.CurrentPodHash
	setBehaviour(t, ns, "web:2", podsim.Behaviour{ErrorShare: failingShare})

	// The new ReplicaSet goes after abortScaleDownDelaySeconds.
	waitFor(t, ns, "Degraded", "web:1 3/3")
	ro := getRollout(t, ns)
	failed := checkAbortedByRun(t, ro, runName)
	checkRunStatus(t, "status.blueGreen.prePromotionAnalysisRun", ro.Status.BlueGreen.PrePromotionAnalysisRun, runName, failed)
	if ro.Status.BlueGreen.ActiveSelector != stableHash {
		t.Errorf("status.blueGreen.activeSelector %q, want the stable hash %q", ro.Status.BlueGreen.ActiveSelector, stableHash)
	}
	if got := serviceImages(t, ns, "web-active"); got[0] != "web:1" {
		t.Errorf("active Service selects %v after the abort, want web:1", got)
	}
	if took := active(); slices.Contains(took, newHash) {
		t.Errorf("the active Service selected the new hash %s at some point; it took %v", newHash, took)
	}
}

// canaryBackgroundFailsWhilePaused: background analysis keeps measuring
// while the update waits at an indefinite pause; the canary breaking then
// aborts the update without any promote.
func canaryBackgroundFailsWhilePaused(t *testing.T, prom string) {
	ns := namespace(t)
	serve(t, ns)
	// steps is the last field of spec.strategy.canary: add analysis after it.
	rollout := canaryRolloutYAML(5, "[{setWeight: 20}, {pause: {}}]") +
		"      analysis: {templates: [{templateName: error-rate}], startingStep: 1, args: " + errorRateArgs + "}\n"
	cl.MustKubectl(t, canaryServices+"---"+errorRateTemplate(prom, 0)+"---"+rollout, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 5/5")

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 4/4, web:2 1/1")
	runName := waitForGoodMeasurement(t, ns, func(ro *v1alpha1.Rollout) *v1alpha1.RunStatus { return ro.Status.Canary.CurrentBackgroundAnalysisRun })
	if st := rolloutStatus(context.Background(), ns); st != "Paused 1" {
		t.Fatalf("rollout left the pause by itself while the analysis passed: %q", st)
	}
	setBehaviour(t, ns, "web:2", podsim.Behaviour{ErrorShare: failingShare})

	waitFor(t, ns, "Degraded 1", "web:1 5/5")
	ro := getRollout(t, ns)
	failed := checkAbortedByRun(t, ro, runName)
	checkRunStatus(t, "status.canary.currentBackgroundAnalysisRun", ro.Status.Canary.CurrentBackgroundAnalysisRun, runName, failed)
	if w := ro.Status.Canary.Weights; w == nil || w.Canary.Weight != 0 {
		t.Errorf("status.canary.weights = %+v, want canary weight 0", w)
	}
	if got := stableAndCanary(t, ns); got != "web:1,web:1" {
		t.Errorf("after the abort Services select %v, want both on web:1", got)
	}
}

// waitForGoodMeasurement waits until the Rollout points at an AnalysisRun
// (through run) that has a successful measurement, and returns its name.
func waitForGoodMeasurement(t *testing.T, ns string, run func(*v1alpha1.Rollout) *v1alpha1.RunStatus) string {
	t.Helper()
	var name string
	eventually(t, 60*time.Second, "an AnalysisRun with a successful measurement", func(ctx context.Context) (bool, string) {
		var ro v1alpha1.Rollout
		if err := kubectlJSON(ctx, ns, &ro, "ro", "web"); err != nil {
			return false, err.Error()
		}
		rs := run(&ro)
		if rs == nil {
			return false, fmt.Sprintf("no AnalysisRun in the status; phase %s: %s", ro.Status.Phase, ro.Status.Message)
		}
		name = rs.Name
		var ar v1alpha1.AnalysisRun
		if err := kubectlJSON(ctx, ns, &ar, "ar", name); err != nil {
			return false, err.Error()
		}
		for _, mr := range ar.Status.MetricResults {
			if mr.Successful > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("AnalysisRun %s is %s: %+v", name, ar.Status.Phase, ar.Status.MetricResults)
	})
	return name
}

// checkAbortedByRun checks that the run failed on a measurement whose value
// is above the limit, after a good one, and that the Rollout aborted saying
// why. It returns the failing measurement.
func checkAbortedByRun(t *testing.T, ro *v1alpha1.Rollout, name string) v1alpha1.Measurement {
	t.Helper()
	run, mr, last := checkFailedRun(t, ro, name)
	if mr.Successful < 1 {
		t.Errorf("metric %s: %d successful measurements, want the failure after at least one success", mr.Name, mr.Successful)
	}
	first := verdicts(mr)[0]
	if v, ok := measuredValue(first); first.Phase != v1alpha1.AnalysisPhaseSuccessful || !ok || v >= maxErrorRate {
		t.Errorf("first measurement %s with value %q, want Successful below %g", first.Phase, first.Value, maxErrorRate)
	}
	checkTiming(t, run, mr.Measurements)
	return last
}

// checkFailedRun checks that the run failed on its last measurement, whose
// value is at or above maxErrorRate, and that the Rollout aborted saying
// why. It returns the run, its metric and the failing measurement.
func checkFailedRun(t *testing.T, ro *v1alpha1.Rollout, name string) (*v1alpha1.AnalysisRun, v1alpha1.MetricResult, v1alpha1.Measurement) {
	t.Helper()
	if !ro.Status.Abort {
		t.Error("status.abort is false after the analysis failed")
	}
	if got := conditionReason(ro, "Degraded"); got != v1alpha1.ReasonRolloutAborted {
		t.Errorf("Degraded reason %q, want %s", got, v1alpha1.ReasonRolloutAborted)
	}
	run := getAnalysisRun(t, ro.Namespace, name)
	if run.Status.Phase != v1alpha1.AnalysisPhaseFailed {
		t.Fatalf("AnalysisRun %s is %s (%s), want Failed", name, run.Status.Phase, run.Status.Message)
	}
	mr := onlyMetric(t, run)
	if mr.Phase != v1alpha1.AnalysisPhaseFailed || mr.Failed != 1 {
		t.Errorf("metric %s: phase %s, failed %d; want Failed after one failure", mr.Name, mr.Phase, mr.Failed)
	}
	vs := verdicts(mr)
	if len(vs) == 0 {
		t.Fatalf("want a failed measurement, got %+v", mr.Measurements)
	}
	last := vs[len(vs)-1]
	if v, ok := measuredValue(last); last.Phase != v1alpha1.AnalysisPhaseFailed || !ok || v < maxErrorRate {
		t.Fatalf("last measurement %s with value %q, want Failed at or above %g", last.Phase, last.Value, maxErrorRate)
	}
	if !strings.Contains(run.Status.Message, last.Value) {
		t.Errorf("AnalysisRun message %q lacks the failing value %s", run.Status.Message, last.Value)
	}
	if !strings.Contains(ro.Status.Message, last.Value) {
		t.Errorf("Rollout message %q lacks the failing value %s", ro.Status.Message, last.Value)
	}
	// How fast the abort follows is measured by make bench and, on real
	// traffic, by TestDataPlaneAnalysis.
	if ro.Status.AbortedAt == nil {
		t.Error("status.abortedAt is not set")
	}
	t.Logf("AnalysisRun %s measured %s; Rollout message: %s", name, measurementSummary(mr.Measurements), ro.Status.Message)
	return run, mr, last
}

// verdicts are the retained measurements of a metric that reached a
// verdict (not Error).
func verdicts(mr v1alpha1.MetricResult) []v1alpha1.Measurement {
	var out []v1alpha1.Measurement
	for _, m := range mr.Measurements {
		if m.Phase != v1alpha1.AnalysisPhaseError {
			out = append(out, m)
		}
	}
	return out
}

// checkRunStatus checks the Rollout's pointer at a failed run: its name,
// phase and a message with the failing value.
func checkRunStatus(t *testing.T, field string, rs *v1alpha1.RunStatus, name string, failed v1alpha1.Measurement) {
	t.Helper()
	switch {
	case rs == nil:
		t.Errorf("%s is empty after the abort", field)
	case rs.Name != name || rs.Phase != v1alpha1.AnalysisPhaseFailed || !strings.Contains(rs.Message, failed.Value):
		t.Errorf("%s = %+v, want %s Failed with a message carrying %s", field, *rs, name, failed.Value)
	}
}

// checkTiming: the first measurement waits for the initial delay, each next
// one starts at least one interval after the previous one finished.
func checkTiming(t *testing.T, run *v1alpha1.AnalysisRun, ms []v1alpha1.Measurement) {
	t.Helper()
	if len(ms) == 0 || ms[0].StartedAt == nil || run.Status.StartedAt == nil {
		t.Errorf("AnalysisRun %s lacks a start time or measurements", run.Name)
		return
	}
	// startedAt has whole seconds, cut down: the delay only looks longer.
	if d := ms[0].StartedAt.Sub(run.Status.StartedAt.Time); d < analysisDelay {
		t.Errorf("first measurement %s after the run started, want at least the initial delay %s", d, analysisDelay)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].StartedAt == nil || ms[i-1].FinishedAt == nil {
			t.Errorf("measurement %d lacks times: %+v", i, ms[i])
			continue
		}
		if gap := ms[i].StartedAt.Sub(ms[i-1].FinishedAt.Time); gap < analysisInterval {
			t.Errorf("measurement %d started %s after the previous one finished, want at least %s", i, gap, analysisInterval)
		}
	}
}

// measurementSummary lists phase=value of each measurement.
func measurementSummary(ms []v1alpha1.Measurement) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s=%s", m.Phase, m.Value))
	}
	return strings.Join(parts, " ")
}

func onlyMetric(t *testing.T, run *v1alpha1.AnalysisRun) v1alpha1.MetricResult {
	t.Helper()
	if len(run.Status.MetricResults) != 1 {
		t.Fatalf("AnalysisRun %s has %d metric results, want 1: %+v", run.Name, len(run.Status.MetricResults), run.Status.MetricResults)
	}
	return run.Status.MetricResults[0]
}

// measuredValue reads the value of a one-element vector result.
func measuredValue(m v1alpha1.Measurement) (float64, bool) {
	var v []float64
	if err := json.Unmarshal([]byte(m.Value), &v); err != nil || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

func conditionReason(ro *v1alpha1.Rollout, condition string) string {
	for _, c := range ro.Status.Conditions {
		if c.Type == condition {
			return c.Reason
		}
	}
	return ""
}

// kubectlJSON gets one object of ns as JSON into out.
func kubectlJSON(ctx context.Context, ns string, out any, args ...string) error {
	cmd := exec.CommandContext(ctx, cl.Bin("kubectl"), append([]string{"--kubeconfig", cl.Kubeconfig, "-n", ns, "get", "-o", "json"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("kubectl get %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return json.Unmarshal(b, out)
}

func getRollout(t *testing.T, ns string) *v1alpha1.Rollout {
	t.Helper()
	var ro v1alpha1.Rollout
	if err := kubectlJSON(context.Background(), ns, &ro, "ro", "web"); err != nil {
		t.Fatal(err)
	}
	return &ro
}

func getAnalysisRun(t *testing.T, ns, name string) *v1alpha1.AnalysisRun {
	t.Helper()
	var run v1alpha1.AnalysisRun
	if err := kubectlJSON(context.Background(), ns, &run, "ar", name); err != nil {
		t.Fatal(err)
	}
	return &run
}

// watchSelector records every pod-template-hash the Service's selector
// takes from now on, through a kubectl watch. The returned function lists
// them, and fails the test if the watch ended early and may have missed one.
func watchSelector(t *testing.T, ns, service string) func() []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, cl.Bin("kubectl"), "--kubeconfig", cl.Kubeconfig, "-n", ns, "get", "svc", service, "--watch",
		"-o", `jsonpath={.spec.selector.rollouts\.kubeseed\.io/pod-template-hash}{"\n"}`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		hashes []string
	)
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			mu.Lock()
			hashes = append(hashes, s.Text())
			if len(hashes) == 1 {
				close(first)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
	})
	select {
	case <-first:
	case <-done:
		t.Fatalf("watching Service %s ended at once", service)
	case <-time.After(30 * time.Second):
		t.Fatalf("watching Service %s: no initial state", service)
	}
	return func() []string {
		t.Helper()
		select {
		case <-done:
			t.Errorf("the watch of Service %s ended early", service)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), hashes...)
	}
}
