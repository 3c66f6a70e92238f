//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// The kubectl plugin, bin/kubectl-rollouts, against Rollouts the running
// controller reconciles: for each command its exit code, stdout and stderr,
// and the state the controller then reaches.

// cliRun is one run of the plugin.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r cliRun) String() string {
	return fmt.Sprintf("kubectl rollouts %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// plugin runs bin/kubectl-rollouts against the test cluster, in namespace ns
// unless it is "". Its stdout and stderr are pipes, as in a script.
func plugin(t *testing.T, ns string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := append([]string{"--kubeconfig", cl.Kubeconfig}, args...)
	if ns != "" {
		all = append(all, "-n", ns)
	}
	cmd := exec.CommandContext(ctx, cl.Bin("kubectl-rollouts"), all...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s\nstill running after 2m", r)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running kubectl-rollouts %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// succeeds runs the plugin, expects exit 0 with nothing on stderr and
// returns stdout.
func succeeds(t *testing.T, ns string, args ...string) string {
	t.Helper()
	r := plugin(t, ns, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want exit 0 and an empty stderr; %s", r)
	}
	return r.stdout
}

// prints runs the plugin and expects exit 0, nothing on stderr and exactly
// want on stdout.
func prints(t *testing.T, ns, want string, args ...string) {
	t.Helper()
	if out := succeeds(t, ns, args...); out != want {
		t.Errorf("kubectl rollouts %s printed %q, want %q", strings.Join(args, " "), out, want)
	}
}

// refuses runs the plugin and expects exit 1, nothing on stdout and the
// error message on stderr.
func refuses(t *testing.T, ns, message string, args ...string) {
	t.Helper()
	r := plugin(t, ns, args...)
	if want := "Error: " + message + "\n"; r.code != 1 || r.stdout != "" || r.stderr != want {
		t.Errorf("want exit 1, no stdout and stderr %q; %s", want, r)
	}
}

// templateImage is the image of the Rollout's container.
func templateImage(t *testing.T, ns string) string {
	t.Helper()
	return getRollout(t, ns).Spec.Template.Spec.Containers[0].Image
}

// TestCLIUpdatePromoteAbortRetry drives a canary update with the plugin
// only: set image, list, get, promote, abort, retry, promote --full, and
// status with each of its exit codes.
func TestCLIUpdatePromoteAbortRetry(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 4", "web:1 4/4")
	if r := plugin(t, ns, "status", "web", "--timeout", "30s"); r.code != 0 || r.stderr != "" ||
		!strings.HasPrefix(lastLine(r.stdout), "Healthy, 4/4 updated, 4 available: ") {
		t.Errorf("status of a Healthy rollout: want exit 0 and a Healthy line; %s", r)
	}

	prints(t, ns, "rollout \"web\" image updated: web=web:2\n", "set", "image", "web", "web=web:2")
	if img := templateImage(t, ns); img != "web:2" {
		t.Fatalf("set image left the template on %s", img)
	}
	waitFor(t, ns, "Paused 1", "web:1 3/3, web:2 1/1")
	listShows(t, ns, "web Canary Paused 1/4 25 25 4 4 1 4")
	getShows(t, ns, "Paused", []string{"Strategy: Canary", "Step: 1/4", "SetWeight: 25", "ActualWeight: 25",
		"Images: web:1 (stable)", "web:2 (canary)", "Replicas:", "Desired: 4", "Current: 4", "Updated: 1", "Ready: 4", "Available: 4",
	}, []revision{{2, "web:2", "Healthy", "canary"}, {1, "web:1", "Healthy", "stable"}})

	r := plugin(t, ns, "status", "web", "--timeout", "3s")
	if r.code != 2 || r.stderr != "Error: timed out waiting for rollout \"web\"\n" ||
		!strings.HasPrefix(r.stdout, "Paused step 1/4, 1/4 updated, 4 available: ") {
		t.Errorf("status of a paused update with --timeout 3s: want exit 2, the paused step and the timeout; %s", r)
	}

	prints(t, ns, "rollout \"web\" promoted\n", "promote", "web")
	waitFor(t, ns, "Paused 3", "web:1 2/2, web:2 2/2")
	if ro := getRollout(t, ns); ro.Annotations[v1alpha1.PromoteAnnotation] != ro.Status.LastHandled.Promote {
		t.Errorf("the controller handled promote %q, the plugin wrote %q", ro.Status.LastHandled.Promote, ro.Annotations[v1alpha1.PromoteAnnotation])
	}

	prints(t, ns, "rollout \"web\" aborted\n", "abort", "web")
	waitFor(t, ns, "Degraded 3", "web:1 4/4")
	ro := getRollout(t, ns)
	degraded := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionDegraded)
	if w := ro.Status.Canary.Weights; !ro.Status.Abort || w == nil || w.Canary.Weight != 0 || degraded == nil || degraded.Reason != v1alpha1.ReasonRolloutAborted {
		t.Errorf("after abort: abort %v, weights %+v, Degraded %+v; want an aborted update at weight 0", ro.Status.Abort, w, degraded)
	}
	if got := stableAndCanary(t, ns); got != "web:1,web:1" {
		t.Errorf("after abort the Services select %s, want both on web:1", got)
	}
	r = plugin(t, ns, "status", "web", "--timeout", "30s")
	if want := fmt.Sprintf("Error: rollout \"web\" is Degraded: %s\n", ro.Status.Message); r.code != 1 || r.stderr != want ||
		!strings.HasPrefix(lastLine(r.stdout), "Degraded step 3/4, 0/4 updated, 4 available: Update to ") {
		t.Errorf("status of an aborted update: want exit 1 and stderr %q; %s", want, r)
	}
	listShows(t, ns, "web Canary Degraded 3/4 0 0 4 4 0 4")
	refuses(t, ns, `rollout "web": the update is aborted: retry it first`, "promote", "web")
	refuses(t, ns, `rollout "web": the update is already aborted`, "abort", "web")

	prints(t, ns, "rollout \"web\" retried\n", "retry", "web")
	waitFor(t, ns, "Paused 1", "web:1 3/3, web:2 1/1")
	if ro := getRollout(t, ns); ro.Status.Abort || ro.Status.LastHandled.Retry != ro.Annotations[v1alpha1.RetryAnnotation] {
		t.Errorf("after retry: abort %v, handled retry %q of %q", ro.Status.Abort, ro.Status.LastHandled.Retry, ro.Annotations[v1alpha1.RetryAnnotation])
	}

	prints(t, ns, "rollout \"web\" fully promoted: skipping the remaining steps\n", "promote", "web", "--full")
	r = plugin(t, ns, "status", "web", "--timeout", "60s")
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(lastLine(r.stdout), "Healthy, 4/4 updated, 4 available: ") {
		t.Errorf("status following promote --full: want exit 0 ending Healthy; %s", r)
	}
	waitFor(t, ns, "Healthy 4", "web:2 4/4")
	if got := stableAndCanary(t, ns); got != "web:2,web:2" {
		t.Errorf("after promote --full the Services select %s, want both on web:2", got)
	}
	refuses(t, ns, `rollout "web": no update is in progress: nothing to promote`, "promote", "web")
	refuses(t, ns, `rollout "web": no update is in progress: nothing to promote`, "promote", "web", "--full")
}

// TestCLIPauseResume: while spec.paused the controller observes a new
// template but creates and scales nothing; resume lets the update start.
func TestCLIPauseResume(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")

	prints(t, ns, "rollout \"web\" paused\n", "pause", "web")
	if !getRollout(t, ns).Spec.Paused {
		t.Fatal("pause did not set spec.paused")
	}
	refuses(t, ns, `rollout "web": it is already paused`, "pause", "web")
	prints(t, ns, "rollout \"web\" image updated: web=web:2\n", "set", "image", "web", "web=web:2")
	// Once the controller has seen the new template it must have created
	// and scaled nothing: the planner leaves ReplicaSets alone while paused.
	if ro := observed(t, ns); ro.Status.Phase != v1alpha1.RolloutPhasePaused || ro.Status.Message != "Paused by spec.paused" {
		t.Errorf("phase %s, message %q with spec.paused", ro.Status.Phase, ro.Status.Message)
	}
	if images := replicaSetImages(t, ns); !slices.Equal(images, []string{"web:1"}) {
		t.Errorf("ReplicaSets of images %v while paused, want only web:1", images)
	}
	if rss, err := replicaSets(context.Background(), ns); err != nil || rss != "web:1 4/4" {
		t.Errorf("ReplicaSets %q (%v) while paused, want web:1 4/4", rss, err)
	}

	prints(t, ns, "rollout \"web\" resumed\n", "resume", "web")
	if getRollout(t, ns).Spec.Paused {
		t.Fatal("resume did not clear spec.paused")
	}
	waitFor(t, ns, "Paused 1", "web:1 3/3, web:2 1/1")
	refuses(t, ns, `rollout "web": it is already resumed`, "resume", "web")
}

// TestCLIRestart: restart sets spec.restartAt and the controller replaces
// every pod, in the same ReplicaSet.
func TestCLIRestart(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(3, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
	before := rolloutPods(t, ns)
	var newest time.Time
	for _, p := range before.Items {
		if c := p.CreationTimestamp.Time; c.After(newest) {
			newest = c
		}
	}
	// restartAt has whole seconds, like creationTimestamp: a pod counts as
	// older only when it comes from an earlier second.
	eventually(t, 5*time.Second, "a second after the newest pod", func(context.Context) (bool, string) {
		return time.Now().Truncate(time.Second).After(newest), "newest pod created at " + newest.String()
	})

	at, _ := restart(t, ns)
	restartDone(t, ns, at)
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
	eventually(t, 30*time.Second, "only pods from after restartAt", func(ctx context.Context) (bool, string) {
		var pods corev1.PodList
		if err := kubectlJSON(ctx, ns, &pods, "pods", "-l", "app=web"); err != nil {
			return false, err.Error()
		}
		var got []string
		fresh := len(pods.Items) == 3
		for _, p := range pods.Items {
			old := slices.ContainsFunc(before.Items, func(o corev1.Pod) bool { return o.Name == p.Name })
			fresh = fresh && !old && !p.CreationTimestamp.Time.Before(at)
			got = append(got, fmt.Sprintf("%s@%s(old:%v)", p.Name, p.CreationTimestamp.UTC().Format(time.RFC3339), old))
		}
		return fresh, "pods " + strings.Join(got, " ")
	})
	if images := replicaSetImages(t, ns); !slices.Equal(images, []string{"web:1"}) {
		t.Errorf("a restart made ReplicaSets of images %v, want only the one of web:1", images)
	}
}

// TestCLIRestartReplacesPodsOfTheCurrentSecond: restart replaces every pod
// that exists when it runs, also one created in the same (whole) second,
// which creationTimestamp and restartAt can't tell apart.
func TestCLIRestartReplacesPodsOfTheCurrentSecond(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 2/2")
	// Early in a second, make the ReplicaSet create a pod, then restart.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	before := rolloutPods(t, ns).Items
	cl.MustKubectl(t, "", "-n", ns, "delete", "pod", before[0].Name, "--wait=false")
	var fresh corev1.Pod
	eventually(t, 10*time.Second, "a replacement pod", func(ctx context.Context) (bool, string) {
		var pods corev1.PodList
		if err := kubectlJSON(ctx, ns, &pods, "pods", "-l", "app=web"); err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			if !slices.ContainsFunc(before, func(o corev1.Pod) bool { return o.Name == p.Name }) {
				fresh = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none new", len(pods.Items))
	})
	// The plugin read its clock after the pod's creation and before ran.
	at, ran := restart(t, ns)
	if !fresh.CreationTimestamp.Time.Equal(ran.Truncate(time.Second)) {
		t.Skipf("pod %s came at %s, restart was done at %s: not in the same second, nothing to check", fresh.Name, fresh.CreationTimestamp.UTC(), ran.UTC())
	}
	restartDone(t, ns, at)
	survived := func(p corev1.Pod) bool { return p.Name == fresh.Name && p.DeletionTimestamp == nil }
	if slices.ContainsFunc(rolloutPods(t, ns).Items, survived) {
		t.Errorf("pod %s, created at %s before restart ran, survived the restart (spec.restartAt %s)",
			fresh.Name, fresh.CreationTimestamp.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	}
}

// restart runs `restart web`, checks what it printed against spec.restartAt
// and returns that time, and when the plugin had exited.
func restart(t *testing.T, ns string) (at, ran time.Time) {
	t.Helper()
	out := succeeds(t, ns, "restart", "web")
	ran = time.Now()
	printed, ok := strings.CutPrefix(strings.TrimSuffix(out, "\n"), `rollout "web" restarting pods created before `)
	if !ok {
		t.Fatalf("restart printed %q", out)
	}
	at, err := time.Parse(time.RFC3339, printed)
	if err != nil {
		t.Fatalf("restart printed %q: %v", out, err)
	}
	if got := getRollout(t, ns).Spec.RestartAt; got == nil || !got.Time.Equal(at) {
		t.Fatalf("spec.restartAt %v, the plugin printed %s", got, printed)
	}
	return at, ran
}

// restartDone waits until the controller records the restart at as done.
func restartDone(t *testing.T, ns string, at time.Time) {
	t.Helper()
	eventually(t, 90*time.Second, "restart recorded in status.restartedAt", func(ctx context.Context) (bool, string) {
		var ro v1alpha1.Rollout
		if err := kubectlJSON(ctx, ns, &ro, "ro", "web"); err != nil {
			return false, err.Error()
		}
		done := ro.Status.RestartedAt
		return done != nil && done.Time.Equal(at), fmt.Sprintf("restartedAt %v", done)
	})
}

// TestCLIUndo goes back to earlier revisions. The ReplicaSets hold templates
// the API server has defaulted; undo must bring back the ReplicaSet of the
// revision, not create a copy of it beside it.
func TestCLIUndo(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 2/2")
	succeeds(t, ns, "set", "image", "web", "web=web:2")
	waitFor(t, ns, "Paused 1", "web:1 1/1, web:2 1/1")
	succeeds(t, ns, "promote", "web", "--full")
	waitFor(t, ns, "Healthy 2", "web:2 2/2")

	// Back to revision 1, which is not the stable one: through the steps, on
	// its old ReplicaSet, which becomes revision 3.
	prints(t, ns, "rollout \"web\" rolled back to revision 1\n", "undo", "web")
	waitFor(t, ns, "Paused 1", "web:1 1/1, web:2 1/1")
	if got := replicaSetImages(t, ns); !slices.Equal(got, []string{"web:1", "web:2"}) {
		t.Fatalf("after undo the ReplicaSets run %v, want one per revision", got)
	}
	if ro := getRollout(t, ns); ro.Status.CurrentPodHash != replicaSetHash(t, ns, "web:1") {
		t.Errorf("the update runs %s, not the ReplicaSet of revision 1", ro.Status.CurrentPodHash)
	}
	listShows(t, ns, "web Canary Paused 1/2 50 50 2 2 1 2")

	// Back again to the stable revision (2): no steps.
	prints(t, ns, "rollout \"web\" rolled back to revision 2\n", "undo", "web")
	waitFor(t, ns, "Healthy 2", "web:2 2/2")
	if got := replicaSetImages(t, ns); !slices.Equal(got, []string{"web:1", "web:2"}) {
		t.Errorf("after the second undo the ReplicaSets run %v", got)
	}
	prints(t, ns, "rollout \"web\" rolled back to revision 3\n", "undo", "web", "--to-revision", "3")
	waitFor(t, ns, "Paused 1", "web:1 1/1, web:2 1/1")
	refuses(t, ns, `rollout "web" has no revision 7 (revisions: 5, 4)`, "undo", "web", "--to-revision", "7")
}

// replicaSetHash is the pod-template-hash of the ReplicaSet running image.
func replicaSetHash(t *testing.T, ns, image string) string {
	t.Helper()
	for _, rs := range replicaSetList(context.Background(), t, ns).Items {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			return rs.Labels[v1alpha1.PodTemplateHashLabel]
		}
	}
	t.Fatalf("no ReplicaSet runs %s", image)
	return ""
}

// TestCLIRefusesWrongContainerAndMissingRollout: requests that make no sense
// fail with exit 1 and a message on stderr, and change nothing.
func TestCLIRefusesWrongContainerAndMissingRollout(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(3, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
	generation := getRollout(t, ns).Generation

	noContainer := `rollout "web" has no container "app" (containers: web)`
	refuses(t, ns, noContainer, "set", "image", "web", "app=web:2")
	refuses(t, ns, noContainer, "set", "image", "web", "web=web:2", "app=web:2")
	if ro := getRollout(t, ns); ro.Generation != generation || ro.Spec.Template.Spec.Containers[0].Image != "web:1" {
		t.Errorf("a refused set image changed the Rollout: generation %d→%d, image %s", generation, ro.Generation, ro.Spec.Template.Spec.Containers[0].Image)
	}
	refuses(t, ns, `rollout "web": no update is in progress: nothing to abort`, "abort", "web")
	refuses(t, ns, `rollout "web": the update is not aborted: nothing to retry`, "retry", "web")
	refuses(t, ns, `rollout "web" has no revision before the current one (1) to go back to`, "undo", "web")

	missing := fmt.Sprintf("rollout %q not found in namespace %q", "nope", ns)
	for _, args := range [][]string{
		{"get", "rollout", "nope"}, {"promote", "nope"}, {"promote", "nope", "--full"}, {"abort", "nope"}, {"retry", "nope"},
		{"pause", "nope"}, {"resume", "nope"}, {"restart", "nope"}, {"set", "image", "nope", "web=web:2"},
		{"undo", "nope"}, {"undo", "nope", "--to-revision", "1"}, {"status", "nope", "--timeout", "10s"},
	} {
		refuses(t, ns, missing, args...)
	}
	if ro := getRollout(t, ns); ro.Generation != generation || ro.Status.Phase != v1alpha1.RolloutPhaseHealthy {
		t.Errorf("refused commands changed the Rollout: generation %d→%d, phase %s", generation, ro.Generation, ro.Status.Phase)
	}
}

// TestCLIVersion: the plugin's build, and the controller Deployment it finds.
func TestCLIVersion(t *testing.T) {
	t.Parallel()
	var client struct {
		Plugin     struct{ Version, Commit, GoVersion, Platform string }
		Controller []any
	}
	out := succeeds(t, "", "version", "--client", "-o", "json")
	if err := json.Unmarshal([]byte(out), &client); err != nil {
		t.Fatalf("version --client -o json: %v\n%s", err, out)
	}
	p := client.Plugin
	if p.Version == "" || p.Commit == "" || p.Platform != runtime.GOOS+"/"+runtime.GOARCH || !strings.HasPrefix(p.GoVersion, "go") || client.Controller != nil {
		t.Errorf("version --client -o json: %+v; want the build of this platform and no controller", client)
	}

	// The controller runs as a local process here, but the manifests also
	// install its Deployment, which is what the plugin looks for.
	var deploys appsv1.DeploymentList
	if err := kubectlJSON(context.Background(), controllerNS, &deploys, "deployments", "-l", "app.kubernetes.io/name=rollouts-controller"); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("kubectl-rollouts: %s (commit %s, %s, %s)", p.Version, p.Commit, p.GoVersion, p.Platform)}
	switch len(deploys.Items) {
	case 0:
		want = append(want, "controller: not found (no Deployment labelled app.kubernetes.io/name=rollouts-controller)")
	default:
		d := deploys.Items[0]
		want = append(want, fmt.Sprintf("controller: %s/%s image %s", d.Namespace, d.Name, d.Spec.Template.Spec.Containers[0].Image))
	}
	lines := strings.Split(strings.TrimSuffix(succeeds(t, "", "version"), "\n"), "\n")
	// Other tests may install more controllers (the namespaced overlay).
	if len(lines) < 2 || lines[0] != want[0] || !slices.Contains(lines[1:], want[1]) {
		t.Errorf("version printed\n%s\nwant the lines\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	refuses(t, "", `unknown output format "yaml": use json or leave it empty`, "version", "-o", "yaml")
}

// listShows waits until `list rollouts` prints the header and the one row
// want (columns separated by single spaces).
func listShows(t *testing.T, ns, want string) {
	t.Helper()
	wantTable := []string{"NAME STRATEGY PHASE STEP SET-WEIGHT ACTUAL-WEIGHT DESIRED CURRENT UP-TO-DATE AVAILABLE", want}
	eventually(t, 30*time.Second, "list rollouts shows "+want, func(context.Context) (bool, string) {
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(succeeds(t, ns, "list", "rollouts")), "\n") {
			got = append(got, strings.Join(strings.Fields(l), " "))
		}
		diff := cmp.Diff(wantTable, got)
		return diff == "", "(-want +got):\n" + diff
	})
}

// revision is what `get rollout` should show of one revision: its number,
// its ReplicaSet (by image) with status and role, and the ReplicaSet's pods.
type revision struct {
	number              int
	image, status, role string
}

// getShows waits until `get rollout web` prints its name, namespace, phase
// and message, then the header lines from Strategy on, and the tree: the
// Rollout with its phase, then the revisions with their ReplicaSets and the
// pods the cluster has for them, ages left out.
func getShows(t *testing.T, ns, phase string, header []string, revisions []revision) {
	t.Helper()
	eventually(t, 30*time.Second, "get rollout shows the revisions", func(ctx context.Context) (bool, string) {
		ro := getRollout(t, ns)
		wantHeader := append([]string{"Name: web", "Namespace: " + ns, "Status: " + phase, "Message: " + ro.Status.Message}, header...)
		wantTree := []string{"web Rollout " + phase}
		var rss appsv1.ReplicaSetList
		var pods corev1.PodList
		if err := kubectlJSON(ctx, ns, &rss, "rs"); err != nil {
			return false, err.Error()
		}
		if err := kubectlJSON(ctx, ns, &pods, "pods"); err != nil {
			return false, err.Error()
		}
		for _, rev := range revisions {
			wantTree = append(wantTree, fmt.Sprintf("  revision:%d", rev.number))
			for _, rs := range rss.Items {
				if rs.Spec.Template.Spec.Containers[0].Image != rev.image {
					continue
				}
				wantTree = append(wantTree, fmt.Sprintf("    %s ReplicaSet %s %s", rs.Name, rev.status, rev.role))
				var names []string
				for _, p := range pods.Items {
					if owner := p.OwnerReferences; len(owner) == 1 && owner[0].UID == rs.UID {
						names = append(names, p.Name)
					}
				}
				slices.Sort(names)
				for _, n := range names {
					wantTree = append(wantTree, "      "+n+" Pod Running ready:1/1")
				}
			}
		}
		gotHeader, gotTree := parseGet(succeeds(t, ns, "get", "rollout", "web"))
		diff := cmp.Diff(wantHeader, gotHeader) + cmp.Diff(wantTree, gotTree)
		return diff == "", "(-want +got):\n" + diff
	})
}

// treeGlyphs are the characters that draw the tree of `get rollout`.
const treeGlyphs = "│├└─ "

// parseGet splits the output of `get rollout` into its header lines
// (whitespace collapsed) and its tree rows below the column titles: two
// spaces of indent per level, then the columns without the tree glyphs and
// without AGE.
func parseGet(out string) (header, tree []string) {
	top, rows, _ := strings.Cut(out, "\n\n")
	for _, l := range strings.Split(top, "\n") {
		header = append(header, strings.Join(strings.Fields(l), " "))
	}
	lines := strings.Split(strings.TrimRight(rows, "\n"), "\n")
	for _, l := range lines[1:] {
		name := strings.IndexFunc(l, func(r rune) bool { return !strings.ContainsRune(treeGlyphs, r) })
		if name < 0 {
			continue
		}
		cols := strings.Fields(l[name:])
		if len(cols) >= 4 {
			cols = slices.Delete(cols, 3, 4) // AGE
		}
		// Each level of the tree takes three columns.
		depth := utf8.RuneCountInString(l[:name]) / 3
		tree = append(tree, strings.Repeat("  ", depth)+strings.Join(cols, " "))
	}
	return header, tree
}

// rolloutPods lists the pods of the Rollout "web".
func rolloutPods(t *testing.T, ns string) *corev1.PodList {
	t.Helper()
	var pods corev1.PodList
	if err := kubectlJSON(context.Background(), ns, &pods, "pods", "-l", "app=web"); err != nil {
		t.Fatal(err)
	}
	return &pods
}

func replicaSetList(ctx context.Context, t *testing.T, ns string) *appsv1.ReplicaSetList {
	t.Helper()
	var rss appsv1.ReplicaSetList
	if err := kubectlJSON(ctx, ns, &rss, "rs", "-l", "app=web"); err != nil {
		t.Fatal(err)
	}
	return &rss
}

// replicaSetImages lists the images of every ReplicaSet, scaled down or
// not, sorted.
func replicaSetImages(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, rs := range replicaSetList(context.Background(), t, ns).Items {
		out = append(out, rs.Spec.Template.Spec.Containers[0].Image)
	}
	slices.Sort(out)
	return out
}

// observed waits until the controller has seen the Rollout's latest spec
// and returns it as the controller left it.
func observed(t *testing.T, ns string) *v1alpha1.Rollout {
	t.Helper()
	var ro v1alpha1.Rollout
	eventually(t, 30*time.Second, "the latest spec observed", func(ctx context.Context) (bool, string) {
		if err := kubectlJSON(ctx, ns, &ro, "ro", "web"); err != nil {
			return false, err.Error()
		}
		return ro.Status.ObservedGeneration == ro.Generation, fmt.Sprintf("generation %d, observed %d", ro.Generation, ro.Status.ObservedGeneration)
	})
	return &ro
}
