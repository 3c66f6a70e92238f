//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
)

// gitopsRoutes are an HTTPRoute and a VirtualService as a user keeps them in
// Git: user labels and annotations, all traffic to the stable Service.
const gitopsRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  labels: {app: web, team: payments}
  annotations: {owner: payments@example.com}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: web-stable, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
  labels: {app: web, team: payments}
  annotations: {owner: payments@example.com}
spec:
  hosts: [web.example]
  http:
  - name: primary
    route: [{destination: {host: web-stable}, weight: 100}]
`

// gitopsRollout routes through both objects of gitopsRoutes.
func gitopsRollout(steps string) string {
	return strings.Replace(canaryRolloutYAML(4, steps), "      stableService: web-stable\n", `      stableService: web-stable
      trafficRouting:
        gatewayAPI: {httpRoutes: [{name: web}]}
        istio: {virtualService: {name: web, routes: [primary]}}
`, 1)
}

// weights returns "service=weight,..." of the HTTPRoute's first rule and of
// the VirtualService's primary route.
func weights(ctx context.Context, ns string) (string, error) {
	hr, err := cl.Kubectl(ctx, "", "-n", ns, "get", "httproute", "web", "-o", `jsonpath={range .spec.rules[0].backendRefs[*]}{.name}={.weight},{end}`)
	if err != nil {
		return "", err
	}
	vs, err := cl.Kubectl(ctx, "", "-n", ns, "get", "virtualservice", "web", "-o", `jsonpath={range .spec.http[0].route[*]}{.destination.host}={.weight},{end}`)
	if err != nil {
		return "", err
	}
	// Istio's types leave a weight of 0 out of the JSON.
	return strings.TrimSpace(hr) + " " + strings.ReplaceAll(strings.TrimSpace(vs), "=,", "=0,"), nil
}

func waitWeights(t *testing.T, ns, want string) {
	t.Helper()
	eventually(t, 60*time.Second, "route weights "+want, func(ctx context.Context) (bool, string) {
		got, err := weights(ctx, ns)
		if err != nil {
			return false, err.Error()
		}
		return got == want, got
	})
}

// objectMeta is the metadata the user owns on a route, and who manages what.
type objectMeta struct {
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
	ManagedFields []struct {
		Manager  string          `json:"manager"`
		FieldsV1 json.RawMessage `json:"fieldsV1"`
	} `json:"managedFields"`
}

func metaOf(t *testing.T, ns, kind string) objectMeta {
	t.Helper()
	out := cl.MustKubectl(t, "", "-n", ns, "get", kind, "web", "--show-managed-fields", "-o", "jsonpath={.metadata}")
	var m objectMeta
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%s metadata: %v\n%s", kind, err, out)
	}
	return m
}

// userMeta drops the one annotation the controller owns.
func (m objectMeta) userMeta() string {
	a := map[string]string{}
	for k, v := range m.Annotations {
		if k != "rollouts.kubeseed.io/managed-by" {
			a[k] = v
		}
	}
	b, _ := json.Marshal(struct {
		L, A map[string]string
	}{m.Labels, a})
	return string(b)
}

// controllerOwns returns the fields the controller's field manager owns.
func (m objectMeta) controllerOwns() string {
	var out []string
	for _, f := range m.ManagedFields {
		if f.Manager == "rollouts-controller" {
			out = append(out, string(f.FieldsV1))
		}
	}
	return strings.Join(out, " ")
}

// TestGitOpsReapplyMidCanaryKeepsWeightsAndUserMetadata: routes created by
// client-side kubectl apply keep their last-applied-configuration and the
// user's metadata through the controller's weight changes; re-applying the
// unchanged manifests mid-canary, client-side and then server-side under
// another field manager, leaves the Rollout where it was and the weights at
// the step's value, and the controller never owns a field of the user's
// metadata.
func TestGitOpsReapplyMidCanaryKeepsWeightsAndUserMetadata(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+gitopsRoutes, "-n", ns, "apply", "-f", "-")
	before := map[string]objectMeta{"httproute": metaOf(t, ns, "httproute"), "virtualservice": metaOf(t, ns, "virtualservice")}
	for kind, m := range before {
		if m.Annotations[lastApplied] == "" {
			t.Fatalf("%s created by kubectl apply has no %s", kind, lastApplied)
		}
	}
	cl.MustKubectl(t, gitopsRollout("[{setWeight: 30}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 4/4, web:2 2/2")
	const atStep = "web-stable=70,web-canary=30, web-stable=70,web-canary=30,"
	waitWeights(t, ns, atStep)

	checkUserMeta := func(when string) {
		t.Helper()
		for kind, was := range before {
			now := metaOf(t, ns, kind)
			if got, want := now.Annotations[lastApplied], was.Annotations[lastApplied]; got != want {
				t.Errorf("%s: %s %s changed:\n got %s\nwant %s", when, kind, lastApplied, got, want)
			}
			if got, want := now.userMeta(), was.userMeta(); got != want {
				t.Errorf("%s: %s user metadata changed:\n got %s\nwant %s", when, kind, got, want)
			}
			if now.Annotations["rollouts.kubeseed.io/managed-by"] != "web" {
				t.Errorf("%s: %s not marked as managed by Rollout web: %v", when, kind, now.Annotations)
			}
			// Of the metadata, the controller owns its one annotation.
			owns := now.controllerOwns()
			for _, user := range []string{"f:labels", "f:owner", "last-applied-configuration"} {
				if strings.Contains(owns, user) {
					t.Errorf("%s: %s: rollouts-controller owns %s: %s", when, kind, user, owns)
				}
			}
		}
	}
	checkUserMeta("after the weight change")

	// Client-side apply (Argo CD's default sync) of the unchanged manifests.
	// A custom resource gets a JSON merge patch, which replaces whole lists:
	// for a moment the routes carry what Git says, and the controller, which
	// watches them, puts its weights back.
	cl.MustKubectl(t, gitopsRoutes, "-n", ns, "apply", "-f", "-")
	waitWeights(t, ns, atStep)
	checkUserMeta("after a client-side re-apply")

	// Server-side apply under another field manager: the only conflicts
	// with the controller are on the lists holding the weights it owns,
	// never on what the user owns; forcing them (as Argo CD does) is put
	// right again. (Conflicts with kubectl-client-side-apply are the user's
	// own two ways of applying meeting.)
	out, err := cl.Kubectl(context.Background(), gitopsRoutes, "-n", ns, "apply", "--server-side", "--field-manager=gitops", "-f", "-")
	if err != nil {
		for manager, paths := range applyConflicts(out) {
			for _, path := range paths {
				if manager == "rollouts-controller" && path != ".spec.rules" && path != ".spec.http" {
					t.Errorf("server-side apply conflicts with the controller on a field the user owns: %s", path)
				}
			}
		}
	}
	cl.MustKubectl(t, gitopsRoutes, "-n", ns, "apply", "--server-side", "--field-manager=gitops", "--force-conflicts", "-f", "-")
	// kubectl hands what kubectl-client-side-apply owned to the new field
	// manager, and with it drops last-applied-configuration (it keeps it
	// only for its own manager, "kubectl"): the user's doing, so from here
	// the controller must keep the metadata as this apply left it.
	for kind := range before {
		before[kind] = metaOf(t, ns, kind)
	}
	waitWeights(t, ns, atStep)
	checkUserMeta("after a server-side re-apply")

	if got := rolloutStatus(context.Background(), ns); got != "Paused 1" {
		t.Errorf("re-applying the routes moved the Rollout to %q", got)
	}
	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Healthy 2", "web:2 4/4")
	waitWeights(t, ns, "web-stable=100,web-canary=0, web-stable=100,web-canary=0,")
	checkUserMeta("after promotion")
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// applyConflicts reads the conflicts kubectl prints when a server-side apply
// fails, by field manager: either one per line under a "conflicts with
// "manager" using version:" heading, or a single one after that heading.
func applyConflicts(out string) map[string][]string {
	conflicts := map[string][]string{}
	manager := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if _, rest, ok := strings.Cut(l, `with "`); ok && strings.Contains(l, "conflict") {
			manager, rest, _ = strings.Cut(rest, `"`)
			if _, path, ok := strings.Cut(rest, ": "); ok && strings.HasPrefix(path, ".") {
				conflicts[manager] = append(conflicts[manager], path)
			}
			continue
		}
		if path, ok := strings.CutPrefix(l, "- "); ok && manager != "" {
			conflicts[manager] = append(conflicts[manager], path)
		}
	}
	return conflicts
}

