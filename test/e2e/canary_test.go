//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubeseed/rollouts/test/kwok"
)

// The canary Rollout most tests start from, shared with test/release.
const canaryServices = kwok.CanaryServices

var canaryRolloutYAML = kwok.CanaryRolloutYAML

// replicaSets returns "image spec/ready" of the Rollout's ReplicaSets with
// at least one desired or existing pod, sorted.
func replicaSets(ctx context.Context, ns string) (string, error) {
	out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "rs", "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.spec.template.spec.containers[0].image} {.spec.replicas}/{.status.replicas}/{.status.readyReplicas}{"\n"}{end}`)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		parts := strings.SplitN(f[1], "/", 3)
		if parts[0] == "0" && (parts[1] == "0" || parts[1] == "") {
			continue
		}
		ready := parts[2]
		if ready == "" {
			ready = "0"
		}
		lines = append(lines, fmt.Sprintf("%s %s/%s", f[0], parts[0], ready))
	}
	sort.Strings(lines)
	return strings.Join(lines, ", "), nil
}

func rolloutStatus(ctx context.Context, ns string) string {
	out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.phase} {.status.currentStepIndex}")
	// Blue-green Rollouts have no step index.
	return strings.TrimSpace(out)
}

// waitFor waits until the rollout shows phase and step and the ReplicaSets
// have exactly the given sizes.
func waitFor(t *testing.T, ns, phaseAndStep, sizes string) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%q with %q", phaseAndStep, sizes), func(ctx context.Context) (bool, string) {
		st := rolloutStatus(ctx, ns)
		rss, err := replicaSets(ctx, ns)
		if err != nil {
			return false, err.Error()
		}
		return st == phaseAndStep && rss == sizes, fmt.Sprintf("status %q, replicasets %q", st, rss)
	})
}

func request(t *testing.T, ns, kind, token string) {
	t.Helper()
	cl.MustKubectl(t, "", "-n", ns, "annotate", "--overwrite", "ro", "web", "rollouts.kubeseed.io/"+kind+"="+token)
}

func setImage(t *testing.T, ns, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":%q}]}}}}`, image)
	cl.MustKubectl(t, "", "-n", ns, "patch", "ro", "web", "--type=merge", "-p", patch)
}

// serviceImages returns the images the Services' selectors pick, by the
// hash label the controller injects.
func serviceImages(t *testing.T, ns string, services ...string) []string {
	t.Helper()
	hashes := map[string]string{}
	out := cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.metadata.labels.rollouts\.kubeseed\.io/pod-template-hash} {.spec.template.spec.containers[0].image}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			hashes[f[0]] = f[1]
		}
	}
	var got []string
	for _, svc := range services {
		h := cl.MustKubectl(t, "", "-n", ns, "get", "svc", svc, "-o", `jsonpath={.spec.selector.rollouts\.kubeseed\.io/pod-template-hash}`)
		got = append(got, hashes[strings.TrimSpace(h)])
	}
	return got
}

// stableAndCanary returns "stable,canary" images of the canary Services.
func stableAndCanary(t *testing.T, ns string) string {
	t.Helper()
	return strings.Join(serviceImages(t, ns, "web-stable", "web-canary"), ",")
}

func TestCanaryPromoteAbortRetry(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(10, "[{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {duration: 5s}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 4", "web:1 10/10")

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 8/8, web:2 2/2")
	if got := stableAndCanary(t, ns); got != "web:1,web:2" {
		t.Errorf("Services select %v, want stable web:1, canary web:2", got)
	}

	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Paused 3", "web:1 4/4, web:2 6/6")
	waitFor(t, ns, "Healthy 4", "web:2 10/10")
	if got := stableAndCanary(t, ns); got != "web:2,web:2" {
		t.Errorf("Services select %v, want both on web:2", got)
	}
	// The previous ReplicaSet is kept, scaled to 0, for undo.
	out := cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.spec.replicas} {end}`)
	if !strings.Contains(out, "web:1=0") {
		t.Errorf("old ReplicaSet not scaled to 0: %s", out)
	}

	setImage(t, ns, "web:3")
	waitFor(t, ns, "Paused 1", "web:2 8/8, web:3 2/2")
	request(t, ns, "abort", "a1")
	waitFor(t, ns, "Degraded 1", "web:2 10/10")
	cond := cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", `jsonpath={.status.conditions[?(@.type=="Degraded")].reason}`)
	if strings.TrimSpace(cond) != "RolloutAborted" {
		t.Errorf("Degraded reason %q, want RolloutAborted", cond)
	}
	if got := stableAndCanary(t, ns); got != "web:2,web:2" {
		t.Errorf("after abort Services select %v, want both on web:2", got)
	}

	request(t, ns, "retry", "r1")
	waitFor(t, ns, "Paused 1", "web:2 8/8, web:3 2/2")
	request(t, ns, "promote-full", "f1")
	waitFor(t, ns, "Healthy 4", "web:3 10/10")

	handled := cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", `jsonpath={.status.lastHandled}`)
	for _, want := range []string{`"promote":"p1"`, `"abort":"a1"`, `"retry":"r1"`, `"promoteFull":"f1"`} {
		if !strings.Contains(handled, want) {
			t.Errorf("status.lastHandled %s lacks %s", handled, want)
		}
	}
}

func TestMissingServiceIsInvalidSpecAndChangesNothing(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryRolloutYAML(3, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	eventually(t, 30*time.Second, "Degraded/InvalidSpec", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o",
			`jsonpath={.status.phase}|{.status.conditions[?(@.type=="Degraded")].reason}|{.status.message}`)
		return strings.HasPrefix(out, "Degraded|InvalidSpec|") && strings.Contains(out, `"web-canary"`), out
	})
	if out := cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("ReplicaSets were created for an invalid Rollout: %s", out)
	}
	events := cl.MustKubectl(t, "", "-n", ns, "get", "events", "-o", "jsonpath={.items[*].reason}")
	if !strings.Contains(events, "InvalidSpec") {
		t.Errorf("no InvalidSpec event; events: %s", events)
	}

	// Creating the Services fixes it.
	cl.MustKubectl(t, canaryServices, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
}

// TestControllerRestartMidRollout kills the controller while an update is
// paused and starts a new one: it must carry on from the same step with the
// same ReplicaSets. Not parallel: it replaces the shared controller.
func TestControllerRestartMidRollout(t *testing.T) {
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 75}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 4", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 3/3, web:2 1/1")
	names := func() string {
		return strings.TrimSpace(cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-o", "jsonpath={.items[*].metadata.name}"))
	}
	before := names()

	if err := ctl.Kill(); err == nil {
		t.Fatal("the killed controller reported a clean exit")
	}
	kc, err := cl.ServiceAccountKubeconfig(controllerNS, controllerSA)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err = cl.StartController("controller-restarted", kc, controllerArgs()...)
	if err != nil {
		t.Fatal(err)
	}
	request(t, ns, "promote", "after-restart")
	waitFor(t, ns, "Paused 3", "web:1 1/1, web:2 3/3")
	if diff := cmp.Diff(before, names()); diff != "" {
		t.Errorf("ReplicaSets changed across the restart (-before +after):\n%s", diff)
	}
}
