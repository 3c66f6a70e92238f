//go:build integration

package cli

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/get")

// world creates objects as the controller would have, in the plugin's
// namespace.
type world struct {
	t  *testing.T
	ns string
}

func (w world) create(obj client.Object, status func()) {
	w.t.Helper()
	ctx := context.Background()
	obj.SetNamespace(w.ns)
	if err := env.Client.Create(ctx, obj); err != nil {
		w.t.Fatal(err)
	}
	if status != nil {
		status()
		if err := env.Client.Status().Update(ctx, obj); err != nil {
			w.t.Fatal(err)
		}
	}
}

func owner(obj client.Object, kind string) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(obj, v1alpha1.GroupVersion.WithKind(kind))}
}

func (w world) replicaSet(ro *v1alpha1.Rollout, hash, image string, revision, replicas int32) {
	labels := map[string]string{"app": ro.Name, v1alpha1.PodTemplateHashLabel: hash}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: ro.Name + "-" + hash, Labels: labels, OwnerReferences: owner(ro, "Rollout"),
			Annotations: map[string]string{v1alpha1.RevisionAnnotation: strconv.Itoa(int(revision))},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}},
		},
	}
	w.create(rs, func() {
		rs.Status = appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas}
	})
	for i := range replicas {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-" + string("abcdefgh"[i]), Labels: labels, OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
		w.create(pod, func() {
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: i, Image: image}}}
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "get", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("get output differs from %s (-want +got):\n%s", path, diff)
	}
}

// renderGet gathers a Rollout's family from the API server and renders it
// plain, every age shown as 5m.
func renderGet(t *testing.T, p *plugin, name string) string {
	t.Helper()
	s, err := newSession(configFlags(p))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.gather(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := render(&b, f, style{}, func(metav1.Time) string { return "5m" }); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), p.ns, "NAMESPACE")
}

func TestIntegrationGetCanaryWithAnalysisAndExperiment(t *testing.T) {
	p := newPlugin(t)
	w := world{t: t, ns: p.ns}
	ro := p.create()
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) {
		pausedUpdate(st)
		st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = 4, 1, 4, 4
		st.Canary.Weights = &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 20, PodTemplateHash: "h2"}, Stable: v1alpha1.WeightDestination{Weight: 80, PodTemplateHash: "h1"}}
	})
	w.replicaSet(ro, "h1", "app:1", 1, 3)
	w.replicaSet(ro, "h2", "app:2", 2, 1)
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "web-h2-1", OwnerReferences: owner(ro, "Rollout"),
			Labels: map[string]string{v1alpha1.RolloutLabel: "web", v1alpha1.PodTemplateHashLabel: "h2", v1alpha1.AnalysisKindLabel: "step"}},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "error-rate", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}}},
	}
	w.create(run, func() {
		run.Status = v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseSuccessful, MetricResults: []v1alpha1.MetricResult{{
			Name: "error-rate", Phase: v1alpha1.AnalysisPhaseSuccessful, Count: 3, Successful: 3,
			Measurements: []v1alpha1.Measurement{{Phase: v1alpha1.AnalysisPhaseSuccessful, Value: "[0.004]"}},
		}}}
	})
	ex := &v1alpha1.Experiment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-h2-2", OwnerReferences: owner(ro, "Rollout"),
			Labels: map[string]string{v1alpha1.RolloutLabel: "web", v1alpha1.PodTemplateHashLabel: "h2"}},
		Spec: v1alpha1.ExperimentSpec{Templates: []v1alpha1.ExperimentTemplate{{
			Name: "baseline", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "b"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}},
		}}},
	}
	w.create(ex, func() {
		ex.Status = v1alpha1.ExperimentStatus{Phase: v1alpha1.AnalysisPhaseRunning, TemplateStatuses: []v1alpha1.TemplateStatus{
			{Name: "baseline", Status: v1alpha1.TemplateStatusRunning, AvailableReplicas: 1, PodTemplateHash: "e1"},
		}}
	})
	judge := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "web-h2-2-judge", OwnerReferences: owner(ex, "Experiment"),
			Labels: map[string]string{v1alpha1.ExperimentLabel: ex.Name, v1alpha1.ExperimentAnalysisLabel: "judge"}},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "judge", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}}},
	}
	w.create(judge, func() { judge.Status = v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseRunning} })

	golden(t, "canary", renderGet(t, p, "web"))
}

func TestIntegrationGetBlueGreen(t *testing.T) {
	p := newPlugin(t)
	w := world{t: t, ns: p.ns}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: p.ns},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
			Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:2"}}}},
			Strategy: v1alpha1.RolloutStrategy{BlueGreen: &v1alpha1.BlueGreenStrategy{ActiveService: "shop-active", PreviewService: "shop-preview"}},
		},
	}
	w.create(ro, func() {
		ro.Status = v1alpha1.RolloutStatus{
			ObservedGeneration: 1, Phase: v1alpha1.RolloutPhasePaused, Message: "Preview ready: paused until promoted",
			StableRS: "b1", CurrentPodHash: "b2", Replicas: 4, UpdatedReplicas: 2, ReadyReplicas: 4, AvailableReplicas: 4,
			BlueGreen: v1alpha1.BlueGreenStatus{ActiveSelector: "b1", PreviewSelector: "b2",
				PrePromotionAnalysisRun: &v1alpha1.RunStatus{Name: "shop-b2-pre", Phase: v1alpha1.AnalysisPhaseSuccessful}},
		}
	})
	w.replicaSet(ro, "b1", "shop:1", 1, 2)
	w.replicaSet(ro, "b2", "shop:2", 2, 2)
	golden(t, "bluegreen", renderGet(t, p, "shop"))

	// The command itself, plain because its output is not a terminal.
	out, err := p.run("get", "rollout", "shop")
	if err != nil || !strings.Contains(out, "shop:2 (preview)") || strings.Contains(out, "\033[") {
		t.Errorf("get rollout: %v\n%s", err, out)
	}
	p.fails(`rollout "nope" not found`, "get", "rollout", "nope")
}

