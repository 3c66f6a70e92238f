//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
)

// The "no request lost" acceptance tests of issue 18: a steady load
// through Traefik for a whole test, across updates, promotions and aborts,
// and not one request may fail. Failures come with the controller's
// writes around them (failureTimeline).

const (
	// lostRate is the load's request rate.
	lostRate = 60
	// lostMinRate is the least rate the load must have kept over a test
	// (issue 18: at least 50 requests a second).
	lostMinRate = 50
	// lostAnswers is how many answers a revision gives before a test moves
	// on: the load crosses every state the test reaches.
	lostAnswers = 100
)

// steadyLoad is the load of one test.
type steadyLoad struct {
	gen    *load.Generator
	ns     string
	host   string
	start  time.Time
	result load.Results
	// expected, if set, says which failed requests the test means to
	// cause (the 500s of a bad release); every other one fails the test.
	expected func(load.Result) bool
}

// startLoad sends lostRate requests a second to target until stop; a test
// that ends before stop (t.Fatal) still gets its failures reported.
func startLoad(t *testing.T, ns string, target load.Target) *steadyLoad {
	t.Helper()
	g, err := load.Start(context.Background(), target, load.Options{Rate: lostRate})
	if err != nil {
		t.Fatal(err)
	}
	l := &steadyLoad{gen: g, ns: ns, host: target.Host, start: time.Now()}
	t.Cleanup(func() {
		if l.result == nil {
			l.stop(t)
		}
	})
	return l
}

// waitAnswers waits until revision has answered at least n requests.
func (l *steadyLoad) waitAnswers(t *testing.T, revision string, n int) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%d answers from revision %s", n, revision), func(context.Context) (bool, string) {
		by := l.gen.Results().ByRevision()
		return by[revision] >= n, fmt.Sprintf("answers by revision %v", by)
	})
}

// stop stops the load and fails the test on any failed request it did not
// expect, printing each with what happened around it.
func (l *steadyLoad) stop(t *testing.T) load.Results {
	t.Helper()
	l.result = l.gen.Stop()
	unexpected := l.result
	if l.expected != nil {
		unexpected = slices.DeleteFunc(slices.Clone(l.result), l.expected)
	}
	if err := unexpected.Err(10); err != nil {
		t.Errorf("%v\n%s", err, failureTimeline(l.ns, l.host, unexpected))
	}
	return l.result
}

// check stops the load and checks it kept lostMinRate and that each of
// revisions (name: pod-template-hash) answered some of it; it logs the
// counts.
func (l *steadyLoad) check(t *testing.T, revisions map[string]string) {
	t.Helper()
	rs := l.stop(t)
	took := time.Since(l.start)
	by := rs.ByRevision()
	var names, counts []string
	for name := range revisions {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		counts = append(counts, fmt.Sprintf("%s (%s) %d", name, revisions[name], by[revisions[name]]))
		if by[revisions[name]] == 0 {
			t.Errorf("revision %s (%s) answered no request: %v", name, revisions[name], by)
		}
	}
	failed := len(rs.Failures())
	t.Logf("%d requests in %s at %.1f/s, %d failed; %s", len(rs), took.Round(time.Second), float64(len(rs))/took.Seconds(), failed, strings.Join(counts, ", "))
	if want := int(lostMinRate * took.Seconds()); len(rs) < want {
		t.Errorf("%d requests in %s: want at least %d (%d/s)", len(rs), took.Round(time.Second), want, lostMinRate)
	}
}

// TestDataPlaneNoRequestLostCanary: under a steady load through Traefik, a
// routed canary is updated, promoted through its steps to Healthy, updated
// again and aborted, and not one request fails.
// updateToTwenty sets image and waits until the update is paused at its
// first step with the ReplicaSets at sizes, the route at 20 % and the new
// revision answering; it returns that revision.
func (l *steadyLoad) updateToTwenty(t *testing.T, ns, image, sizes string) string {
	t.Helper()
	setImage(t, ns, image)
	waitFor(t, ns, "Paused 1", sizes)
	waitApplied(t, ns, []string{"web-stable=80,web-canary=20"})
	_, revision := revisions(t, ns)
	l.waitAnswers(t, revision, lostAnswers/5)
	return revision
}

