//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kubeseed/rollouts/test/chromium"
)

// startDashboard runs `kubectl rollouts dashboard -n ns` as cluster-admin
// on a free loopback port and returns its URL.
func startDashboard(t *testing.T, ns string) string {
	t.Helper()
	d, err := cl.StartDashboard(cl.Kubeconfig, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Kill() })
	return d.URL
}

// browser is a headless Chromium for the test; a missing chromium fails
// the test (`make test` installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	return chromium.Start(t)
}

// textOf waits until the element of sel shows want.
func textOf(t *testing.T, ctx context.Context, sel, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	for time.Now().Before(deadline) {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		text, err := chromedp.Run(short, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if got = strings.TrimSpace(text); err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s shows %q, want %q", sel, got, want)
}

// TestDashboardListIsLive: the list shows the test's Rollout, and a canary
// update moves its step and weight in the page without a reload.
func TestDashboardListIsLive(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 50}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 4/4")
	ctx := browser(t)
	row := fmt.Sprintf(`tr[data-rollout="%s/web"]`, ns)
	load, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(load, chromedp.Navigate(startDashboard(t, ns)), chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, row+" .status", "Healthy", 10*time.Second)

	setImage(t, ns, "web:2")
	textOf(t, ctx, row+" .step", "2/3", 60*time.Second)
	textOf(t, ctx, row+" .weight", "25%", 10*time.Second)
	textOf(t, ctx, row+" .status", "Paused", 10*time.Second)
}
