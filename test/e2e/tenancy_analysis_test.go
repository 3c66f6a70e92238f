//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/kwok"
)

// deniedLoopback is what the e2e controller's --analysis-deny-cidrs denies
// (TestMain): an address of lo, so the test needs nothing outside 127/8.
const deniedLoopback = kwok.DeniedLoopback

// analysisTenant creates a ServiceAccount of ns that may write analysis
// objects there but not read Secrets, and returns the kubectl flag that
// acts as it.
func analysisTenant(t *testing.T, ns string) string {
	t.Helper()
	cl.MustKubectl(t, fmt.Sprintf(`
apiVersion: v1
kind: ServiceAccount
metadata: {name: tenant, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: analysis-author, namespace: %[1]s}
rules:
- apiGroups: [rollouts.kubeseed.io]
  resources: [analysisruns, analysistemplates]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tenant-analysis-author, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: analysis-author}
subjects: [{kind: ServiceAccount, name: tenant, namespace: %[1]s}]
`, ns), "apply", "-f", "-")
	as := fmt.Sprintf("--as=system:serviceaccount:%s:tenant", ns)
	for _, r := range []struct {
		verb, resource string
		want           string
	}{
		{"create", "analysisruns.rollouts.kubeseed.io", "yes"},
		{"get", "secrets", "no"},
		{"list", "secrets", "no"},
	} {
		out, _ := cl.Kubectl(context.Background(), "", "auth", "can-i", r.verb, r.resource, "-n", ns, as) // can-i exits 1 for "no"
		if got := lastLine(out); got != r.want {
			t.Fatalf("tenant: can-i %s %s: %q, want %s", r.verb, r.resource, strings.TrimSpace(out), r.want)
		}
	}
	return as
}

// loopbackServer serves h on addr (an address of lo) and records every
// request it gets, as raw text, and every connection it accepts.
type loopbackServer struct {
	URL   string
	conns atomic.Int32
	mu    sync.Mutex
	seen  []string
}

func serveLoopback(t *testing.T, addr string, h http.HandlerFunc) *loopbackServer {
	t.Helper()
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	s := &loopbackServer{URL: "http://" + l.Addr().String()}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			dump, _ := httputil.DumpRequest(r, true)
			s.mu.Lock()
			s.seen = append(s.seen, string(dump))
			s.mu.Unlock()
			h(w, r)
		}),
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// requests is everything the server received.
func (s *loopbackServer) requests() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, "\n")
}

// webRun is an AnalysisRun with one web metric measured once; an Error ends
// it at once.
func webRun(name, url, jsonPath, headers, args string) string {
	return fmt.Sprintf(`
apiVersion: rollouts.kubeseed.io/v1alpha1
kind: AnalysisRun
metadata: {name: %s}
spec:
  args: %s
  metrics:
  - name: check
    consecutiveErrorLimit: 0
    successCondition: "string(result) != ''"
    provider:
      web:
        url: %q
        jsonPath: %q
        timeout: 5s
        headers: %s
`, name, args, url, jsonPath, headers)
}

// completedRun waits for the run to end and returns it.
func completedRun(t *testing.T, ns, name string) *v1alpha1.AnalysisRun {
	t.Helper()
	var run v1alpha1.AnalysisRun
	eventually(t, 60*time.Second, "AnalysisRun "+name+" completed", func(ctx context.Context) (bool, string) {
		if err := kubectlJSON(ctx, ns, &run, "ar", name); err != nil {
			return false, err.Error()
		}
		return run.Status.Phase.Completed(), fmt.Sprintf("phase %q, message %q", run.Status.Phase, run.Status.Message)
	})
	return &run
}

