package bench

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Mark is the moment something was first seen.
type Mark struct {
	once sync.Once
	done chan struct{}
	at   time.Time
}

// NewMark returns a mark not set yet.
func NewMark() *Mark { return &Mark{done: make(chan struct{})} }

// Set records at, unless a moment was recorded already.
func (m *Mark) Set(at time.Time) {
	m.once.Do(func() {
		m.at = at
		close(m.done)
	})
}

// Wait returns the recorded moment, or false after timeout.
func (m *Mark) Wait(timeout time.Duration) (time.Time, bool) {
	select {
	case <-m.done:
		return m.at, true
	case <-time.After(timeout):
		return time.Time{}, false
	}
}

// VerdictServer is the endpoint of a web metric: it answers {"ok": true},
// or {"ok": false} once told to fail, and counts requests and connections.
// It remembers when each request came, by the value of its query parameter
// run.
type VerdictServer struct {
	*httptest.Server
	failing     atomic.Bool
	Requests    atomic.Int64
	Connections atomic.Int64

	mu           sync.Mutex
	firstFailure time.Time
	byRun        map[string][]time.Time
}

// NewVerdictServer starts a server that passes until told to fail.
func NewVerdictServer(tb testing.TB) *VerdictServer {
	s := &VerdictServer{byRun: map[string][]time.Time{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.Connections.Add(1)
		}
	}
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

func (s *VerdictServer) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.Requests.Add(1)
	ok := !s.failing.Load()
	s.mu.Lock()
	if !ok && s.firstFailure.IsZero() {
		s.firstFailure = now
	}
	run := r.URL.Query().Get("run")
	s.byRun[run] = append(s.byRun[run], now)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"ok": %t}`, ok)
}

// SetFailing switches the answer; passing again forgets the first failure.
func (s *VerdictServer) SetFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing.Store(failing)
	if !failing {
		s.firstFailure = time.Time{}
	}
}

// FailedAt is when the server first answered {"ok": false}.
func (s *VerdictServer) FailedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstFailure
}

// RequestsOf returns when the requests for run came.
func (s *VerdictServer) RequestsOf(run string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.byRun[run])
}

// AskedMoreThan returns the runs with more than n requests, sorted.
func (s *VerdictServer) AskedMoreThan(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var runs []string
	for run, reqs := range s.byRun {
		if len(reqs) > n {
			runs = append(runs, run)
		}
	}
	slices.Sort(runs)
	return runs
}

// VerdictMetric asks the verdict server every second, count times (nil:
// until the run ends), and fails at the first {"ok": false}.
func VerdictMetric(url string, count *int32) v1alpha1.Metric {
	return v1alpha1.Metric{
		Name:             "verdict",
		Interval:         "1s",
		Count:            count,
		FailureLimit:     ptr.To[int32](0),
		SuccessCondition: "result == true",
		Provider:         v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: url, JSONPath: "{$.ok}"}},
	}
}
