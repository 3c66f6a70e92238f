//go:build integration

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// plugin runs the plugin against the test's control plane and namespace.
type plugin struct {
	t          *testing.T
	kubeconfig string
	ns         string
}

func newPlugin(t *testing.T) *plugin {
	return &plugin{t: t, kubeconfig: env.Kubeconfig(t), ns: env.Namespace(t)}
}

func (p *plugin) run(args ...string) (string, error) {
	p.t.Helper()
	var out bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &bytes.Buffer{}}
	cmd := NewRootCommand(streams)
	silence(cmd)
	cmd.SetArgs(append(args, "--kubeconfig", p.kubeconfig, "-n", p.ns))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (p *plugin) mustRun(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("%v: %v", args, err)
	}
	return out
}

func (p *plugin) fails(want string, args ...string) {
	p.t.Helper()
	if _, err := p.run(args...); err == nil || !strings.Contains(err.Error(), want) {
		p.t.Errorf("%v: error %v, want one containing %q", args, err, want)
	}
}

func (p *plugin) create() *v1alpha1.Rollout {
	p.t.Helper()
	const name = "web"
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "proxy", Image: "proxy:1"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{{SetWeight: ptr.To[int32](20)}, {Pause: &v1alpha1.RolloutPause{}}}}},
		},
	}
	if err := env.Client.Create(context.Background(), ro); err != nil {
		p.t.Fatal(err)
	}
	return ro
}

// setStatus plays the controller: it writes the status of a Rollout.
func (p *plugin) setStatus(ro *v1alpha1.Rollout, edit func(*v1alpha1.RolloutStatus)) {
	p.t.Helper()
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
		p.t.Fatal(err)
	}
	ro.Status.ObservedGeneration = ro.Generation
	edit(&ro.Status)
	if err := env.Client.Status().Update(ctx, ro); err != nil {
		p.t.Fatal(err)
	}
}

func (p *plugin) get() *v1alpha1.Rollout {
	p.t.Helper()
	var ro v1alpha1.Rollout
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: "web"}, &ro); err != nil {
		p.t.Fatal(err)
	}
	return &ro
}

func healthy(st *v1alpha1.RolloutStatus) {
	st.Phase, st.StableRS, st.CurrentPodHash, st.Abort = v1alpha1.RolloutPhaseHealthy, "h1", "h1", false
	st.CurrentStepIndex = ptr.To[int32](2)
}

func pausedUpdate(st *v1alpha1.RolloutStatus) {
	st.Phase, st.StableRS, st.CurrentPodHash, st.Abort = v1alpha1.RolloutPhasePaused, "h1", "h2", false
	st.CurrentStepIndex = ptr.To[int32](1)
	st.Message = "Step 2/2: paused until promoted"
}

func TestIntegrationRequests(t *testing.T) {
	p := newPlugin(t)
	ro := p.create()
	p.setStatus(ro, healthy)
	p.fails(`rollout "nope" not found in namespace "`+p.ns+`"`, "promote", "nope")
	p.fails("no update is in progress: nothing to promote", "promote", "web")
	p.fails("no update is in progress: nothing to abort", "abort", "web")
	p.fails("the update is not aborted: nothing to retry", "retry", "web")

	p.setStatus(ro, pausedUpdate)
	if out := p.mustRun("promote", "web"); out != "rollout \"web\" promoted\n" {
		t.Errorf("promote printed %q", out)
	}
	first := p.get().Annotations[v1alpha1.PromoteAnnotation]
	if first == "" {
		t.Fatal("promote wrote no request")
	}
	p.mustRun("promote", "web")
	if second := p.get().Annotations[v1alpha1.PromoteAnnotation]; second == first {
		t.Error("a second promote reused the token: the controller would ignore it")
	}
	if out := p.mustRun("promote", "web", "--full"); !strings.Contains(out, "fully promoted") || p.get().Annotations[v1alpha1.PromoteFullAnnotation] == "" {
		t.Errorf("promote --full: %q", out)
	}
	if out := p.mustRun("abort", "web"); out != "rollout \"web\" aborted\n" || p.get().Annotations[v1alpha1.AbortAnnotation] == "" {
		t.Errorf("abort: %q", out)
	}
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) {
		pausedUpdate(st)
		st.Abort, st.Phase = true, v1alpha1.RolloutPhaseDegraded
	})
	p.fails("the update is aborted: retry it first", "promote", "web")
	p.fails("the update is already aborted", "abort", "web")
	if out := p.mustRun("retry", "web"); out != "rollout \"web\" retried\n" || p.get().Annotations[v1alpha1.RetryAnnotation] == "" {
		t.Errorf("retry: %q", out)
	}
}

