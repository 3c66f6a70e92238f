//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRestartAtHonoursPodDisruptionBudgets: spec.restartAt replaces every
// pod through the eviction API; a PodDisruptionBudget that allows no
// disruption holds the restart until it is relaxed.
func TestRestartAtHonoursPodDisruptionBudgets(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(3, "[{setWeight: 50}, {pause: {}}]")+`---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
`, "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
	podNames := func() string {
		return strings.TrimSpace(cl.MustKubectl(t, "", "-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"))
	}
	before := podNames()
	// Let the PDB controller compute disruptionsAllowed before restarting.
	eventually(t, 30*time.Second, "PDB observed", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy}")
		return strings.TrimSpace(out) == "3", out
	})

	// RFC 3339 in the API has whole seconds: round up so the pods are older.
	now := time.Now().UTC().Add(time.Second).Truncate(time.Second).Format(time.RFC3339)
	cl.MustKubectl(t, "", "-n", ns, "patch", "ro", "web", "--type=merge", "-p", `{"spec":{"restartAt":"`+now+`"}}`)
	time.Sleep(4 * time.Second)
	if got := podNames(); got != before {
		t.Fatalf("pods were replaced although the PDB allows no disruption: %q -> %q", before, got)
	}

	cl.MustKubectl(t, "", "-n", ns, "patch", "pdb", "web", "--type=merge", "-p", `{"spec":{"minAvailable":2}}`)
	eventually(t, 90*time.Second, "restart done", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.restartedAt}")
		return strings.TrimSpace(out) != "", "restartedAt=" + out
	})
	after := podNames()
	for _, old := range strings.Fields(before) {
		if strings.Contains(after, old) {
			t.Errorf("pod %s from before restartAt survived: %s", old, after)
		}
	}
	waitFor(t, ns, "Healthy 2", "web:1 3/3")
}
