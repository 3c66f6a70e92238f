//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kubeseed/rollouts/test/kwok"
)

// chromiumPath is Debian's chromium, which the Makefile installs.
const chromiumPath = "/usr/bin/chromium"

// startDashboard runs `kubectl rollouts dashboard -n ns` on a free
// loopback port and returns its URL.
func startDashboard(t *testing.T, ns string) string {
	t.Helper()
	port, err := kwok.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cl.Bin("kubectl-rollouts"), "dashboard", "--kubeconfig", cl.Kubeconfig, "-n", ns, "--port", fmt.Sprint(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Dashboard of") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the dashboard did not start")
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", port)
}

// browser is a headless Chromium for the test; a missing chromium fails
// the test (`make test` installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v (make test installs Debian's chromium)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first Run starts the browser, for as long as ctx lives.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
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