// TestGitOpsKubectlWaitReadyReturnsAfterPromotion: Ready stays False while
// the Rollout waits for a person and turns True only once it is promoted,
// so `kubectl wait --for=condition=Ready` is a deploy gate.
func TestGitOpsKubectlWaitReadyReturnsAfterPromotion(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 2/2, web:2 2/2")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wait := exec.CommandContext(ctx, cl.Bin("kubectl"), "--kubeconfig", cl.Kubeconfig, "-n", ns, "wait", "ro/web", "--for=condition=Ready", "--timeout=100s")
	var out strings.Builder
	wait.Stdout, wait.Stderr = &out, &out
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- wait.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("kubectl wait returned while the Rollout waits for a person (err %v): %s", err, out.String())
	case <-time.After(3 * time.Second):
	}
	request(t, ns, "promote", "p1")
	if err := <-done; err != nil {
		t.Fatalf("kubectl wait --for=condition=Ready after promotion: %v\n%s", err, out.String())
	}
	if got := rolloutStatus(context.Background(), ns); got != "Healthy 2" {
		t.Errorf("kubectl wait returned with the Rollout %q, want Healthy 2", got)
	}
}

// selectorHash returns the hash key of each Service's selector ("" when
// absent) and its managed-by annotation.
func serviceState(t *testing.T, ns string, services ...string) string {
	t.Helper()
	var parts []string
	for _, svc := range services {
		out := cl.MustKubectl(t, "", "-n", ns, "get", "svc", svc, "-o",
			`jsonpath={.spec.selector.rollouts\.kubeseed\.io/pod-template-hash}|{.metadata.annotations.rollouts\.kubeseed\.io/managed-by}`)
		parts = append(parts, svc+"="+strings.TrimSpace(out))
	}
	return strings.Join(parts, " ")
}