func TestDataPlaneNoRequestLostCanary(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	steps := "[{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {duration: 5s}}]"
	target := routedApp(t, ns, kwok.RoutedCanaryRolloutYAML(4, "[]", steps))
	waitFor(t, ns, "Healthy 4", "web:1 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	v1, _ := revisions(t, ns)

	l := startLoad(t, ns, target)
	l.waitAnswers(t, v1, lostAnswers)

	// An update, promoted: 20 %, then 60 % for 5 s, then all of it; the
	// previous stable goes scaleDownDelaySeconds after.
	v2 := l.updateToTwenty(t, ns, "web:2", "web:1 4/4, web:2 1/1")
	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Healthy 4", "web:2 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	l.waitAnswers(t, v2, lostAnswers)

	// Another update, aborted at 20 %: all traffic back on the stable at
	// once, the canary gone abortScaleDownDelaySeconds after.
	v3 := l.updateToTwenty(t, ns, "web:3", "web:2 4/4, web:3 1/1")
	request(t, ns, "abort", "a1")
	waitFor(t, ns, "Degraded 1", "web:2 4/4")
	waitApplied(t, ns, []string{"web-stable=100,web-canary=0"})
	after := l.gen.Results().ByRevision()[v2]
	l.waitAnswers(t, v2, after+lostAnswers)

	l.check(t, map[string]string{"web:1": v1, "web:2": v2, "web:3 (aborted)": v3})
	checkDataPlane(t)
}

// blueGreenRollout is a blue-green Rollout web of image web:1 whose active
// Service is web-stable, the one the HTTPRoute sends to, and whose preview
// is web-canary; it waits for promote.
const blueGreenRollout = `
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1", ports: [{containerPort: 8080}]}]}
  strategy:
    blueGreen:
      activeService: web-stable
      previewService: web-canary
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 5
      abortScaleDownDelaySeconds: 5
`

// TestDataPlaneNoRequestLostBlueGreen: under a steady load through Traefik
// to the active Service, a blue-green update is promoted (the switch, then
// the previous revision scaled down), another one aborted, and not one
// request fails.
func TestDataPlaneNoRequestLostBlueGreen(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	target := routedApp(t, ns, blueGreenRollout)
	// The route is the user's: one backend, of the default weight.
	route := []string{"web-stable=1"}
	waitFor(t, ns, "Healthy", "web:1 3/3")
	waitApplied(t, ns, route)
	v1, _ := revisions(t, ns)

	l := startLoad(t, ns, target)
	l.waitAnswers(t, v1, lostAnswers)

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused", "web:1 3/3, web:2 3/3")
	waitApplied(t, ns, route)
	_, v2 := revisions(t, ns)
	before := l.gen.Results().ByRevision()[v1]
	l.waitAnswers(t, v1, before+lostAnswers)
	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Healthy", "web:2 3/3")
	waitApplied(t, ns, route)
	l.waitAnswers(t, v2, lostAnswers)

	// An update aborted in preview: the active Service never leaves the
	// stable, and the preview pods go abortScaleDownDelaySeconds after.
	setImage(t, ns, "web:3")
	waitFor(t, ns, "Paused", "web:2 3/3, web:3 3/3")
	waitApplied(t, ns, route)
	request(t, ns, "abort", "a1")
	waitFor(t, ns, "Degraded", "web:2 3/3")
	waitApplied(t, ns, route)
	after := l.gen.Results().ByRevision()[v2]
	l.waitAnswers(t, v2, after+lostAnswers)

	l.check(t, map[string]string{"web:1": v1, "web:2": v2})
	checkDataPlane(t)
}
