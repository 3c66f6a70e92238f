//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/chromium"
	"github.com/kubeseed/rollouts/test/kwok"
)

// screenshotsEnv names the directory `make screenshots` has the browser
// tests write their pictures to; unset, they take none.
const screenshotsEnv = "DASHBOARD_SCREENSHOTS"

// dashboardProc is a `kubectl rollouts dashboard` the test runs.
type dashboardProc struct{ *kwok.Dashboard }

// startDashboard runs `kubectl rollouts dashboard -n ns` (and args) on a
// free loopback port, as cluster-admin unless args say otherwise.
func startDashboard(t *testing.T, ns string, args ...string) dashboardProc {
	t.Helper()
	d, err := cl.StartDashboard(cl.Kubeconfig, ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Kill() })
	return dashboardProc{d}
}

// stderr is what the dashboard wrote so far.
func (d dashboardProc) stderr() string { return d.Log() }

// rolloutURL is the page of the Rollout ns/name.
func (d dashboardProc) rolloutURL(ns, name string) string {
	return d.URL + "#/rollouts/" + ns + "/" + name
}

// browser is a headless Chromium for the test; a missing chromium fails
// the test (`make test` installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	return chromium.Start(t)
}

// visit loads url and waits until sel shows.
func visit(t *testing.T, ctx context.Context, url, sel string) {
	t.Helper()
	load, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(load, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		t.Fatalf("loading %s and waiting for %s: %v", url, sel, err)
	}
}

// click clicks the element of sel once it is visible and enabled.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(short, chromedp.WaitEnabled(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
}

// inPage waits until the expression, evaluated in the page, gives a value
// ok accepts; it returns that value.
func inPage[T any](t *testing.T, ctx context.Context, what, js string, timeout time.Duration, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got T
	var err error
	for time.Now().Before(deadline) {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err = chromedp.Run(short, chromedp.Evaluate[T](js))
		cancel()
		if err == nil && ok(got) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the page gives %v (%v)", what, got, err)
	return got
}

// textOf waits until the element of sel shows want.
func textOf(t *testing.T, ctx context.Context, sel, want string, timeout time.Duration) {
	t.Helper()
	js := fmt.Sprintf(`document.querySelector(%q)?.textContent.trim() ?? "(no such element)"`, sel)
	inPage(t, ctx, sel, js, timeout, func(got string) bool { return got == want })
}

// textHas waits until the element of sel contains want.
func textHas(t *testing.T, ctx context.Context, sel, want string, timeout time.Duration) string {
	t.Helper()
	js := fmt.Sprintf(`document.querySelector(%q)?.textContent.trim() ?? ""`, sel)
	return inPage(t, ctx, sel+" containing "+want, js, timeout, func(got string) bool { return strings.Contains(got, want) })
}

// screenshot saves the viewport, or the element of sel, as
// DASHBOARD_SCREENSHOTS/name.png when `make screenshots` asks for pictures.
func screenshot(t *testing.T, ctx context.Context, name, sel string) {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return
	}
	// Let the last change settle and the countdowns tick once.
	time.Sleep(1200 * time.Millisecond)
	shot := chromedp.CaptureScreenshot()
	if sel != "" {
		shot = chromedp.Screenshot(chromedp.CSS(sel))
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tabTo presses Tab, from the top of the page, until the element of sel
// has the focus: it must be reachable with the keyboard.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.activeElement?.blur(); window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	focused := fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel)
	for range 40 {
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](focused)); err == nil && ok {
			return
		}
	}
	t.Fatalf("40 presses of Tab never reached %s", sel)
}

// fitsWidth checks, at a phone's width, that the page needs no sideways
// scrolling.
func fitsWidth(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := chromedp.Do(ctx, chromedp.EmulateReset()); err != nil {
			t.Fatal(err)
		}
	}()
	width := `[document.documentElement.scrollWidth, document.documentElement.clientWidth]`
	inPage(t, ctx, page+" at 390 px", width, 5*time.Second, func(w []int) bool { return len(w) == 2 && w[0] <= w[1] })
	screenshot(t, ctx, page+"-phone", "")
}

// colorScheme has the page render as if the system preferred scheme
// ("light" or "dark").
func colorScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
}

// renamed is a fixture of the Rollout "web" as one named name (its
// Services, labels and images follow).
func renamed(yaml, name string) string { return strings.ReplaceAll(yaml, "web", name) }