// TestGitOpsDeleteGivesBackServicesAndRoutes: deleting a Rollout mid-canary
// and after it is Healthy leaves the Services selecting by the user's own
// selector, the routes sending everything to stable, no managed-by marks,
// and none of the Rollout's objects behind.
func TestGitOpsDeleteGivesBackServicesAndRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, ns string)
	}{
		{"mid-canary", func(t *testing.T, ns string) {
			setImage(t, ns, "web:2")
			waitFor(t, ns, "Paused 1", "web:1 4/4, web:2 2/2")
			waitWeights(t, ns, "web-stable=70,web-canary=30, web-stable=70,web-canary=30,")
		}},
		{"healthy", func(t *testing.T, ns string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := namespace(t)
			cl.MustKubectl(t, canaryServices+"---"+gitopsRoutes, "-n", ns, "apply", "-f", "-")
			cl.MustKubectl(t, gitopsRollout("[{setWeight: 30}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
			waitFor(t, ns, "Healthy 2", "web:1 4/4")
			if got := serviceState(t, ns, "web-stable", "web-canary"); strings.Contains(got, "=|") || !strings.Contains(got, "|web") {
				t.Fatalf("Services not managed before the delete: %s", got)
			}
			tc.setup(t, ns)
			cl.MustKubectl(t, "", "-n", ns, "delete", "ro", "web", "--timeout=60s")

			if got, want := serviceState(t, ns, "web-stable", "web-canary"), "web-stable=| web-canary=|"; got != want {
				t.Errorf("Services after delete: %s, want %s", got, want)
			}
			if got, want := mustWeights(t, ns), "web-stable=100,web-canary=0, web-stable=100,web-canary=0,"; got != want {
				t.Errorf("route weights after delete: %s, want %s", got, want)
			}
			for _, kind := range []string{"httproute", "virtualservice"} {
				if a := metaOf(t, ns, kind).Annotations; a["rollouts.kubeseed.io/managed-by"] != "" {
					t.Errorf("%s still marked managed after delete: %v", kind, a)
				}
			}
			eventually(t, 60*time.Second, "owned objects garbage-collected", func(ctx context.Context) (bool, string) {
				out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "rs,analysisruns,experiments", "-o", "name")
				return err == nil && strings.TrimSpace(out) == "", out
			})
			events := cl.MustKubectl(t, "", "-n", ns, "get", "events", "--field-selector", "reason=CleanedUp", "-o", "name")
			if strings.TrimSpace(events) == "" {
				t.Error("no CleanedUp event")
			}
		})
	}
}

func mustWeights(t *testing.T, ns string) string {
	t.Helper()
	w, err := weights(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestGitOpsDeleteAfterTheRouteWasDeleted: a finalizer never holds a Rollout
// forever. With its HTTPRoute already gone, the Rollout is deleted anyway,
// with a warning event saying what could not be given back, and the
// Services are still given back.
func TestGitOpsDeleteAfterTheRouteWasDeleted(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+gitopsRoutes, "-n", ns, "apply", "-f", "-")
	cl.MustKubectl(t, gitopsRollout("[{setWeight: 30}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")
	fin := cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.metadata.finalizers}")
	if !strings.Contains(fin, "rollouts.kubeseed.io/cleanup") {
		t.Fatalf("Rollout that changed user objects has finalizers %s", fin)
	}
	cl.MustKubectl(t, "", "-n", ns, "delete", "httproute", "web")
	cl.MustKubectl(t, "", "-n", ns, "delete", "ro", "web", "--timeout=60s")
	if got, want := serviceState(t, ns, "web-stable", "web-canary"), "web-stable=| web-canary=|"; got != want {
		t.Errorf("Services after delete: %s, want %s", got, want)
	}
	eventually(t, 30*time.Second, "CleanupIncomplete event naming the route", func(ctx context.Context) (bool, string) {
		out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "events", "--field-selector", "reason=CleanupIncomplete", "-o", "jsonpath={.items[*].message}")
		return err == nil && strings.Contains(out, "HTTPRoute"), out
	})
}