// TestTenancySecretsOfOthersNeverLeave: a tenant who may write AnalysisRuns
// but not read Secrets points web metrics at a server of its own, with
// headers and args from another namespace's Secret (labelled for analysis
// there), from an unlabelled Secret of its own namespace, and by a path.
// Each is an Error naming the rule; the server gets none of the values,
// and no status, event or controller log line holds one. The control: a
// labelled Secret of the tenant's namespace does reach the server, and
// shows as *** where the server echoes it.
func TestTenancySecretsOfOthersNeverLeave(t *testing.T) {
	t.Parallel()
	const (
		foreign    = "e2e-foreign-9d41c7"
		unlabelled = "e2e-unlabelled-5b02ee"
		own        = "e2e-own-71f3aa"
	)
	ns, victim := namespace(t), namespace(t)
	cl.MustKubectl(t, "", "-n", victim, "create", "secret", "generic", "bank", "--from-literal=token="+foreign)
	cl.MustKubectl(t, "", "-n", victim, "label", "secret", "bank", v1alpha1.AnalysisSecretLabel+"=true")
	cl.MustKubectl(t, "", "-n", ns, "create", "secret", "generic", "db", "--from-literal=token="+unlabelled)
	cl.MustKubectl(t, "", "-n", ns, "create", "secret", "generic", "checker", "--from-literal=token="+own)
	cl.MustKubectl(t, "", "-n", ns, "label", "secret", "checker", v1alpha1.AnalysisSecretLabel+"=true")
	as := analysisTenant(t, ns)

	srv := serveLoopback(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"echo": r.Header.Get("X-Token") + r.URL.Query().Get("t")})
	})
	header := func(secret string) string {
		return fmt.Sprintf(`[{key: X-Token, valueFrom: {secretKeyRef: {name: %q, key: token}}}]`, secret)
	}
	argFrom := func(secret string) string {
		return fmt.Sprintf(`[{name: t, valueFrom: {secretKeyRef: {name: %q, key: token}}}]`, secret)
	}
	rule := fmt.Sprintf(`analysis reads only Secrets that are in the run's namespace (%s) and labelled %s: "true"`, ns, v1alpha1.AnalysisSecretLabel)
	rows := []struct {
		name, manifest string
		phase          v1alpha1.AnalysisPhase
		message        string
	}{
		{"foreign-header", webRun("foreign-header", srv.URL+"/h", "{$.echo}", header("bank"), "[]"), v1alpha1.AnalysisPhaseError, `reading key "token" of Secret bank: ` + rule},
		{"foreign-path", webRun("foreign-path", srv.URL+"/p", "{$.echo}", header(victim+"/bank"), "[]"), v1alpha1.AnalysisPhaseError, `not a Secret name (analysis reads only Secrets of the run's namespace)`},
		{"foreign-arg", webRun("foreign-arg", srv.URL+"/a?t={{args.t}}", "{$.echo}", "[]", argFrom("bank")), v1alpha1.AnalysisPhaseError, `arg "t": reading key "token" of Secret bank: ` + rule},
		{"unlabelled-header", webRun("unlabelled-header", srv.URL+"/h", "{$.echo}", header("db"), "[]"), v1alpha1.AnalysisPhaseError, `reading key "token" of Secret db: ` + rule},
		{"unlabelled-arg", webRun("unlabelled-arg", srv.URL+"/a?t={{args.t}}", "{$.echo}", "[]", argFrom("db")), v1alpha1.AnalysisPhaseError, `arg "t": reading key "token" of Secret db: ` + rule},
		{"own-header", webRun("own-header", srv.URL+"/h", "{$.echo}", header("checker"), "[]"), v1alpha1.AnalysisPhaseSuccessful, ""},
		{"own-arg", webRun("own-arg", srv.URL+"/a?t={{args.t}}", "{$.echo}", "[]", argFrom("checker")), v1alpha1.AnalysisPhaseSuccessful, ""},
	}
	for _, r := range rows {
		cl.MustKubectl(t, r.manifest, "-n", ns, as, "create", "-f", "-")
	}
	var statuses []string
	for _, r := range rows {
		run := completedRun(t, ns, r.name)
		if run.Status.Phase != r.phase || !strings.Contains(run.Status.Message, r.message) {
			t.Errorf("%s: %s %q; want %s with %q", r.name, run.Status.Phase, run.Status.Message, r.phase, r.message)
		}
		if r.phase == v1alpha1.AnalysisPhaseSuccessful {
			if ms := run.Status.MetricResults[0].Measurements; len(ms) != 1 || ms[0].Value != `"***"` {
				t.Errorf("%s: measurements %+v, want one whose echoed value shows as \"***\"", r.name, ms)
			}
		}
		raw, _ := json.Marshal(run)
		statuses = append(statuses, string(raw))
	}

	received := srv.requests()
	if !strings.Contains(received, own) {
		t.Fatalf("the server never got the labelled Secret of the run's namespace; it got:\n%s", received)
	}
	events := cl.MustKubectl(t, "", "get", "events", "-A", "-o", "json")
	log := ctl.Log()
	for _, v := range []string{foreign, unlabelled} {
		if strings.Contains(received, v) {
			t.Errorf("the tenant's server received %q:\n%s", v, received)
		}
	}
	for _, v := range []string{foreign, unlabelled, own} {
		for where, text := range map[string]string{"an AnalysisRun": strings.Join(statuses, "\n"), "an event": events, "the controller log": log} {
			if strings.Contains(text, v) {
				t.Errorf("%s holds the Secret value %q", where, v)
			}
		}
	}
}

