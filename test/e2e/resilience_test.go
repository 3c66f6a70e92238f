//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/kwok"
)

// TestResilienceAbortOfInvalidRolloutSendsTrafficToStable: mid-canary the
// Rollout's canary Service is deleted, so its spec is invalid; an abort
// still sends all traffic of both routers to the stable, and nothing is
// scaled until the spec is valid again, when the abort carries on.
func TestResilienceAbortOfInvalidRolloutSendsTrafficToStable(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+gitopsRoutes+"---"+gitopsRollout("[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 4/4, web:2 2/2")
	waitWeights(t, ns, "web-stable=50,web-canary=50, web-stable=50,web-canary=50,")

	cl.MustKubectl(t, "", "-n", ns, "delete", "service", "web-canary")
	eventually(t, 60*time.Second, "InvalidSpec", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", `jsonpath={.status.conditions[?(@.type=="Stalled")].reason}`)
		return out == "InvalidSpec", out
	})
	succeeds(t, ns, "abort", "web")
	waitWeights(t, ns, "web-stable=100,web-canary=0, web-stable=100,web-canary=0,")
	out := cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", `jsonpath={.status.abort} {.status.conditions[?(@.type=="Stalled")].reason}`)
	if out != "true InvalidSpec" {
		t.Errorf("status after the abort: %q, want the abort recorded and the spec still invalid", out)
	}
	// Nothing but the routes moved: replica counts need a valid spec.
	if rss, err := replicaSets(context.Background(), ns); err != nil || rss != "web:1 4/4, web:2 2/2" {
		t.Errorf("ReplicaSets %q (%v) while the spec is invalid, want them as they were", rss, err)
	}

	cl.MustKubectl(t, canaryServices, "-n", ns, "apply", "-f", "-")
	eventually(t, 90*time.Second, "aborted", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", `jsonpath={.status.phase} {.status.conditions[?(@.type=="Stalled")].reason}`)
		return out == "Degraded RolloutAborted", out
	})
	waitWeights(t, ns, "web-stable=100,web-canary=0, web-stable=100,web-canary=0,")
}

// TestResilienceForbiddenWriteIsStalledUntilRBACReturns: a namespaced
// controller (on a cluster of its own, where it is the only one) loses
// `patch` on Services mid-life. The next update cannot switch the canary
// Service: the Rollout is Stalled with reason ReconcileError and the API
// server's message, with a Warning event saying the same. Once the Role
// grants it again, the update goes on by itself.
func TestResilienceForbiddenWriteIsStalledUntilRBACReturns(t *testing.T) {
	t.Parallel()
	const ns = "team-b"
	own := ownCluster(t, "resilience", ns)
	startNamespacedOn(t, own, ns)

	status := func(ctx context.Context) string {
		out, _ := own.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o",
			`jsonpath={.status.phase} {.status.currentStepIndex} {.status.conditions[?(@.type=="Stalled")].status} {.status.conditions[?(@.type=="Stalled")].reason}`)
		return out
	}
	waitStatus := func(want string) {
		t.Helper()
		eventually(t, 90*time.Second, want, func(ctx context.Context) (bool, string) {
			got := status(ctx)
			return got == want, got
		})
	}
	own.MustKubectl(t, kwok.CanaryServices+"---"+kwok.CanaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitStatus("Healthy 2 False RolloutHealthy")

	// The Role loses patch on Services.
	var role rbacv1.Role
	if err := json.Unmarshal([]byte(own.MustKubectl(t, "", "-n", ns, "get", "role", controllerSA, "-o", "json")), &role); err != nil {
		t.Fatal(err)
	}
	granted := role.DeepCopy()
	var kept []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "services") {
			r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == "patch" })
		}
		if len(r.Verbs) > 0 {
			kept = append(kept, r)
		}
	}
	role.Rules = kept
	replaceRole := func(r *rbacv1.Role) {
		t.Helper()
		r.ResourceVersion, r.ManagedFields = "", nil
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		own.MustKubectl(t, string(b), "replace", "-f", "-")
	}
	replaceRole(&role)

	own.MustKubectl(t, "", "-n", ns, "patch", "ro", "web", "--type=merge", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:2"}]}}}}`)
	wantMessage := fmt.Sprintf(`services "web-canary" is forbidden: User "system:serviceaccount:%s:%s" cannot patch resource "services"`, ns, controllerSA)
	eventually(t, 60*time.Second, "Stalled with the API's message", func(ctx context.Context) (bool, string) {
		out, _ := own.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o",
			`jsonpath={.status.conditions[?(@.type=="Stalled")].status}|{.status.conditions[?(@.type=="Stalled")].reason}|{.status.conditions[?(@.type=="Stalled")].message}`)
		return strings.HasPrefix(out, "True|ReconcileError|") && strings.Contains(out, wantMessage), out
	})
	eventually(t, 30*time.Second, "a ReconcileError warning event", func(ctx context.Context) (bool, string) {
		out, _ := own.Kubectl(ctx, "", "-n", ns, "get", "events", "--field-selector", "reason=ReconcileError,involvedObject.name=web",
			"-o", "jsonpath={range .items[*]}{.type}|{.message}{\"\\n\"}{end}")
		return strings.Contains(out, "Warning|") && strings.Contains(out, wantMessage), out
	})

	replaceRole(granted)
	waitStatus("Paused 1 False CanaryPauseStep")
	own.MustKubectl(t, "", "-n", ns, "annotate", "ro", "web", "--overwrite", v1alpha1.PromoteAnnotation+"=1")
	waitStatus("Healthy 2 False RolloutHealthy")
}
