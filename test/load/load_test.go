package load

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubeseed/rollouts/test/podsim"
)

// twoRevisions answers as a pod of revision "a" three times in four and
// of "b" otherwise; with host other than web.example it answers 404 as a
// proxy without a route.
func twoRevisions(t *testing.T) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "web.example" {
			http.NotFound(w, r)
			return
		}
		rev := "a"
		if n.Add(1)%4 == 0 {
			rev = "b"
		}
		if r.Header.Get("X-Fail") == "yes" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set(podsim.HeaderRevision, rev)
		w.Header().Set(podsim.HeaderPod, "web-"+rev)
		w.Header().Set(podsim.HeaderImage, "web:"+rev)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSendKeepsTheRateAndCountsRevisions(t *testing.T) {
	srv := twoRevisions(t)
	start := time.Now()
	rs, err := Send(context.Background(), Target{URL: srv.URL, Host: "web.example"}, Options{Rate: 200}, 100)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(rs) != 100 {
		t.Fatalf("%d results, want 100", len(rs))
	}
	// 100 requests at 200/s: the last is due after 495ms.
	if took < 490*time.Millisecond || took > 3*time.Second {
		t.Errorf("100 requests at 200/s took %s", took)
	}
	if got := rs.ByRevision(); got["a"] != 75 || got["b"] != 25 {
		t.Errorf("by revision %v, want a:75 b:25", got)
	}
	if got := rs.Share("b"); got != 0.25 {
		t.Errorf("share of b %v, want 0.25", got)
	}
	if err := rs.Err(5); err != nil {
		t.Errorf("failures: %v", err)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i].Start.Before(rs[i-1].Start) {
			t.Fatal("results are not in start order")
		}
	}
	if w := rs.Between(rs[10].Start, rs[20].Start); len(w) != 10 {
		t.Errorf("Between the 10th and 20th start: %d results", len(w))
	}
}

func TestFailuresAreRecordedWithTheirTimes(t *testing.T) {
	srv := twoRevisions(t)
	h := http.Header{"X-Fail": {"yes"}}
	rs, err := Send(context.Background(), Target{URL: srv.URL, Host: "web.example", Header: h}, Options{Rate: 100}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rs.Failures()); got != 5 {
		t.Errorf("%d failures, want 5", got)
	}
	if got := rs.Share(""); got != 1 {
		t.Errorf("share answered by no pod %v, want 1", got)
	}
	err = rs.Err(2)
	if err == nil || !strings.Contains(err.Error(), "5 of 5 requests failed") || !strings.Contains(err.Error(), "… and 3 more") {
		t.Errorf("Err(2) = %v", err)
	}

	// A proxy without the route answers 404: a failure too.
	rs, _ = Send(context.Background(), Target{URL: srv.URL, Host: "other.example"}, Options{Rate: 100}, 2)
	if got := len(rs.Failures()); got != 2 {
		t.Errorf("404s: %d failures, want 2", got)
	}

	// Nothing listening: the error is recorded.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	rs, _ = Send(context.Background(), Target{URL: "http://" + addr + "/", Host: "web.example"}, Options{Rate: 100}, 2)
	if len(rs) != 2 || rs[0].Err == "" || !rs[0].Failed() {
		t.Errorf("refused connections: %v", rs)
	}
}