// configFlags are the standard flags pointing at the test's control plane
// and namespace.
func configFlags(p *plugin) *genericclioptions.ConfigFlags {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &p.kubeconfig, &p.ns
	return flags
}

// lockedBuffer collects what a terminal shows.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestIntegrationGetWatchRedrawsOnATerminal runs get -w on a pseudo-terminal:
// it draws with colours, and when the Rollout changes it clears the screen
// and draws the new state.
func TestIntegrationGetWatchRedrawsOnATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	p := newPlugin(t)
	ro := p.create()
	p.setStatus(ro, pausedUpdate)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ptmx.Close(); _ = tty.Close() }()
	var screen lockedBuffer
	go func() { _, _ = io.Copy(&screen, ptmx) }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := NewRootCommand(genericiooptions.IOStreams{In: tty, Out: tty, ErrOut: tty})
		cmd.SetArgs([]string{"get", "rollout", "web", "-w", "--kubeconfig", p.kubeconfig, "-n", p.ns})
		done <- cmd.ExecuteContext(ctx)
	}()
	shows := func(what string, cond func(string) bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			return cond(screen.String()), nil
		})
		if err != nil {
			t.Fatalf("the terminal never showed %s:\n%q", what, screen.String())
		}
	}
	const clear = "\033[H\033[2J"
	shows("the first frame", func(s string) bool {
		return strings.Count(s, clear) == 1 && strings.Contains(s, "paused until promoted") && strings.Contains(s, "\033[33m॥ Paused")
	})
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) { pausedUpdate(st); st.Message = "Step 2/2: promoted, scaling up" })
	shows("a redraw with the new message", func(s string) bool {
		frames := strings.Split(s, clear)
		return len(frames) >= 3 && strings.Contains(frames[len(frames)-1], "Step 2/2: promoted, scaling up")
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("get -w ended with %v", err)
	}
}

func TestIntegrationGetExperiment(t *testing.T) {
	p := newPlugin(t)
	w := world{t: t, ns: p.ns}
	labels := map[string]string{"app": "cmp", "track": "canary"}
	ex := &v1alpha1.Experiment{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp"},
		Spec: v1alpha1.ExperimentSpec{Duration: "10m", Templates: []v1alpha1.ExperimentTemplate{{
			Name: "canary", Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:2"}}}},
		}}},
	}
	w.create(ex, func() {
		ex.Status = v1alpha1.ExperimentStatus{Phase: v1alpha1.AnalysisPhaseFailed, Message: "analysis judge (AnalysisRun cmp-judge) Failed: score 0",
			TemplateStatuses: []v1alpha1.TemplateStatus{{Name: "canary", Status: v1alpha1.TemplateStatusFailed, AvailableReplicas: 1, PodTemplateHash: "e9", ServiceName: "cmp-canary"}}}
	})
	rsLabels := map[string]string{"app": "cmp", "track": "canary", v1alpha1.PodTemplateHashLabel: "e9", v1alpha1.ExperimentLabel: "cmp", v1alpha1.ExperimentTemplateLabel: "canary"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp-canary", Labels: rsLabels, OwnerReferences: owner(ex, "Experiment")},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: rsLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:2"}}}}},
	}
	w.create(rs, func() { rs.Status = appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1} })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp-canary-x", Labels: rsLabels, OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:2"}}},
	}
	w.create(pod, func() {
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "app:2"}}}
	})
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "cmp-judge", OwnerReferences: owner(ex, "Experiment"),
			Labels: map[string]string{v1alpha1.ExperimentLabel: "cmp", v1alpha1.ExperimentAnalysisLabel: "judge"}},
		Spec: v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{{Name: "judge", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: "http://x"}}}}},
	}
	w.create(run, func() {
		run.Status = v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseFailed, MetricResults: []v1alpha1.MetricResult{{
			Name: "judge", Phase: v1alpha1.AnalysisPhaseFailed, Measurements: []v1alpha1.Measurement{{Phase: v1alpha1.AnalysisPhaseFailed, Value: `{"score":0}`}},
		}}}
	})
	s, err := newSession(configFlags(p))
	if err != nil {
		t.Fatal(err)
	}
	got, f, err := s.gatherExperiment(context.Background(), "cmp")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := renderExperiment(&b, got, f, style{}, func(metav1.Time) string { return "5m" }); err != nil {
		t.Fatal(err)
	}
	golden(t, "experiment", strings.ReplaceAll(b.String(), p.ns, "NAMESPACE"))
	p.fails(`experiment "nope" not found`, "get", "experiment", "nope")
}