// TestTenancyEgressDenied: a web metric at an address of the controller's
// --analysis-deny-cidrs is an Error naming the policy, and the server
// there gets no connection.
func TestTenancyEgressDenied(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	as := analysisTenant(t, ns)
	srv := serveLoopback(t, deniedLoopback, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok": true}`)
	})
	cl.MustKubectl(t, webRun("metadata", srv.URL+"/latest/meta-data", "{$.ok}", "[]", "[]"), "-n", ns, as, "create", "-f", "-")
	run := completedRun(t, ns, "metadata")
	want := deniedLoopback + " is denied by the analysis egress policy (" + deniedLoopback + "/32 from --analysis-deny-cidrs"
	if run.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(run.Status.Message, want) {
		t.Errorf("%s %q; want Error with %q", run.Status.Phase, run.Status.Message, want)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("the denied server accepted %d connections", n)
	}
}

// TestTenancyRedirectAndAnswerBounds: a redirect to another host is
// refused (that host gets no connection), and a 5 MiB answer is an Error
// that leaves the AnalysisRun small.
func TestTenancyRedirectAndAnswerBounds(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	as := analysisTenant(t, ns)
	target := serveLoopback(t, "127.0.0.2", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok": true}`)
	})
	srv := serveLoopback(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, target.URL+"/ok", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/big":
			_, _ = io.WriteString(w, `{"ok": "`+strings.Repeat("x", 5<<20)+`"}`)
		default:
			_, _ = io.WriteString(w, `{"ok": true}`)
		}
	})
	cl.MustKubectl(t, webRun("away", srv.URL+"/away", "{$.ok}", "[]", "[]")+"---"+
		webRun("here", srv.URL+"/here", "{$.ok}", "[]", "[]")+"---"+
		strings.Replace(webRun("big", srv.URL+"/big", "{$.ok}", "[]", "[]"), "consecutiveErrorLimit: 0", "consecutiveErrorLimit: 2\n    interval: 1s", 1),
		"-n", ns, as, "create", "-f", "-")

	away := completedRun(t, ns, "away")
	from, to := strings.TrimPrefix(srv.URL, "http://"), strings.TrimPrefix(target.URL, "http://")
	want := fmt.Sprintf("refusing the redirect from http://%s to http://%s: measurements follow redirects only to the same scheme, host and port", from, to)
	if away.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(away.Status.Message, want) {
		t.Errorf("redirect to another host: %s %q; want Error with %q", away.Status.Phase, away.Status.Message, want)
	}
	if n := target.conns.Load(); n != 0 {
		t.Errorf("the redirect's target accepted %d connections", n)
	}
	if here := completedRun(t, ns, "here"); here.Status.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("redirect to the same host: %s %q; want Successful", here.Status.Phase, here.Status.Message)
	}

	big := completedRun(t, ns, "big")
	if mr := onlyMetric(t, big); big.Status.Phase != v1alpha1.AnalysisPhaseError || mr.Error != 3 || !strings.Contains(big.Status.Message, "the answer is larger than 1048576 bytes (1 MiB)") {
		t.Errorf("5 MiB answers: %s after %d errors, %q; want Error after 3, saying the answer is too large", big.Status.Phase, mr.Error, big.Status.Message)
	}
	raw := cl.MustKubectl(t, "", "-n", ns, "get", "ar", "big", "-o", "json")
	if len(raw) >= 64<<10 {
		t.Errorf("the AnalysisRun is %d bytes of JSON, want under 64 KiB", len(raw))
	}
}