// rolloutField reads one jsonpath of the Rollout web.
func rolloutField(t *testing.T, ns, path string) string {
	t.Helper()
	return strings.TrimSpace(cl.MustKubectl(t, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath="+path))
}

// pausedUpdate makes ns's Rollout web (canary, 4 replicas, a pause until
// promoted then a long timed one) and updates it to web:2: it waits at
// its second step.
func pausedUpdate(t *testing.T, ns string) {
	t.Helper()
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 50}, {pause: {duration: 1h}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 4", "web:1 4/4")
	setImage(t, ns, "web:2")
	waitStatus(t, ns, "Paused 1")
}

// waitStatus waits until ns's Rollout web shows want: its phase and, if
// want has one, its step index.
func waitStatus(t *testing.T, ns, want string) {
	t.Helper()
	eventually(t, 90*time.Second, "the Rollout "+want, func(ctx context.Context) (bool, string) {
		got := rolloutStatus(ctx, ns)
		phaseOnly := !strings.Contains(want, " ")
		return got == want || phaseOnly && strings.HasPrefix(got, want+" "), got
	})
}

// TestDashboardListIsLive: the list shows the test's Rollouts (two
// canaries and a blue-green), and a canary update moves its step and
// weight in the page without a reload.
func TestDashboardListIsLive(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 50}]"), "-n", ns, "apply", "-f", "-")
	cl.MustKubectl(t, renamed(canaryServices+"---"+canaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "checkout"), "-n", ns, "apply", "-f", "-")
	cl.MustKubectl(t, renamed(blueGreenYAML, "api"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 4/4")
	d := startDashboard(t, ns)
	ctx := browser(t)
	row := func(name string) string { return fmt.Sprintf(`tr[data-rollout="%s/%s"]`, ns, name) }
	visit(t, ctx, d.URL, row("web"))
	for name, strategy := range map[string]string{"web": "canary", "checkout": "canary", "api": "blueGreen"} {
		textOf(t, ctx, row(name)+" .strategy", strategy, 30*time.Second)
		textOf(t, ctx, row(name)+" .status", "Healthy", 30*time.Second)
	}
	images := func(name string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('%s .images code')].map((c) => c.textContent).sort().join(' ')`, row(name))
	}
	inPage(t, ctx, "web's images", images("web"), time.Second, func(s string) bool { return s == "web:1" })
	textOf(t, ctx, "#count", "3 rollouts", time.Second)

	setImage(t, ns, "web:2")
	textOf(t, ctx, row("web")+" .step", "2/3", 60*time.Second)
	textOf(t, ctx, row("web")+" .weight", "25%", 10*time.Second)
	textOf(t, ctx, row("web")+" .status", "Paused", 10*time.Second)
	inPage(t, ctx, "web's images", images("web"), 10*time.Second, func(s string) bool { return s == "web:2" })

	// The filters: by text, then by status.
	click(t, ctx, "#filter")
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#filter"), "check")); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#count", "1 of 3 rollouts", 5*time.Second)
	// Clear the text; choose Paused as a user's select would.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(() => {
  const f = document.getElementById('filter');
  f.value = '';
  f.dispatchEvent(new Event('input', {bubbles: true}));
  const sel = document.getElementById('status-filter');
  sel.value = 'Paused';
  sel.dispatchEvent(new Event('change', {bubbles: true}));
})()`)); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#count", "1 of 3 rollouts", 5*time.Second)
	textOf(t, ctx, "table#rollouts tbody tr .name", "web", time.Second)

	// For the README and docs/dashboard.md.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL)); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#count", "3 rollouts", 10*time.Second)
	screenshot(t, ctx, "dashboard-list", "")
	fitsWidth(t, ctx, "dashboard-list")
}