func TestIntegrationPauseRestartSetImage(t *testing.T) {
	p := newPlugin(t)
	p.create()
	p.mustRun("pause", "web")
	if !p.get().Spec.Paused {
		t.Fatal("pause did not set spec.paused")
	}
	p.fails(`rollout "web": it is already paused`, "pause", "web")
	p.mustRun("resume", "web")
	if p.get().Spec.Paused {
		t.Fatal("resume did not clear spec.paused")
	}
	p.fails(`rollout "web": it is already resumed`, "resume", "web")

	now = func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }
	defer func() { now = time.Now }()
	if out := p.mustRun("restart", "web"); !strings.Contains(out, "2026-11-28T12:00:01Z") {
		t.Errorf("restart printed %q", out)
	}
	if at := p.get().Spec.RestartAt; at == nil || !at.Time.Equal(now().Add(time.Second)) {
		t.Errorf("restartAt %v", at)
	}

	if out := p.mustRun("set", "image", "web", "app=app:2", "proxy=proxy:3"); out != "rollout \"web\" image updated: app=app:2 proxy=proxy:3\n" {
		t.Errorf("set image printed %q", out)
	}
	c := p.get().Spec.Template.Spec.Containers
	if c[0].Image != "app:2" || c[1].Image != "proxy:3" {
		t.Errorf("images %s %s", c[0].Image, c[1].Image)
	}
	p.fails(`rollout "web" has no container "db" (containers: app, proxy)`, "set", "image", "web", "db=db:1")
	p.fails(`"app" is not CONTAINER=IMAGE`, "set", "image", "web", "app")
	if got := p.get().Spec.Template.Spec.Containers[0].Image; got != "app:2" {
		t.Errorf("a failed set image changed the template: %s", got)
	}

	// With workloadRef the Deployment's template changes.
	ctx := context.Background()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: p.ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "legacy"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "legacy:1"}}}},
		},
	}
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: p.ns},
		Spec: v1alpha1.RolloutSpec{
			WorkloadRef: &v1alpha1.WorkloadRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "legacy"},
			Strategy:    v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if out := p.mustRun("set", "image", "legacy", "app=legacy:2"); !strings.Contains(out, `deployment "legacy" (workloadRef of rollout "legacy")`) {
		t.Errorf("set image with workloadRef printed %q", out)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil || d.Spec.Template.Spec.Containers[0].Image != "legacy:2" {
		t.Errorf("Deployment image %s (%v)", d.Spec.Template.Spec.Containers[0].Image, err)
	}
	p.fails("undo that Deployment instead", "undo", "legacy")
}

