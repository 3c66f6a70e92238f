//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/testenv"
)

// Analysis on real traffic (issue 18): under a steady load through
// Traefik, an analysis step reads the canary's share of 5xx answers from
// Traefik's own request counters, scraped by a real Prometheus. A release
// whose pods answer 30 % 500s is aborted, a good one promoted.

const (
	// trafficInterval is the measurement interval of the analysis on
	// Traefik's metrics, and the window each measurement judges.
	//
	// The abort must come within 2 intervals of the canary's first answer
	// (issue 18). Prometheus scrapes every second, and rate() needs two
	// samples: the canary's series have them at most 2 s after its first
	// answer, 3 s when its first 5xx comes a scrape after that (until then
	// the share reads 0, and passes). The next measurement comes within an
	// interval, and the Rollout aborts in the reconcile that sees it fail:
	// 3 s + 5 s leave 2 s of the 10 s for the controller and a loaded
	// machine.
	trafficInterval = 5 * time.Second
	// trafficMeasurements good measurements pass the analysis step.
	trafficMeasurements = 3
	// settledRequests is how many requests, sent once Traefik routes as
	// the ended update says, must all be answered by the revision left.
	settledRequests = 200
	// badRelease answers 30 % of requests with 500 (test/podsim).
	badRelease = "web:bad-30"
)

// traefikErrorsTemplate is the AnalysisTemplate canary-5xx: every
// trafficInterval, the share of the requests to the canary Service that
// Traefik saw answered with a 5xx over the last interval. Traefik names the
// backendRef web-canary, port 80, of an HTTPRoute in namespace NS
// "NS-web-canary-http-80@kubernetesgateway" (its Gateway API provider:
// <namespace>-<service>-http-<port>, then @<provider>), and the canary
// Service selects the canary's pods only.
//
// No series (the canary has had no traffic yet) or 0/0 (none in the
// window) is no data, and no verdict on the canary: noDataPolicy Skip
// measures again an interval later. Once the canary has answered, a
// missing 5xx series means Traefik has counted no 5xx answer, hence the
// numerator's "or vector(0)".
func traefikErrorsTemplate(prometheus string) string {
	series := `traefik_service_requests_total{service="{{args.namespace}}-web-canary-http-80@kubernetesgateway"%s}[` + trafficInterval.String() + `]`
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: canary-5xx}
spec:
  args: [{name: namespace}]
  metrics:
  - name: canary-5xx
    interval: %s
    count: %d
    noDataPolicy: Skip
    successCondition: "result[0] < %g"
    provider:
      prometheus:
        address: %s
        query: |
          (sum(rate(%s)) or vector(0))
          /
          sum(rate(%s))
