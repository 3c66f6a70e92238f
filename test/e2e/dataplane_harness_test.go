//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/kubeseed/rollouts/test/dataplane"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/load"
)

// The data plane (DESIGN §15): podsim makes every Running pod of the
// cluster answer HTTP on its loopback IP for the whole run, so its
// loopback guard covers every test; Traefik, the Gateway API
// implementation, starts with the first test that needs it.
var (
	pods       *dataplane.Pods
	traefikMu  sync.Mutex
	traefik    *kwok.Traefik
	traefikErr error
)

// startPodsim starts the pod simulator, logging to the run's log directory.
func startPodsim() (err error) {
	pods, err = dataplane.StartPods(cl)
	return err
}

// stopDataPlane stops Traefik and the pod simulator and reports what went
// wrong with either during the run: a pod the simulator refused (an
// address outside loopback above all), Traefik exiting early.
func stopDataPlane() error {
	var problems []string
	traefikMu.Lock()
	if traefik != nil {
		if err := traefik.Exited(); err != nil {
			problems = append(problems, fmt.Sprintf("traefik: %v; log %s", err, traefik.LogPath))
		} else {
			_ = traefik.Stop(10 * time.Second)
		}
	}
	traefikMu.Unlock()
	if pods != nil {
		pods.Stop()
		if err := pods.Err(); err != nil {
			problems = append(problems, fmt.Sprintf("pod simulator (log %s): %v", pods.LogPath, err))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("data plane:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

// proxy returns the run's Traefik, starting it on first use; a Traefik
// that does not start fails the test with its log.
func proxy(t *testing.T) *kwok.Traefik {
	t.Helper()
	traefikMu.Lock()
	defer traefikMu.Unlock()
	if traefik == nil && traefikErr == nil {
		traefik, traefikErr = cl.StartTraefik("traefik")
	}
	if traefikErr != nil {
		t.Fatal(traefikErr)
	}
	if err := traefik.Exited(); err != nil {
		t.Fatalf("%v; log %s:\n%s", err, traefik.LogPath, traefik.Log())
	}
	return traefik
}

// checkDataPlane fails the test when the pod simulator refused a pod so
// far (the run fails too, at its end, for pods of other tests).
func checkDataPlane(t *testing.T) {
	t.Helper()
	if err := pods.Err(); err != nil {
		t.Errorf("pod simulator: %v", err)
	}
}

// routedApp is dataplane.RoutedApp on the run's Traefik, failing the test
// on error.
func routedApp(t *testing.T, ns, rolloutYAML string) load.Target {
	t.Helper()
	target, err := dataplane.RoutedApp(context.Background(), cl, proxy(t), ns, rolloutYAML)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// revisions returns the stable and the canary (current) pod-template-hash
// of the Rollout web.
func revisions(t *testing.T, ns string) (stable, canary string) {
	t.Helper()
	stable, canary = revisionsOf(context.Background(), ns)
	if stable == "" {
		t.Fatalf("Rollout web has no stable and current hash")
	}
	return stable, canary
}

// traefikService is a service of Traefik's API, /api/http/services.
type traefikService struct {
	Name     string `json:"name"`
	Weighted *struct {
		Services []struct {
			Name   string `json:"name"`
			Weight int    `json:"weight"`
		} `json:"services"`
	} `json:"weighted"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

// applied is what Traefik routes by now for the HTTPRoute web of a
// namespace: for each weighted service Traefik made of the route's rules,
// "backend=weight,…" in the order of the rule's backendRefs; for each
// backend Service, the addresses it sends to ("ip:port,…", sorted). Names
// follow Traefik's Gateway provider: <namespace>-<service>-http-<port>.
type applied struct {
	weights []string
	servers map[string]string
}

func (a applied) String() string { return fmt.Sprintf("weights %v, servers %v", a.weights, a.servers) }

func appliedRoutes(ctx context.Context, ns string) (applied, error) {
	code, body, err := kwok.HTTPGet(ctx, traefik.API+"/api/http/services?per_page=1000")
	if err != nil {
		return applied{}, fmt.Errorf("traefik API: %w", err)
	}
	if code != http.StatusOK {
		return applied{}, fmt.Errorf("traefik API: %d %s", code, body)
	}
	var services []traefikService
	if err := json.Unmarshal([]byte(body), &services); err != nil {
		return applied{}, fmt.Errorf("traefik API: %w", err)
	}
	short := func(name string) string {
		name, _, _ = strings.Cut(name, "@")
		return strings.TrimSuffix(strings.TrimPrefix(name, ns+"-"), "-http-80")
	}
	out := applied{servers: map[string]string{}}
	for _, s := range services {
		switch {
		case s.Weighted != nil && strings.HasPrefix(s.Name, "httproute-"+ns+"-web-"):
			var ws []string
			for _, b := range s.Weighted.Services {
				ws = append(ws, fmt.Sprintf("%s=%d", short(b.Name), b.Weight))
			}
			out.weights = append(out.weights, strings.Join(ws, ","))
		case s.LoadBalancer != nil && strings.HasPrefix(s.Name, ns+"-"):
			var urls []string
			for _, srv := range s.LoadBalancer.Servers {
				urls = append(urls, strings.TrimPrefix(srv.URL, "http://"))
			}
			slices.Sort(urls)
			out.servers[short(s.Name)] = strings.Join(urls, ",")
		}
	}
	slices.Sort(out.weights)
	return out, nil
}

// readyAddresses returns "ip:8080,…" (sorted) of the Running, Ready pods of
// ns of a revision that are not being deleted.
func readyAddresses(ctx context.Context, ns, revision string) (string, error) {
	out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "pods", "-l", "rollouts.kubeseed.io/pod-template-hash="+revision, "-o",
		`jsonpath={range .items[*]}{.status.podIP} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return "", err
	}
	var addrs []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "Running" && f[2] == "True" {
			addrs = append(addrs, f[0]+":8080")
		}
	}
	slices.Sort(addrs)
	return strings.Join(addrs, ","), nil
}

// waitApplied waits until Traefik routes the route web of ns as the
// Rollout says: the rules' weights are weights (one entry per rule, such as
// "web-stable=90,web-canary=10"), and web-stable and web-canary, where
// the rules name them, send to exactly the ready pods of the stable and
// canary revisions — of the stable alone once an update is aborted. The controller writes weights
// and Service selectors apart, and the proxy learns of each on its own; a
// measurement starts once both have arrived.
func waitApplied(t *testing.T, ns string, weights []string) {
	t.Helper()
	slices.Sort(weights)
	eventually(t, 60*time.Second, fmt.Sprintf("traefik routes %v to the revisions' pods", weights), func(ctx context.Context) (bool, string) {
		got, err := appliedRoutes(ctx, ns)
		if err != nil {
			return false, err.Error()
		}
		stable, canary := revisionsOf(ctx, ns)
		if aborted(ctx, ns) {
			canary = stable
		}
		want := map[string]string{}
		ok := slices.Equal(got.weights, weights)
		for svc, rev := range map[string]string{"web-stable": stable, "web-canary": canary} {
			if !routed(weights, svc) {
				// Traefik knows the Services its routes send to only (the
				// preview Service of a blue-green Rollout is not routed).
				continue
			}
			if want[svc], err = readyAddresses(ctx, ns, rev); err != nil {
				return false, err.Error()
			}
			ok = ok && got.servers[svc] == want[svc]
		}
		return ok, fmt.Sprintf("%v; want servers %v", got, want)
	})
}

// routed reports whether a Service is a backend of one of weights' rules.
func routed(weights []string, svc string) bool {
	for _, rule := range weights {
		for b := range strings.SplitSeq(rule, ",") {
			if name, _, _ := strings.Cut(b, "="); name == svc {
				return true
			}
		}
	}
	return false
}

// aborted reports whether the update of the Rollout web is aborted.
func aborted(ctx context.Context, ns string) bool {
	out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.abort}")
	return strings.TrimSpace(out) == "true"
}

// revisionsOf returns the stable and the canary (current) pod-template-hash
// of the Rollout web.
func revisionsOf(ctx context.Context, ns string) (stable, canary string) {
	out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.stableRS} {.status.currentPodHash}")
	f := strings.Fields(out)
	if len(f) != 2 {
		return "", ""
	}
	return f[0], f[1]
}

// The timeline of a namespace's data plane around failed requests, for a
// person to see which write lost them: the failed requests, the
// controller's log lines of the namespace (its writes: Services switched,
// ReplicaSets scaled, weights set), the Rollouts' events, what the pod
// simulator published and served, and Traefik's failed answers with the
// address each went to.

// timelineBefore and timelineAfter are how far around each failed request
// the timeline looks: a proxy acts on a write a few seconds after it.
const (
	timelineBefore = 8 * time.Second
	timelineAfter  = 2 * time.Second
	// timelineFailures bounds the failed requests listed per window.
	timelineFailures = 20
)

// happening is one line of a timeline.
type happening struct {
	at           time.Time
	source, text string
}

// failureTimeline lists, in time order, what happened in ns within the
// windows around the failed requests of rs (sent with Host host).
func failureTimeline(ns, host string, rs load.Results) string {
	failed := rs.Failures()
	if len(failed) == 0 {
		return ""
	}
	// Windows around the failures, merged where they overlap.
	type window struct {
		from, to time.Time
		failed   load.Results
	}
	var windows []*window
	for _, r := range failed {
		from, to := r.Start.Add(-timelineBefore), r.Start.Add(r.Latency+timelineAfter)
		if n := len(windows); n > 0 && !from.After(windows[n-1].to) {
			windows[n-1].to = later(windows[n-1].to, to)
			windows[n-1].failed = append(windows[n-1].failed, r)
			continue
		}
		windows = append(windows, &window{from: from, to: to, failed: load.Results{r}})
	}
	var all []happening
	all = append(all, controllerLines(ns)...)
	all = append(all, rolloutEvents(ns)...)
	all = append(all, podsimLines(ns)...)
	all = append(all, traefikFailures(host)...)
	slices.SortStableFunc(all, func(a, b happening) int { return a.at.Compare(b.at) })

	var b strings.Builder
	fmt.Fprintf(&b, "timeline of %s around the %d failed requests (logs in %s):\n", ns, len(failed), cl.LogDir)
	for _, w := range windows {
		lines := slices.Clone(all)
		lines = slices.DeleteFunc(lines, func(h happening) bool { return h.at.Before(w.from) || !h.at.Before(w.to) })
		for i, r := range w.failed {
			if i == timelineFailures {
				lines = append(lines, happening{r.Start, "request", fmt.Sprintf("… and %d more failed requests", len(w.failed)-i)})
				break
			}
			// The line's own time is the request's.
			_, text, _ := strings.Cut(r.String(), " ")
			lines = append(lines, happening{r.Start, "request", text})
		}
		slices.SortStableFunc(lines, func(a, b happening) int { return a.at.Compare(b.at) })
		fmt.Fprintf(&b, "--- %s to %s: %d failed\n", w.from.Format(timeOfDay), w.to.Format(timeOfDay), len(w.failed))
		for _, h := range lines {
			fmt.Fprintf(&b, "%s %-10s %s\n", h.at.Format(timeOfDay), h.source, h.text)
		}
	}
	return b.String()
}

const timeOfDay = "15:04:05.000"

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// jsonLines decodes the JSON lines of a log file, skipping any other.
func jsonLines(path string) []map[string]any {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []map[string]any
	for line := range strings.SplitSeq(string(data), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// stamp parses a log line's RFC 3339 time field.
func stamp(m map[string]any, field string) (time.Time, bool) {
	s, _ := m[field].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// controllerLines are the controller's log lines about ns, each as its
// message and the keys that say what it did (not the reconcile's
// bookkeeping); its event lines are left to rolloutEvents.
func controllerLines(ns string) []happening {
	bookkeeping := []string{"level", "ts", "msg", "logger", "controller", "controllerGroup", "controllerKind", "Rollout", "AnalysisRun", "Experiment", "namespace", "name", "reconcileID"}
	var out []happening
	// The suite's controller, and the one that replaced it if a test
	// restarted it.
	logs, _ := filepath.Glob(filepath.Join(cl.LogDir, "controller*.log"))
	var lines []map[string]any
	for _, l := range logs {
		lines = append(lines, jsonLines(l)...)
	}
	for _, m := range lines {
		at, ok := stamp(m, "ts")
		if !ok || m["namespace"] != ns || m["logger"] == "events" {
			continue
		}
		var kv []string
		for k, v := range m {
			if !slices.Contains(bookkeeping, k) {
				kv = append(kv, fmt.Sprintf("%s=%v", k, v))
			}
		}
		slices.Sort(kv)
		out = append(out, happening{at, "controller", strings.TrimSpace(fmt.Sprintf("%s %s", m["msg"], strings.Join(kv, " ")))})
	}
	return out
}

// rolloutEvents are the events of ns's Rollouts.
func rolloutEvents(ns string) []happening {
	list, err := rolloutEventList(context.Background(), ns)
	if err != nil {
		return []happening{{time.Now(), "event", err.Error()}}
	}
	var hs []happening
	for _, e := range list {
		hs = append(hs, happening{eventTime(e), "event", fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Note)})
	}
	return hs
}

// rolloutEventList lists the events of ns's Rollouts (events.k8s.io, whose
// times have microseconds).
func rolloutEventList(ctx context.Context, ns string) ([]eventsv1.Event, error) {
	out, err := cl.Kubectl(ctx, "", "-n", ns, "get", "events.v1.events.k8s.io", "--field-selector", "regarding.kind=Rollout", "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	var list eventsv1.EventList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return list.Items, nil
}

// eventTime is when the controller last recorded an event.
func eventTime(e eventsv1.Event) time.Time {
	if e.Series != nil {
		return e.Series.LastObservedTime.Time
	}
	return e.EventTime.Time
}

// podsimLines are the pod simulator's log lines about ns: endpoints
// published, pods served and stopped.
func podsimLines(ns string) []happening {
	var out []happening
	for _, m := range jsonLines(pods.LogPath) {
		at, ok := stamp(m, "time")
		if !ok {
			continue
		}
		svc, _ := m["service"].(string)
		pod, _ := m["pod"].(string)
		switch {
		case strings.HasPrefix(svc, ns+"/"):
			text := fmt.Sprintf("%s %s slice %v", m["msg"], strings.TrimPrefix(svc, ns+"/"), m["slice"])
			if eps, ok := m["endpoints"]; ok {
				text += fmt.Sprintf(": [%v]", eps)
			}
			out = append(out, happening{at, "podsim", text})
		case strings.HasPrefix(pod, ns+"/"):
			text := fmt.Sprintf("%s %s", m["msg"], strings.TrimPrefix(pod, ns+"/"))
			for _, k := range []string{"addr", "revision", "reason"} {
				if v, ok := m[k]; ok {
					text += fmt.Sprintf(" %s=%v", k, v)
				}
			}
			out = append(out, happening{at, "podsim", text})
		}
	}
	return out
}

// traefikFailures are Traefik's answers for host that were not 2xx or 3xx,
// with the Service and address each went to.
func traefikFailures(host string) []happening {
	var out []happening
	for _, m := range jsonLines(traefik.AccessLog) {
		at, ok := stamp(m, "StartUTC")
		status, _ := m["DownstreamStatus"].(float64)
		if !ok || m["RequestHost"] != host || status >= 200 && status < 400 {
			continue
		}
		out = append(out, happening{at, "traefik", fmt.Sprintf("%v via %v to %v (origin %v, %v retries)",
			status, m["ServiceName"], m["ServiceAddr"], m["OriginStatus"], m["RetryAttempts"])})
	}
	return out
}
