//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
)

const (
	// splitRequests is how many requests measure each weight (issue 18:
	// at least 2,000).
	splitRequests = 2000
	// splitRate is the request rate: 2,000 requests take 10 s.
	splitRate = 200
	// splitTolerance is how far, in shares, a measured split may be from
	// the weight.
	splitTolerance = 0.02
)

// measure sends n requests to target and fails the test on any failed one.
func measure(t *testing.T, target load.Target, n int) load.Results {
	t.Helper()
	rs, err := load.Send(context.Background(), target, load.Options{Rate: splitRate}, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != n {
		t.Fatalf("%d of %d requests recorded", len(rs), n)
	}
	if err := rs.Err(10); err != nil {
		t.Errorf("through %s with Host %s: %v\ntraefik access log: %s", target.URL, target.Host, err, traefik.AccessLog)
	}
	return rs
}

// TestDataPlaneSplitAccuracy: at each weight of a routed canary update,
// 2,000 real requests through Traefik are answered by the canary's pods in
// the share the weight says, within 2 percentage points.
func TestDataPlaneSplitAccuracy(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	weights := []int{10, 25, 50, 90}
	var steps []string
	for _, w := range weights {
		steps = append(steps, fmt.Sprintf("{setWeight: %d}", w), "{pause: {}}")
	}
	target := routedApp(t, ns, kwok.RoutedCanaryRolloutYAML(4, "[]", "["+strings.Join(steps, ", ")+"]"))
	waitFor(t, ns, fmt.Sprintf("Healthy %d", len(steps)), "web:1 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})

	// Before the update every request reaches the one revision there is.
	rs := measure(t, target, 200)
	stable, _ := revisions(t, ns)
	if got := rs.Share(stable); got != 1 {
		t.Fatalf("before the update the stable revision %s answered %.1f %% (%v), want all", stable, 100*got, rs.ByRevision())
	}

	setImage(t, ns, "web:2")
	var report []string
	canaryAnswers := 0
	for i, w := range weights {
		canaryPods := (4*w + 99) / 100
		waitFor(t, ns, fmt.Sprintf("Paused %d", 2*i+1), fmt.Sprintf("web:1 4/4, web:2 %d/%d", canaryPods, canaryPods))
		waitApplied(t, ns, []string{fmt.Sprintf("web-stable=%d,web-canary=%d", 100-w, w)})
		stable, canary := revisions(t, ns)
		start := time.Now()
		rs := measure(t, target, splitRequests)
		got := rs.Share(canary)
		canaryAnswers += rs.ByRevision()[canary]
		report = append(report, fmt.Sprintf("weight %d: canary %.2f %%", w, 100*got))
		t.Logf("weight %d: %d requests in %s, canary %s answered %.2f %%, stable %s %.2f %% (%v)",
			w, len(rs), time.Since(start).Round(time.Millisecond), canary, 100*got, stable, 100*rs.Share(stable), rs.ByRevision())
		if want := float64(w) / 100; math.Abs(got-want) > splitTolerance {
			t.Errorf("weight %d: the canary answered %.2f %% of %d requests, want %d ± %.0f %%", w, 100*got, len(rs), w, 100*splitTolerance)
		}
		if rest := got + rs.Share(stable); rest != 1 {
			t.Errorf("weight %d: stable and canary answered %.2f %% together, want all", w, 100*rest)
		}
		request(t, ns, "promote", fmt.Sprintf("p%d", i))
	}
	waitFor(t, ns, fmt.Sprintf("Healthy %d", len(steps)), "web:2 4/4")
	t.Logf("measured split: %s", strings.Join(report, "; "))

	// Traefik's own count of the canary Service's requests, which an
	// analysis would read, is what the pods answered.
	series := fmt.Sprintf(`traefik_service_requests_total{code="200",method="GET",protocol="http",service="%s-web-canary-http-80@kubernetesgateway"}`, ns)
	if got := traefikCounter(t, series); got != float64(canaryAnswers) {
		t.Errorf("%s = %v, want the %d requests the canary's pods answered", series, got, canaryAnswers)
	}
	checkDataPlane(t)
}

// traefikCounter reads one series of Traefik's metrics (0 when absent).
func traefikCounter(t *testing.T, series string) float64 {
	t.Helper()
	code, body, err := kwok.HTTPGet(context.Background(), traefik.Metrics)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v", traefik.Metrics, code, err)
	}
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// TestDataPlaneHeaderRoute: with a header route set, every request that
// carries the header reaches the canary, and none of those without it.
func TestDataPlaneHeaderRoute(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	steps := `[{setCanaryScale: {replicas: 1}}, {setHeaderRoute: {name: beta, match: [{headerName: X-Canary, headerValue: {exact: "yes"}}]}}, {pause: {}}]`
	target := routedApp(t, ns, kwok.RoutedCanaryRolloutYAML(3, "[{name: beta}]", steps))
	waitFor(t, ns, "Healthy 3", "web:1 3/3")

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 2", "web:1 3/3, web:2 1/1")
	stable, canary := revisions(t, ns)
	// The managed rule goes first and sends to the canary alone; the
	// user's rule keeps all traffic on the stable.
	waitApplied(t, ns, []string{"web-canary=1", "web-stable=100,web-canary=0"})

	with := target
	with.Header = http.Header{"X-Canary": {"yes"}}
	withHeader := measure(t, with, 500)
	without := measure(t, target, 500)
	t.Logf("with X-Canary: yes: %v; without: %v (canary %s, stable %s)", withHeader.ByRevision(), without.ByRevision(), canary, stable)
	if got := withHeader.Share(canary); got != 1 {
		t.Errorf("with the header the canary answered %.2f %%, want 100 %%", 100*got)
	}
	if got := without.Share(canary); got != 0 {
		t.Errorf("without the header the canary answered %.2f %%, want 0 %%", 100*got)
	}
	if got := without.Share(stable); got != 1 {
		t.Errorf("without the header the stable answered %.2f %%, want 100 %%", 100*got)
	}

	// Another value of the header is not the match.
	other := target
	other.Header = http.Header{"X-Canary": {"no"}}
	if got := measure(t, other, 200).Share(stable); got != 1 {
		t.Errorf("with X-Canary: no the stable answered %.2f %%, want 100 %%", 100*got)
	}

	request(t, ns, "promote", "p")
	waitFor(t, ns, "Healthy 3", "web:2 3/3")
	checkDataPlane(t)
}