`, trafficInterval, trafficMeasurements, maxErrorRate, prometheus,
		fmt.Sprintf(series, `, code=~"5.."`), fmt.Sprintf(series, ""))
}

// trafficAnalysisSteps: 20 % of the traffic to the canary, the analysis
// on it, then 60 %, then all.
const trafficAnalysisSteps = `[{setWeight: 20}, {analysis: {templates: [{templateName: canary-5xx}], args: [{name: namespace, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]}}, {setWeight: 60}]`

// TestDataPlaneAnalysis runs analyses on Traefik's metrics, scraped by one
// Prometheus, under real requests.
func TestDataPlaneAnalysis(t *testing.T) {
	t.Parallel()
	metrics, err := url.Parse(proxy(t).Metrics)
	if err != nil {
		t.Fatal(err)
	}
	// StartPrometheus scrapes host:port at the default path.
	if metrics.Path != "/metrics" {
		t.Fatalf("Traefik's metrics are at %s, not at Prometheus's default path /metrics", metrics)
	}
	prom := testenv.StartPrometheus(t, metrics.Host)
	for _, c := range []struct {
		name string
		run  func(t *testing.T, prometheus string)
	}{
		{"AbortsBadRelease", analysisAbortsBadRelease},
		{"PromotesGoodRelease", analysisPromotesGoodRelease},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, prom)
		})
	}
}

// startAnalyzedApp installs the routed Rollout with the analysis step, waits
// until it is Healthy and routed, and starts the steady load; it returns
// the load and the first revision.
func startAnalyzedApp(t *testing.T, ns, prometheus string) (*steadyLoad, string) {
	t.Helper()
	target := routedApp(t, ns, traefikErrorsTemplate(prometheus)+"---"+kwok.RoutedCanaryRolloutYAML(4, "[]", trafficAnalysisSteps))
	waitFor(t, ns, "Healthy 3", "web:1 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	v1, _ := revisions(t, ns)
	l := startLoad(t, ns, target)
	l.waitAnswers(t, v1, lostAnswers)
	return l, v1
}

// analysisAbortsBadRelease: the analysis aborts a release whose pods answer
// 30 % 500s within 2 measurement intervals of its first answer, and then
// the stable answers every request.
func analysisAbortsBadRelease(t *testing.T, prometheus string) {
	ns := namespace(t)
	l, v1 := startAnalyzedApp(t, ns, prometheus)
	// The bad release's 500s are what the analysis must catch; any other
	// failure fails the test.
	l.expected = func(r load.Result) bool {
		return r.Err == "" && r.Status == http.StatusInternalServerError && r.Image == badRelease
	}

	setImage(t, ns, badRelease)
	waitFor(t, ns, "Degraded 1", "web:1 4/4")
	ro := getRollout(t, ns)
	v2 := ro.Status.CurrentPodHash
	_, mr, failed := checkFailedRun(t, ro, onlyRun(t, ns))

	// From the canary's first request to the abort: the request's start
	// (Traefik counts it later), the controller's AnalysisRunFailed event
	// (recorded after its abort's writes).
	first, ok := firstAnswer(l.gen.Results(), v2)
	if !ok {
		t.Fatalf("the bad release %s answered no request before the abort: %v", v2, l.gen.Results().ByRevision())
	}
	if failed.FinishedAt == nil {
		t.Fatalf("the failing measurement has no finishedAt: %+v", failed)
	}
	abortedAt := recordedAt(t, ns, v1alpha1.ReasonAnalysisRunFailed)
	delay := abortedAt.Sub(first.Start)
	t.Logf("measurement interval %s: the canary %s answered first at %s; the failing measurement (%s) ended %s after, the abort came %s after (%d measurements retained, skipped ones not: %s)",
		trafficInterval, v2, first.Start.Format(timeOfDay), failed.Value, failed.FinishedAt.Sub(first.Start).Round(time.Millisecond),
		delay.Round(time.Millisecond), len(mr.Measurements), measurementSummary(mr.Measurements))
	if delay > 2*trafficInterval {
		t.Errorf("the abort came %s after the canary's first answer, want within 2 measurement intervals (%s)", delay.Round(time.Millisecond), 2*trafficInterval)
	}

	// All traffic is back on the stable.
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	l.settle(t, v1)
	l.check(t, map[string]string{"web:1": v1, badRelease + " (aborted)": v2})
	checkDataPlane(t)
}

// analysisPromotesGoodRelease: the analysis passes a release whose pods
// answer every request, which then takes all of them.
func analysisPromotesGoodRelease(t *testing.T, prometheus string) {
	ns := namespace(t)
	l, v1 := startAnalyzedApp(t, ns, prometheus)

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Healthy 3", "web:2 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	_, v2 := revisions(t, ns)
	l.settle(t, v2)
	l.check(t, map[string]string{"web:1": v1, "web:2": v2})

	run := getAnalysisRun(t, ns, onlyRun(t, ns))
	mr := onlyMetric(t, run)
	t.Logf("AnalysisRun %s is %s, measured %s", run.Name, run.Status.Phase, measurementSummary(mr.Measurements))
	if run.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Successful != trafficMeasurements || mr.Count != trafficMeasurements {
		t.Errorf("AnalysisRun %s is %s with %d of %d measurements successful (%s), want %d of %d",
			run.Name, run.Status.Phase, mr.Successful, mr.Count, run.Status.Message, trafficMeasurements, trafficMeasurements)
	}
	for _, m := range mr.Measurements {
		if v, ok := measuredValue(m); !ok || v >= maxErrorRate {
			t.Errorf("measurement %s with value %q, want a share of 5xx below %g", m.Phase, m.Value, maxErrorRate)
		}
	}
	checkDataPlane(t)
}

// onlyRun returns the name of the one AnalysisRun of ns.
func onlyRun(t *testing.T, ns string) string {
	t.Helper()
	runs := strings.Fields(cl.MustKubectl(t, "", "-n", ns, "get", "ar", "-o", "name"))
	if len(runs) != 1 {
		t.Fatalf("AnalysisRuns %v, want one", runs)
	}
	_, name, _ := strings.Cut(runs[0], "/")
	return name
}

// firstAnswer is the first request, by start, that revision answered.
func firstAnswer(rs load.Results, revision string) (load.Result, bool) {
	for _, r := range rs {
		if r.Revision == revision {
			return r, true
		}
	}
	return load.Result{}, false
}

// recordedAt waits for the Rollout's event of reason in ns and returns when
// the controller recorded it.
func recordedAt(t *testing.T, ns, reason string) time.Time {
	t.Helper()
	var at time.Time
	eventually(t, 30*time.Second, "a "+reason+" event", func(ctx context.Context) (bool, string) {
		events, err := rolloutEventList(ctx, ns)
		if err != nil {
			return false, err.Error()
		}
		var reasons []string
		for _, e := range events {
			if e.Reason == reason {
				at = eventTime(e)
				return true, ""
			}
			reasons = append(reasons, e.Reason)
		}
		return false, fmt.Sprintf("events %v", reasons)
	})
	return at
}

// settle waits for settledRequests requests sent from now on and fails the
// test unless revision answered every one of them.
func (l *steadyLoad) settle(t *testing.T, revision string) {
	t.Helper()
	from := time.Now()
	var since load.Results
	eventually(t, 60*time.Second, fmt.Sprintf("%d requests", settledRequests), func(context.Context) (bool, string) {
		since = l.gen.Results().Between(from, time.Now())
		return len(since) >= settledRequests, fmt.Sprintf("%d requests", len(since))
	})
	if got := since.ByRevision(); got[revision] != len(since) || len(since.Failures()) > 0 {
		t.Errorf("of the %d requests sent once the route was settled, revision %s answered %d (%v), %d failed; want all, none",
			len(since), revision, got[revision], got, len(since.Failures()))
	}
}
