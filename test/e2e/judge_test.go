//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/analysis/judge"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/podsim"
)

// The judge compares judgeWindow of latency points, one per judgeStep,
// once judgeDelay after the experiment's pods are available — the window
// is full by then. A point is the median time the pods took to answer
// their requests over the last latencyRange: the median, as a stall of the
// shared machine delays a few answers by far more than the latencies
// compared, and a range of several scrapes, as such a stall can also leave
// a pod without requests, or Prometheus without a sample, for a few
// seconds (a 3 s range once left 4 points of 21). The stable version answers in baseLatency; a slower canary
// takes slowdown times as long.
const (
	judgeWindow  = 20 * time.Second
	judgeStep    = time.Second
	judgeDelay   = 20 * time.Second
	latencyRange = 6 * time.Second
	baseLatency  = 200 * time.Millisecond
	slowdown     = 1.4
	// minJudgePoints is how many points each side must have at least: the
	// window holds 21, less those before Prometheus had two samples of the
	// pods' first answers.
	minJudgePoints = 15
	judgePass      = 95
	judgeMarginal  = 75
)

// judgeTemplate is an AnalysisTemplate that judges, once, the median
// latency of the canary template's pods' answers against the baseline
// template's, both picked by pod template hash in one namespace. The
// effect-size gate (a High needs the canary's mean above 1.2 times the
// baseline's) keeps equal distributions from failing by chance: the
// interval and tolerance alone call about 1 in 800 such comparisons of 20
// points High, the gate about none, and a 40 % slowdown is still High.
func judgeTemplate(prometheus string) string {
	latency := func(hash string) string {
		return fmt.Sprintf(`histogram_quantile(0.5, sum by (le) (rate(%s_bucket{namespace="{{args.namespace}}",pod_template_hash="{{args.%s}}"}[%s])))`,
			podsim.DurationMetric, hash, latencyRange)
	}
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: judge}
spec:
  args: [{name: baseline-hash}, {name: canary-hash}, {name: namespace}]
  metrics:
  - name: judge
    initialDelay: %s
    count: 1
    provider:
      judge:
        address: %s
        window: {start: %s, step: %s}
        thresholds: {pass: %d, marginal: %d}
        metrics:
        - name: latency
          direction: increase
          effectSize: {measure: meanRatio, allowedIncrease: "1.2"}
          canaryQuery: '%s'
          baselineQuery: '%s'