// TestDashboardPromoteAndAbort: on a Rollout's page, promote advances the
// paused update; abort asks first (no does nothing), and yes aborts it.
// The page follows each change without a reload.
func TestDashboardPromoteAndAbort(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	pausedUpdate(t, ns)
	d := startDashboard(t, ns)
	ctx := browser(t)
	visit(t, ctx, d.rolloutURL(ns, "web"), "#steps")
	textOf(t, ctx, "#phase", "Paused", 10*time.Second)
	textOf(t, ctx, `#steps li[aria-current="step"] .text`, "pause until promoted", 10*time.Second)

	click(t, ctx, `button[data-action="promote"]`)
	textOf(t, ctx, "#action-result", `rollout "web" promoted`, 10*time.Second)
	waitStatus(t, ns, "Paused 3")
	textOf(t, ctx, `#steps li[aria-current="step"] .text`, "pause 1h", 10*time.Second)
	textHas(t, ctx, "#pauses", "left", 5*time.Second)
	if got := rolloutField(t, ns, `{.metadata.annotations.rollouts\.kubeseed\.io/promote}`); got == "" {
		t.Error("no promote request annotation on the Rollout after the click")
	}
	screenshot(t, ctx, "dashboard-rollout", "")
	fitsWidth(t, ctx, "dashboard-rollout")
	colorScheme(t, ctx, "dark")
	screenshot(t, ctx, "dashboard-rollout-dark", "")

	// Abort asks; no leaves the Rollout alone. First with the keyboard
	// alone: Tab to the button, Enter, Escape; then with the mouse.
	tabTo(t, ctx, `button[data-action="abort"]`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	textHas(t, ctx, "dialog#confirm[open]", "Abort the update of rollout "+ns+"/web?", 5*time.Second)
	if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Escape)); err != nil {
		t.Fatal(err)
	}
	dialogClosed := func() {
		t.Helper()
		inPage(t, ctx, "the dialog closed", `document.getElementById('confirm').open`, 5*time.Second, func(open bool) bool { return !open })
	}
	dialogClosed()
	click(t, ctx, `button[data-action="abort"]`)
	textHas(t, ctx, "dialog#confirm[open]", "Abort the update of rollout "+ns+"/web?", 5*time.Second)
	click(t, ctx, "#confirm-no")
	dialogClosed()
	if got := rolloutField(t, ns, `{.metadata.annotations.rollouts\.kubeseed\.io/abort}`); got != "" {
		t.Fatalf("answering no to the abort still requested one: %q", got)
	}
	click(t, ctx, `button[data-action="abort"]`)
	click(t, ctx, "#confirm-yes")
	textOf(t, ctx, "#action-result", `rollout "web" aborted`, 10*time.Second)
	waitStatus(t, ns, "Degraded")
	if got := rolloutField(t, ns, "{.status.abort}"); got != "true" {
		t.Errorf("status.abort = %q after the abort", got)
	}
	textOf(t, ctx, "#phase", "Degraded", 10*time.Second)
	textOf(t, ctx, ".title-row .flags", "aborted", 10*time.Second)
	textOf(t, ctx, `button[data-action="retry"]:not([disabled])`, "Retry", 10*time.Second)
}

// metricValues is the chart's points and thresholds of a metric, read
// from the page.
type metricValues struct {
	Points  []float64 `json:"points"`
	Success []float64 `json:"success"`
	Failure []float64 `json:"failure"`
	Caption string    `json:"caption"`
	Label   string    `json:"label"`
}

const readMetric = `(() => {
  const f = document.querySelector('figure.metric[data-metric="success-rate"]');
  if (!f) return null;
  const nums = (sel) => [...f.querySelectorAll(sel)].map((e) => Number(e.dataset.value));
  return {
    points: nums('svg circle.point'),
    success: nums('svg line.threshold.success'),
    failure: nums('svg line.threshold.failure'),
    caption: f.querySelector('figcaption').textContent,
    label: f.querySelector('svg').getAttribute('aria-label'),
  };
})()`

// TestDashboardFailingAnalysis: a step analysis measures 0.97, 0.95 and
// then 0.25 against a success threshold of 0.9; the Rollout aborts, and
// its page draws the three measured values and the threshold.
func TestDashboardFailingAnalysis(t *testing.T) {
	t.Parallel()
	values := []string{"0.97", "0.95"}
	var mu sync.Mutex
	check := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		v := "0.25"
		if len(values) > 0 {
			v, values = values[0], values[1:]
		}
		mu.Unlock()
		_, _ = fmt.Fprintf(w, `{"rate": %s}`, v)
	}))
	t.Cleanup(check.Close)
	ns := namespace(t)
	template := fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
  - name: success-rate
    interval: 1s
    count: 10
    successCondition: "result >= 0.9"
    provider: {web: {url: %q, jsonPath: "{$.rate}"}}
`, check.URL)
	cl.MustKubectl(t, canaryServices+"---"+template+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {analysis: {templates: [{templateName: success-rate}]}}, {setWeight: 50}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 3", "web:1 4/4")
	d := startDashboard(t, ns)
	ctx := browser(t)
	visit(t, ctx, d.rolloutURL(ns, "web"), "#analysis")

	setImage(t, ns, "web:2")
	waitStatus(t, ns, "Degraded")
	got := inPage(t, ctx, "the chart of success-rate", readMetric, 10*time.Second, func(m *metricValues) bool {
		return m != nil && len(m.Points) == 3
	})
	if want := []float64{0.97, 0.95, 0.25}; !slices.Equal(got.Points, want) {
		t.Errorf("the chart's points are %v, want %v", got.Points, want)
	}
	if !slices.Equal(got.Success, []float64{0.9}) || len(got.Failure) != 0 {
		t.Errorf("the chart's thresholds: success %v, failure %v; want success [0.9]", got.Success, got.Failure)
	}
	for _, want := range []string{"Failed", "last value 0.25", "result >= 0.9"} {
		if !strings.Contains(got.Caption, want) {
			t.Errorf("the metric's caption %q lacks %q", got.Caption, want)
		}
	}
	if want := "success-rate: 3 numeric measurements, last 0.25, success threshold 0.9"; got.Label != want {
		t.Errorf("the chart's label is %q, want %q", got.Label, want)
	}
	textOf(t, ctx, "#phase", "Degraded", 10*time.Second)
	screenshot(t, ctx, "dashboard-analysis", "#analysis")
}

// TestDashboardForbidden: a user who may read Rollouts but not patch them
// clicks promote and reads the API server's refusal; nothing changes.
func TestDashboardForbidden(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	pausedUpdate(t, ns)
	cl.MustKubectl(t, `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: viewer}