func TestIntegrationUndo(t *testing.T) {
	p := newPlugin(t)
	ro := p.create()
	ctx := context.Background()
	for rev, image := range map[int]string{1: "app:1", 2: "app:2", 3: "app:3"} {
		tmpl := ro.Spec.Template.DeepCopy()
		tmpl.Spec.Containers[0].Image = image
		hash := "h" + string(rune('0'+rev))
		tmpl.Labels = map[string]string{"app": "web", v1alpha1.PodTemplateHashLabel: hash}
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: "web-" + hash, Namespace: p.ns,
				Labels:          tmpl.Labels,
				Annotations:     map[string]string{v1alpha1.RevisionAnnotation: string(rune('0' + rev))},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout"))},
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: *tmpl},
		}
		if err := env.Client.Create(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) { healthy(st); st.StableRS, st.CurrentPodHash = "h3", "h3" })
	if out := p.mustRun("undo", "web"); out != "rollout \"web\" rolled back to revision 2\n" {
		t.Errorf("undo printed %q", out)
	}
	got := p.get().Spec.Template
	if got.Spec.Containers[0].Image != "app:2" {
		t.Errorf("undo put back %s", got.Spec.Containers[0].Image)
	}
	if _, ok := got.Labels[v1alpha1.PodTemplateHashLabel]; ok {
		t.Error("undo copied the hash label into the template")
	}
	p.mustRun("undo", "web", "--to-revision", "1")
	if img := p.get().Spec.Template.Spec.Containers[0].Image; img != "app:1" {
		t.Errorf("undo --to-revision 1 put back %s", img)
	}
	p.fails(`rollout "web" has no revision 9 (revisions: 3, 2, 1)`, "undo", "web", "--to-revision", "9")
	p.fails(`rollout "web" already runs revision 3`, "undo", "web", "--to-revision", "3")
}

func TestIntegrationStatusExitCodes(t *testing.T) {
	p := newPlugin(t)
	ro := p.create()

	p.setStatus(ro, healthy)
	if out, err := p.run("status", "web", "--timeout", "5s"); err != nil || !strings.HasPrefix(out, "Healthy") {
		t.Errorf("Healthy: %q %v", out, err)
	}

	p.setStatus(ro, pausedUpdate)
	_, err := p.run("status", "web", "--timeout", "1s")
	if code := ExitCode(err); code != 2 || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("paused with a 1s timeout: exit %d, %v", code, err)
	}

	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) {
		pausedUpdate(st)
		st.Abort, st.Phase, st.Message = true, v1alpha1.RolloutPhaseDegraded, "Update aborted: AnalysisRun web-h2-1 Failed"
	})
	_, err = p.run("status", "web")
	if code := ExitCode(err); code != 1 || !strings.Contains(err.Error(), "AnalysisRun web-h2-1 Failed") {
		t.Errorf("aborted: exit %d, %v", code, err)
	}

	// Following: the update becomes Healthy while status waits.
	p.setStatus(ro, pausedUpdate)
	done := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, err = p.run("status", "web", "--timeout", "30s")
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // let it start watching; the result doesn't depend on it
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) { pausedUpdate(st); st.Message = "Step 2/2: promoted" })
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) { healthy(st); st.StableRS, st.CurrentPodHash = "h2", "h2" })
	if err := <-done; err != nil {
		t.Fatalf("status after the update finished: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "paused until promoted") || !strings.HasPrefix(lines[len(lines)-1], "Healthy") {
		t.Errorf("progress lines:\n%s", out)
	}

	if _, err := p.run("status", "nope"); ExitCode(err) != 1 || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing rollout: %v", err)
	}
}

func TestIntegrationList(t *testing.T) {
	p := newPlugin(t)
	if out := p.mustRun("list", "rollouts"); !strings.Contains(out, "No rollouts found in namespace "+p.ns) {
		t.Errorf("empty list: %q", out)
	}
	ro := p.create()
	p.setStatus(ro, func(st *v1alpha1.RolloutStatus) {
		pausedUpdate(st)
		st.Replicas, st.UpdatedReplicas, st.AvailableReplicas = 4, 1, 4
		st.Canary.Weights = &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 25}}
	})
	out := p.mustRun("list", "rollouts")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "web Canary Paused 1/2 20 25 3 4 1 4" {
		t.Errorf("list:\n%s", out)
	}
	if out := p.mustRun("list", "rollouts", "-A"); !strings.Contains(out, p.ns) || !strings.HasPrefix(out, "NAMESPACE") {
		t.Errorf("list -A:\n%s", out)
	}
}