func TestGeneratorRunsUntilStopped(t *testing.T) {
	srv := twoRevisions(t)
	g, err := Start(context.Background(), Target{URL: srv.URL, Host: "web.example"}, Options{Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	rs := g.Stop()
	if n := len(rs); n < 20 || n > 40 {
		t.Errorf("%d requests in 300ms at 100/s", n)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(g.Results()); n != len(rs) {
		t.Errorf("requests after Stop: %d, then %d", len(rs), n)
	}
}

// Take hands each request over once: what it took is neither taken again
// nor returned by Stop, and together they hold every request.
func TestTakeHandsEachRequestOverOnce(t *testing.T) {
	srv := twoRevisions(t)
	g, err := start(context.Background(), Target{URL: srv.URL, Host: "web.example"}, Options{Rate: 500}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var all Results
	takes := 0
	for len(all) < 100 && takes < 1000 {
		time.Sleep(20 * time.Millisecond)
		all = append(all, g.Take()...)
		takes++
	}
	rest := g.Stop()
	if len(rest) != 0 {
		t.Errorf("Stop after taking every request returned %d", len(rest))
	}
	if len(all) != 100 {
		t.Fatalf("took %d requests, want 100", len(all))
	}
	seen := map[time.Time]bool{}
	for _, r := range all {
		if seen[r.Start] {
			t.Fatalf("request of %s taken twice", r.Start)
		}
		seen[r.Start] = true
	}
	if got := all.ByRevision(); got["a"] != 75 || got["b"] != 25 {
		t.Errorf("by revision %v, want a:75 b:25", got)
	}
}

// Stop ends the load, not the requests it sent: one in flight gets its
// answer, and none is sent once stopping, so a stopped load records no
// failure of its own making.
func TestStopLetsRequestsInFlightFinish(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		w.Header().Set(podsim.HeaderRevision, "a")
	}))
	t.Cleanup(srv.Close)
	for range 5 {
		g, err := Start(context.Background(), Target{URL: srv.URL, Host: "web.example"}, Options{Rate: 500})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		rs := g.Stop()
		if len(rs) < 20 {
			t.Fatalf("%d requests in 100ms at 500/s", len(rs))
		}
		if err := rs.Err(3); err != nil {
			t.Fatalf("stopping failed requests: %v", err)
		}
	}
}

func TestRefusesUnboundedRatesAndOtherHosts(t *testing.T) {
	for _, tc := range []struct {
		url  string
		rate float64
	}{
		{"http://127.0.0.1:1/", 0},
		{"http://127.0.0.1:1/", MaxRate + 1},
		{"http://192.0.2.1/", 10},
		{"http://localhost:1/", 10},
	} {
		if _, err := Start(context.Background(), Target{URL: tc.url}, Options{Rate: tc.rate}); err == nil {
			t.Errorf("Start(%s, rate %v) was not refused", tc.url, tc.rate)
		}
	}
}

func TestSettled(t *testing.T) {
	// revs spells one request per letter: c the canary, s the stable.
	revs := func(parts ...string) Results {
		var rs Results
		for _, p := range parts {
			for _, c := range p {
				rs = append(rs, Result{Revision: string(c)})
			}
		}
		return rs
	}
	for _, tc := range []struct {
		name   string
		rs     Results
		share  float64
		tol    float64
		k      int
		want   int
		wantOK bool
	}{
		{name: "settled from the start", rs: revs("cscscscs"), share: 0.5, k: 4, want: 0, wantOK: true},
		// The window starting at 3 (scsc) is already half canary: one
		// request early.
		{name: "a change", rs: revs("ssss", "cscscs"), share: 0.5, k: 4, want: 3, wantOK: true},
		{name: "a looser tolerance is reached earlier", rs: revs("ssss", "cscscs"), share: 0.5, tol: 0.25, k: 4, want: 1, wantOK: true},
		{name: "off at the end", rs: revs("cscs", "ssss"), share: 0.5, k: 4, wantOK: false},
		// The window starting at 7 (ccsc) is off.
		{name: "a window off in between", rs: revs("cscs", "sssc", "cscs"), share: 0.5, k: 4, want: 8, wantOK: true},
		{name: "fewer requests than a window", rs: revs("cs"), share: 0.5, k: 4, wantOK: false},
		{name: "requests no pod answered count against the share", rs: revs("cscs", "--"), share: 0.5, k: 4, wantOK: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.rs.Settled("c", tc.share, tc.tol, tc.k)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Settled = %d, %t; want %d, %t", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestSettledKeepsAShareExactlyTolAway(t *testing.T) {
	// 8 canary answers in 100 are 10 % − 2 points: within.
	var rs Results
	for i := range 100 {
		rev := "s"
		if i%12 == 0 && i < 96 {
			rev = "c"
		}
		rs = append(rs, Result{Revision: rev})
	}
	if n := rs.ByRevision()["c"]; n != 8 {
		t.Fatalf("%d canary answers, want 8", n)
	}
	if _, ok := rs.Settled("c", 0.1, 0.02, 100); !ok {
		t.Error("8 of 100 is not within 10 ± 2 %")
	}
	if _, ok := rs.Settled("c", 0.1, 0.019, 100); ok {
		t.Error("8 of 100 is within 10 ± 1.9 %")
	}
}