`, judgeDelay, prometheus, judgeWindow, judgeStep, judgePass, judgeMarginal, latency("canary-hash"), latency("baseline-hash"))
}

// judgeSteps run, after a first 20 %, an experiment of one stable and one
// canary pod judged by the judge template, without a duration: it ends
// with its analysis.
const judgeSteps = `
      - setWeight: 20
      - experiment:
          templates:
          - {name: baseline, specRef: stable, replicas: 1}
          - {name: canary, specRef: canary, replicas: 1}
          analyses:
          - name: judge
            templateName: judge
            requiredForCompletion: true
            args:
            - {name: baseline-hash, value: "{{templates.baseline.podTemplateHash}}"}
            - {name: canary-hash, value: "{{templates.canary.podTemplateHash}}"}
            - {name: namespace, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
      - setWeight: 60`

// TestJudge runs canary updates whose experiment step starts a baseline and
// a canary side by side, both answering real requests, and judges their
// latency, as the pods measured it, through a real Prometheus with the
// statistical judge.
func TestJudge(t *testing.T) {
	t.Parallel()
	withTraffic(t,
		trafficCase{"SlowerCanaryAborts", slowerCanaryAborts},
		trafficCase{"EqualCanaryPromotes", equalCanaryPromotes},
	)
}

// slowerCanaryAborts: the experiment's canary is 40 % slower than its
// baseline; the judge classifies latency High and scores 0, which fails the
// experiment and aborts the update, naming the Experiment.
func slowerCanaryAborts(t *testing.T, prom string) {
	ns, ex := startJudgedUpdate(t, prom, time.Duration(float64(baseLatency)*slowdown))

	waitForRollout(t, ns, "Degraded 1", "web:1 5/5")
	ro := getRollout(t, ns)
	ex = getExperiment(t, ns, ex.Name)
	runName := experimentRun(t, ex)
	if ex.Status.Phase != v1alpha1.AnalysisPhaseFailed || !strings.Contains(ex.Status.Message, runName) {
		t.Errorf("Experiment %s is %s (%s), want Failed naming AnalysisRun %s", ex.Name, ex.Status.Phase, ex.Status.Message, runName)
	}
	m, res := judgment(t, ns, runName, v1alpha1.AnalysisPhaseFailed)
	latency := res.Metrics[0]
	if res.Score != 0 || latency.Classification != judge.High || latency.CILower <= 0 {
		t.Errorf("judged score %g, latency %s with interval %g..%g; want 0 and High above 0", res.Score, latency.Classification, latency.CILower, latency.CIUpper)
	}
	if latency.MeanRatio < 1.25 || latency.MeanRatio > 1.55 {
		t.Errorf("latency mean ratio %g, want about %g", latency.MeanRatio, slowdown)
	}

	if !ro.Status.Abort || conditionReason(ro, "Degraded") != v1alpha1.ReasonRolloutAborted {
		t.Errorf("status.abort %v, Degraded reason %q; want true and %s", ro.Status.Abort, conditionReason(ro, "Degraded"), v1alpha1.ReasonRolloutAborted)
	}
	if want := "Experiment " + ex.Name + " Failed"; !strings.Contains(ro.Status.Message, want) {
		t.Errorf("Rollout message %q does not say %q", ro.Status.Message, want)
	}
	if ce := ro.Status.Canary.CurrentExperiment; ce == nil || ce.Name != ex.Name || ce.Phase != v1alpha1.AnalysisPhaseFailed {
		t.Errorf("status.canary.currentExperiment = %+v, want %s Failed", ce, ex.Name)
	}
	if w := ro.Status.Canary.Weights; w == nil || w.Canary.Weight != 0 {
		t.Errorf("status.canary.weights = %+v, want canary weight 0", w)
	}
	if got := stableAndCanary(t, ns); got != "web:1,web:1" {
		t.Errorf("after the abort Services select %v, want both on web:1", got)
	}
	events := cl.MustKubectl(t, "", "-n", ns, "get", "events", "--field-selector", "involvedObject.kind=Rollout,reason="+v1alpha1.ReasonAnalysisRunFailed, "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, ex.Name) {
		t.Errorf("no %s event naming Experiment %s; messages: %q", v1alpha1.ReasonAnalysisRunFailed, ex.Name, events)
	}
	if ro.Status.AbortedAt == nil {
		t.Error("status.abortedAt is not set")
	}
	t.Logf("judged %s; Rollout message: %s", m.Value, ro.Status.Message)
}

// equalCanaryPromotes: baseline and canary answer as fast as each other; the judge passes latency and scores 100, the experiment
// succeeds, and the update goes on to the end.
func equalCanaryPromotes(t *testing.T, prom string) {
	ns, ex := startJudgedUpdate(t, prom, baseLatency)

	waitForRollout(t, ns, "Healthy 3", "web:2 5/5")
	ro := getRollout(t, ns)
	ex = getExperiment(t, ns, ex.Name)
	runName := experimentRun(t, ex)
	if ex.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("Experiment %s is %s (%s), want Successful", ex.Name, ex.Status.Phase, ex.Status.Message)
	}
	m, res := judgment(t, ns, runName, v1alpha1.AnalysisPhaseSuccessful)
	latency := res.Metrics[0]
	if res.Score != 100 || latency.Classification != judge.Pass {
		t.Errorf("judged score %g, latency %s (%s); want 100 and Pass", res.Score, latency.Classification, latency.Reason)
	}
	if latency.MeanRatio < 0.9 || latency.MeanRatio > 1.1 {
		t.Errorf("latency mean ratio %g, want about 1", latency.MeanRatio)
	}

	if ro.Status.Abort || ro.Status.StableRS != ro.Status.CurrentPodHash {
		t.Errorf("status.abort %v, stable %s, current %s; want not aborted and the new version stable", ro.Status.Abort, ro.Status.StableRS, ro.Status.CurrentPodHash)
	}
	if got := stableAndCanary(t, ns); got != "web:2,web:2" {
		t.Errorf("Services select %v, want both on web:2", got)
	}
	t.Logf("judged %s", m.Value)
}

// startJudgedUpdate deploys web:1, sets the latencies of web:1 and web:2,
// updates to web:2 and waits until the experiment step has started its
// Experiment with both templates available. It checks the Experiment
// belongs to the Rollout and runs its own ReplicaSets, one per template,
// and that the judge's queries pick their pods.
func startJudgedUpdate(t *testing.T, prom string, canaryLatency time.Duration) (string, *v1alpha1.Experiment) {
	t.Helper()
	ns := namespace(t)
	serve(t, ns)
	setBehaviour(t, ns, "web:1", podsim.Behaviour{Latency: baseLatency})
	setBehaviour(t, ns, "web:2", podsim.Behaviour{Latency: canaryLatency})
	cl.MustKubectl(t, canaryServices+"---"+judgeTemplate(prom)+"---"+canaryRolloutYAML(5, judgeSteps), "-n", ns, "apply", "-f", "-")
	waitForRollout(t, ns, "Healthy 3", "web:1 5/5")
	if out := cl.MustKubectl(t, "", "-n", ns, "get", "exp", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("the first deploy ran an experiment: %s", out)
	}

	setImage(t, ns, "web:2")
	var ex v1alpha1.Experiment
	eventually(t, 60*time.Second, "an available Experiment", func(ctx context.Context) (bool, string) {
		var ro v1alpha1.Rollout
		if err := kubectlJSON(ctx, ns, &ro, "ro", "web"); err != nil {
			return false, err.Error()
		}
		ce := ro.Status.Canary.CurrentExperiment
		if ce == nil {
			return false, fmt.Sprintf("no current experiment; phase %s: %s", ro.Status.Phase, ro.Status.Message)
		}
		if err := kubectlJSON(ctx, ns, &ex, "exp", ce.Name); err != nil {
			return false, err.Error()
		}
		return ex.Status.AvailableAt != nil, fmt.Sprintf("Experiment %s is %s: %s", ex.Name, ex.Status.Phase, ex.Status.Message)
	})
	// The analysis waits judgeDelay: the step holds the update at 20 %.
	waitForRollout(t, ns, "Progressing 1", "web:1 4/4, web:2 1/1")
	ro := getRollout(t, ns)
	checkExperimentOwner(t, ro, &ex)
	hashes := checkExperimentReplicaSets(t, ro, &ex)

	run := getAnalysisRun(t, ns, experimentRun(t, &ex))
	if len(run.Spec.Metrics) != 1 || run.Spec.Metrics[0].Provider.Judge == nil || len(run.Spec.Metrics[0].Provider.Judge.Metrics) != 1 {
		t.Fatalf("AnalysisRun %s does not hold the judge template's metric: %+v", run.Name, run.Spec.Metrics)
	}
	q := run.Spec.Metrics[0].Provider.Judge.Metrics[0]
	for query, hash := range map[string]string{q.CanaryQuery: hashes["canary"], q.BaselineQuery: hashes["baseline"]} {
		for _, want := range []string{`namespace="` + ns + `"`, `pod_template_hash="` + hash + `"`} {
			if !strings.Contains(query, want) {
				t.Errorf("the run's query lacks %s:\n%s", want, query)
			}
		}
	}
	return ns, &ex
}

// checkExperimentOwner: the Experiment is named after the Rollout, its new
// hash and the step, and the Rollout controls it.
func checkExperimentOwner(t *testing.T, ro *v1alpha1.Rollout, ex *v1alpha1.Experiment) {
	t.Helper()
	if want := fmt.Sprintf("web-%s-1", ro.Status.CurrentPodHash); ex.Name != want {
		t.Errorf("Experiment %s, want %s", ex.Name, want)
	}
	owner := metav1.GetControllerOf(ex)
	if owner == nil || owner.Kind != "Rollout" || owner.Name != ro.Name || owner.UID != ro.UID {
		t.Errorf("Experiment %s is controlled by %+v, want Rollout %s (%s)", ex.Name, owner, ro.Name, ro.UID)
	}
	if got := ex.Labels[v1alpha1.RolloutLabel]; got != ro.Name {
		t.Errorf("Experiment %s has label %s=%q, want %q", ex.Name, v1alpha1.RolloutLabel, got, ro.Name)
	}
}

// checkExperimentReplicaSets: one ReplicaSet per template, controlled by the
// Experiment, running the stable (baseline) or new (canary) image with a
// pod template hash of its own, as the Experiment's status reports it. It
// returns the hashes by template.
func checkExperimentReplicaSets(t *testing.T, ro *v1alpha1.Rollout, ex *v1alpha1.Experiment) map[string]string {
	t.Helper()
	var rss appsv1.ReplicaSetList
	if err := kubectlJSON(context.Background(), ex.Namespace, &rss, "rs", "-l", v1alpha1.ExperimentLabel+"="+ex.Name); err != nil {
		t.Fatal(err)
	}
	images := map[string]string{"baseline": "web:1", "canary": "web:2"}
	hashes := map[string]string{}
	for _, rs := range rss.Items {
		template := rs.Labels[v1alpha1.ExperimentTemplateLabel]
		hash := rs.Spec.Template.Labels[v1alpha1.PodTemplateHashLabel]
		hashes[template] = hash
		if owner := metav1.GetControllerOf(&rs); owner == nil || owner.Kind != "Experiment" || owner.UID != ex.UID {
			t.Errorf("ReplicaSet %s is controlled by %+v, want Experiment %s", rs.Name, owner, ex.Name)
		}
		if image := rs.Spec.Template.Spec.Containers[0].Image; image != images[template] {
			t.Errorf("ReplicaSet %s of template %q runs %s, want %s", rs.Name, template, image, images[template])
		}
		if rs.Status.ReadyReplicas != 1 {
			t.Errorf("ReplicaSet %s has %d ready pods, want 1", rs.Name, rs.Status.ReadyReplicas)
		}
	}
	if len(rss.Items) != 2 || len(hashes) != 2 {
		t.Fatalf("Experiment %s has ReplicaSets of templates %v, want baseline and canary", ex.Name, hashes)
	}
	own := map[string]bool{ro.Status.StableRS: true, ro.Status.CurrentPodHash: true}
	if hashes["baseline"] == hashes["canary"] || own[hashes["baseline"]] || own[hashes["canary"]] {
		t.Errorf("template hashes %v, want distinct from each other and from the Rollout's %s, %s", hashes, ro.Status.StableRS, ro.Status.CurrentPodHash)
	}
	for _, ts := range ex.Status.TemplateStatuses {
		if ts.PodTemplateHash != hashes[ts.Name] {
			t.Errorf("status.templateStatuses[%s].podTemplateHash %q, ReplicaSet has %q", ts.Name, ts.PodTemplateHash, hashes[ts.Name])
		}
	}
	return hashes
}

// judgment checks that the run ended in phase after one judgment, made
// once the window was full and on enough points, and returns it.
func judgment(t *testing.T, ns, runName string, phase v1alpha1.AnalysisPhase) (v1alpha1.Measurement, analysis.JudgeResult) {
	t.Helper()
	run := getAnalysisRun(t, ns, runName)
	if run.Status.Phase != phase {
		t.Fatalf("AnalysisRun %s is %s (%s), want %s", runName, run.Status.Phase, run.Status.Message, phase)
	}
	mr := onlyMetric(t, run)
	if len(mr.Measurements) != 1 || mr.Count != 1 || mr.Phase != phase {
		t.Fatalf("metric %s is %s with count %d and measurements %+v; want one, %s", mr.Name, mr.Phase, mr.Count, mr.Measurements, phase)
	}
	m := mr.Measurements[0]
	var res analysis.JudgeResult
	if err := json.Unmarshal([]byte(m.Value), &res); err != nil {
		t.Fatalf("measurement value %q: %v", m.Value, err)
	}
	if m.Phase != phase || res.Classification != phase || len(res.Metrics) != 1 || res.Metrics[0].Name != "latency" {
		t.Fatalf("measurement %s judged %s, want %s on the latency metric: %s", m.Phase, res.Classification, phase, m.Value)
	}
	if l := res.Metrics[0]; l.BaselineCount < minJudgePoints || l.CanaryCount < minJudgePoints {
		t.Errorf("judged %d baseline and %d canary points, want at least %d each", l.BaselineCount, l.CanaryCount, minJudgePoints)
	}
	// Both times have whole seconds, cut down alike.
	if m.StartedAt == nil || run.Status.StartedAt == nil || m.StartedAt.Sub(run.Status.StartedAt.Time) < judgeDelay {
		t.Errorf("judged at %v, run started at %v: want the initial delay %s between", m.StartedAt, run.Status.StartedAt, judgeDelay)
	}
	return m, res
}

// experimentRun is the AnalysisRun of the Experiment's judge analysis.
func experimentRun(t *testing.T, ex *v1alpha1.Experiment) string {
	t.Helper()
	for _, rs := range ex.Status.AnalysisRuns {
		if rs.Name == "judge" && rs.AnalysisRun != "" {
			return rs.AnalysisRun
		}
	}
	t.Fatalf("Experiment %s has no run of analysis judge: %+v", ex.Name, ex.Status.AnalysisRuns)
	return ""
}

func getExperiment(t *testing.T, ns, name string) *v1alpha1.Experiment {
	t.Helper()
	var ex v1alpha1.Experiment
	if err := kubectlJSON(context.Background(), ns, &ex, "exp", name); err != nil {
		t.Fatal(err)
	}
	return &ex
}

// waitForRollout is waitFor for the Rollout's own ReplicaSets, leaving out
// those of its Experiments (which carry the Rollout's labels too).
func waitForRollout(t *testing.T, ns, phaseAndStep, sizes string) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%q with %q", phaseAndStep, sizes), func(ctx context.Context) (bool, string) {
		st := rolloutStatus(ctx, ns)
		var rss appsv1.ReplicaSetList
		if err := kubectlJSON(ctx, ns, &rss, "rs", "-l", "app=web,!"+v1alpha1.ExperimentLabel); err != nil {
			return false, err.Error()
		}
		var lines []string
		for _, rs := range rss.Items {
			if want := *rs.Spec.Replicas; want > 0 || rs.Status.Replicas > 0 {
				lines = append(lines, fmt.Sprintf("%s %d/%d", rs.Spec.Template.Spec.Containers[0].Image, want, rs.Status.ReadyReplicas))
			}
		}
		sort.Strings(lines)
		got := strings.Join(lines, ", ")
		return st == phaseAndStep && got == sizes, fmt.Sprintf("status %q, replicasets %q", st, got)
	})
}