rules:
- {apiGroups: [rollouts.kubeseed.io], resources: [rollouts, analysisruns, experiments], verbs: [get, list, watch]}
- {apiGroups: [apps], resources: [replicasets], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [pods, events], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer}]
`, "-n", ns, "apply", "-f", "-")
	d := startDashboard(t, ns, "--as", "viewer")
	ctx := browser(t)
	visit(t, ctx, d.rolloutURL(ns, "web"), "#steps")
	textOf(t, ctx, "#phase", "Paused", 10*time.Second)

	click(t, ctx, `button[data-action="promote"]`)
	msg := textHas(t, ctx, "#action-result.error", "forbidden", 10*time.Second)
	if want := `is forbidden: User "viewer" cannot patch resource "rollouts"`; !strings.Contains(msg, want) {
		t.Errorf("the page says %q, want the API server's %q", msg, want)
	}
	if got := rolloutField(t, ns, `{.metadata.annotations.rollouts\.kubeseed\.io/promote}`); got != "" {
		t.Errorf("the forbidden promote changed the Rollout: %q", got)
	}
	if got := rolloutStatus(context.Background(), ns); got != "Paused 1" {
		t.Errorf("the Rollout is %q after a forbidden promote, want Paused 1", got)
	}
}

// attackPage is a page of another site that tries the dashboard's
// actions: a form POST (the classic cross-site request), a no-cors fetch,
// and a fetch with a made-up token, which needs a CORS preflight.
const attackPage = `<!doctype html><title>attack</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="%[1]s/actions/promote" target="sink"></form>
<pre id="out"></pre>
<script>
const out = (s) => { document.getElementById('out').textContent += s + '\n'; };
fetch('%[1]s/actions/abort', {method: 'POST', mode: 'no-cors'})
  .then(() => out('no-cors sent'), (e) => out('no-cors failed: ' + e));
fetch('%[1]s/actions/abort', {method: 'POST', headers: {'X-Rollouts-Token': 'guessed'}})
  .then((r) => out('token fetch answered ' + r.status), (e) => out('token fetch failed: ' + e));
document.getElementById('f').submit();
</script>`

// TestDashboardRefusesCrossSitePOST: a page of another site open in the
// same browser cannot act through the dashboard.
func TestDashboardRefusesCrossSitePOST(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	pausedUpdate(t, ns)
	d := startDashboard(t, ns)
	target := strings.TrimSuffix(d.URL, "/") + "/api/rollouts/" + ns + "/web"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, fmt.Sprintf(attackPage, target))
	}))
	t.Cleanup(evil.Close)
	ctx := browser(t)
	// Another site: localhost, not the dashboard's 127.0.0.1.
	visit(t, ctx, strings.Replace(evil.URL, "127.0.0.1", "localhost", 1), "#out")
	out := inPage(t, ctx, "the attack's fetches", `document.getElementById('out').textContent`, 10*time.Second, func(s string) bool {
		return strings.Count(s, "\n") >= 2
	})
	if !strings.Contains(out, "token fetch failed") {
		t.Errorf("the fetch with a made-up token got through its preflight: %s", out)
	}
	eventually(t, 10*time.Second, "the dashboard refusing both POSTs", func(context.Context) (bool, string) {
		log := d.stderr()
		return strings.Contains(log, "/web/actions/promote") && strings.Contains(log, "/web/actions/abort"), log
	})
	// An action the dashboard carried out, or passed to the API server,
	// logs "Action" or "Action refused"; only its own refusals may be there.
	for _, line := range strings.Split(d.stderr(), "\n") {
		if strings.Contains(line, `"msg"="Action`) {
			t.Errorf("the dashboard acted on the attack: %s", line)
		}
	}
	if n := strings.Count(d.stderr(), `"msg"="Refused a request"`); n != 2 {
		t.Errorf("the dashboard refused %d requests, want 2 (the form and the no-cors fetch):\n%s", n, d.stderr())
	}
	for _, a := range []string{v1alpha1.PromoteAnnotation, v1alpha1.AbortAnnotation} {
		path := `{.metadata.annotations.` + strings.ReplaceAll(a, ".", `\.`) + `}`
		if got := rolloutField(t, ns, path); got != "" {
			t.Errorf("the attack wrote %s=%s", a, got)
		}
	}
	if got := rolloutStatus(context.Background(), ns); got != "Paused 1" {
		t.Errorf("the Rollout is %q after the attack, want Paused 1", got)
	}
}
