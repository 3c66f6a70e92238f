package analysis

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEgressPolicyAllowed pins the decision, without dialling anything.
func TestEgressPolicyAllowed(t *testing.T) {
	nested := NewEgressPolicy(mustCIDRs(t, "10.0.0.0/8,10.1.2.0/24,127.0.0.77/32"), mustCIDRs(t, "10.1.0.0/16,169.254.169.254,0.0.0.0/0"))
	lifted := NewEgressPolicy(nil, mustCIDRs(t, "169.254.0.0/16"))
	rows := []struct {
		policy *EgressPolicy
		ip     string
		denied string // "" allowed, else the rule the error names
	}{
		// The default deny list; nil is the default.
		{nil, "169.254.169.254", "169.254.0.0/16 from the default deny list"},
		{nil, "169.254.0.1", "169.254.0.0/16 from the default deny list"},
		{nil, "::ffff:169.254.169.254", "169.254.0.0/16 from the default deny list"},
		{nil, "fe80::1", "fe80::/10 from the default deny list"},
		{nil, "fe80::1%eth0", "fe80::/10 from the default deny list"},
		{nil, "febf:ffff::1", "fe80::/10 from the default deny list"},
		{nil, "fd00:ec2::254", "fd00:ec2::254/128 from the default deny list"},
		{nil, "fd00:ec2::253", ""},
		{nil, "fec0::1", ""},
		{nil, "169.253.255.255", ""},
		{nil, "169.255.0.0", ""},
		{nil, "127.0.0.1", ""},
		{nil, "10.0.0.1", ""},
		{nil, "::1", ""},
		{NewEgressPolicy(nil, nil), "169.254.169.254", "169.254.0.0/16 from the default deny list"},
		// --analysis-deny-cidrs adds, --analysis-allow-cidrs carves out;
		// the most specific prefix decides, an allow winning a tie.
		{nested, "127.0.0.77", "127.0.0.77/32 from --analysis-deny-cidrs"},
		{nested, "127.0.0.1", ""},
		{nested, "10.2.0.1", "10.0.0.0/8 from --analysis-deny-cidrs"},
		{nested, "10.1.3.4", ""},
		{nested, "10.1.2.3", "10.1.2.0/24 from --analysis-deny-cidrs"},
		{nested, "169.254.169.254", ""},
		{nested, "169.254.0.1", "169.254.0.0/16 from the default deny list"}, // 0.0.0.0/0 is less specific
		{nested, "fe80::1", "fe80::/10 from the default deny list"},
		{lifted, "169.254.169.254", ""},
		{lifted, "fe80::1", "fe80::/10 from the default deny list"},
	}
	for _, r := range rows {
		err := r.policy.Allowed(netip.MustParseAddr(r.ip))
		switch {
		case r.denied == "" && err != nil:
			t.Errorf("%s: denied (%v), want allowed", r.ip, err)
		case r.denied != "" && (err == nil || !errors.Is(err, ErrEgressDenied) || !strings.Contains(err.Error(), "("+r.denied+";")):
			t.Errorf("%s: %v, want denied by %s", r.ip, err, r.denied)
		}
	}
	want := "169.254.169.254 is denied by the analysis egress policy (169.254.0.0/16 from the default deny list; --analysis-allow-cidrs makes exceptions)"
	if err := (*EgressPolicy)(nil).Allowed(netip.MustParseAddr("169.254.169.254")); err == nil || err.Error() != want {
		t.Errorf("message %v, want %q", err, want)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 10.1.2.3/8, 127.0.0.77 ,, fd00::1, ::ffff:169.254.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "127.0.0.77/32", "fd00::1/128", "169.254.0.0/16"}
	var gotS []string
	for _, p := range got {
		gotS = append(gotS, p.String())
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("ParseCIDRs (-want +got):\n%s", diff)
	}
	if none, err := ParseCIDRs(""); err != nil || len(none) != 0 {
		t.Errorf("empty: %v %v", none, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0/8"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// countingServer is a loopback server on addr that counts the connections
// it accepts.
func countingServer(t *testing.T, addr string, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// TestWebEgress: a denied address is refused when dialled, by IP or by a
// name resolving to it, and the server gets no connection; a redirect to
// another host is refused before it is followed.
func TestWebEgress(t *testing.T) {
	denied, deniedConns := countingServer(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok": true}`)
	}))
	other, otherConns := countingServer(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok": true}`)
	}))
	redirecting, _ := countingServer(t, "127.0.0.3:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
	}))
	policy := NewEgressPolicy(mustCIDRs(t, "127.0.0.1/32,::1"), nil)
	web := &Web{Egress: policy, Now: time.Now}
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}}
	measure := func(url string) Measured {
		return web.Measure(context.Background(), run, &v1alpha1.Metric{Name: "m", Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url, JSONPath: "{$.ok}", Timeout: "5s"}}})
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(denied.URL, "http://"))
	for _, url := range []string{denied.URL, "http://localhost:" + port} {
		m := measure(url)
		if m.Err == nil || !regexp.MustCompile(`(127\.0\.0\.1|::1) is denied by the analysis egress policy \((127\.0\.0\.1/32|::1/128) from --analysis-deny-cidrs`).MatchString(m.Err.Error()) {
			t.Errorf("%s: %v, want an error naming the egress policy", url, m.Err)
		}
	}
	if n := deniedConns.Load(); n != 0 {
		t.Errorf("the denied server got %d connections", n)
	}

	m := measure(redirecting.URL)
	want := "refusing the redirect from http://127.0.0.3:"
	if m.Err == nil || !strings.Contains(m.Err.Error(), want) || !strings.Contains(m.Err.Error(), "to http://127.0.0.2:") {
		t.Errorf("redirect to another host: %v, want %q", m.Err, want)
	}
	if n := otherConns.Load(); n != 0 {
		t.Errorf("the redirect's target got %d connections", n)
	}
	// The control: the other host itself is reachable.
	if m := measure(other.URL); m.Err != nil || m.Value != "true" {
		t.Errorf("allowed host: %+v", m)
	}
}

func TestSameOrigin(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rows := []struct {
		from, to string
		ok       bool
	}{
		{"http://a.example/x", "http://a.example/y", true},
		{"http://a.example/x", "http://A.example:80/y", true},
		{"https://a.example/x", "https://a.example:443/y", true},
		{"http://a.example/x", "https://a.example/x", false},
		{"http://a.example/x", "http://a.example:8080/x", false},
		{"http://a.example/x", "http://b.example/x", false},
		{"http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", false},
	}
	for _, r := range rows {
		err := sameOrigin(req(r.to), []*http.Request{req(r.from)})
		if (err == nil) != r.ok {
			t.Errorf("%s → %s: %v, want ok=%v", r.from, r.to, err, r.ok)
		}
	}
	var via []*http.Request
	for range 10 {
		via = append(via, req("http://a.example/x"))
	}
	if err := sameOrigin(req("http://a.example/x"), via); err == nil {
		t.Error("an 11th redirect was followed")
	}
}