// TestGitOpsTwoRolloutsOneService: a second Rollout naming the first one's
// Service is InvalidSpec, naming the first, and changes nothing.
func TestGitOpsTwoRolloutsOneService(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 2/2")
	services := serviceState(t, ns, "web-stable", "web-canary")

	second := strings.Replace(kwok.CanaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "name: web}", "name: api}", 1)
	second = strings.ReplaceAll(second, "app: web", "app: api")
	cl.MustKubectl(t, second, "-n", ns, "apply", "-f", "-")
	eventually(t, 30*time.Second, "second Rollout InvalidSpec", func(ctx context.Context) (bool, string) {
		out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "api", "-o", `jsonpath={.status.phase}|{.status.conditions[?(@.type=="Stalled")].reason}|{.status.conditions[?(@.type=="Stalled")].message}`)
		return err == nil && strings.HasPrefix(out, "Degraded|InvalidSpec|") && strings.Contains(out, `managed by Rollout "web"`), out
	})
	if got := serviceState(t, ns, "web-stable", "web-canary"); got != services {
		t.Errorf("Services changed by the second Rollout: %s, was %s", got, services)
	}
	if out := cl.MustKubectl(t, "", "-n", ns, "get", "rs", "-l", "app=api", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("the invalid Rollout created ReplicaSets: %s", out)
	}
	if got := rolloutStatus(context.Background(), ns); got != "Healthy 2" {
		t.Errorf("first Rollout is %q, want Healthy 2", got)
	}
}

// TestGitOpsEphemeralMetadata: during the canary its pods carry role=canary
// and the stable ones role=stable; at promotion the canary's pods are
// relabelled in place to role=stable, keeping their UIDs (no restart).
func TestGitOpsEphemeralMetadata(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	ro := strings.Replace(canaryRolloutYAML(4, "[{setWeight: 50}, {pause: {}}]"), "      canaryService: web-canary\n",
		"      canaryService: web-canary\n      canaryMetadata: {labels: {role: canary}}\n      stableMetadata: {labels: {role: stable}, annotations: {tier: stable}}\n", 1)
	cl.MustKubectl(t, canaryServices+"---"+ro, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 2/2, web:2 2/2")

	canaryUIDs := map[string]bool{}
	eventually(t, 30*time.Second, "role=canary on the canary's pods, role=stable on the stable ones", func(context.Context) (bool, string) {
		clear(canaryUIDs)
		got := podRoles(t, ns)
		for _, p := range got {
			if p.image == "web:2" {
				canaryUIDs[p.uid] = true
			}
		}
		return rolesAre(got, map[string]string{"web:1": "stable", "web:2": "canary"}) && len(canaryUIDs) == 2, fmt.Sprint(got)
	})

	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Healthy 2", "web:2 4/4")
	eventually(t, 30*time.Second, "role=stable on every pod, the canary's own pods relabelled in place", func(context.Context) (bool, string) {
		got := podRoles(t, ns)
		kept := 0
		for _, p := range got {
			if canaryUIDs[p.uid] {
				kept++
			}
		}
		return rolesAre(got, map[string]string{"web:2": "stable"}) && kept == len(canaryUIDs), fmt.Sprintf("%d of the canary's pods kept: %v", kept, got)
	})
}

type podRole struct{ image, role, tier, uid string }

// podRoles lists the Rollout's live pods with their image and ephemeral
// metadata.
func podRoles(t *testing.T, ns string) []podRole {
	t.Helper()
	var out []podRole
	for _, p := range rolloutPods(t, ns).Items {
		if p.DeletionTimestamp == nil {
			out = append(out, podRole{p.Spec.Containers[0].Image, p.Labels["role"], p.Annotations["tier"], string(p.UID)})
		}
	}
	return out
}

// rolesAre: every pod runs an image of want and carries its role, and the
// tier annotation exactly when it is stable.
func rolesAre(pods []podRole, want map[string]string) bool {
	for _, p := range pods {
		role, ok := want[p.image]
		if !ok || p.role != role || (p.tier == "stable") != (role == "stable") {
			return false
		}
	}
	return len(pods) > 0
}
