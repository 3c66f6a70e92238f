// Package load sends real HTTP requests through the test proxy at a steady,
// bounded rate and records, per request, when it was sent, how it ended and
// which revision answered (test/podsim's headers). Tests read the split and
// the failures from the records: the share of a revision over a window, the
// failed requests with their times.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/kubeseed/rollouts/test/loopback"
	"github.com/kubeseed/rollouts/test/podsim"
)

// MaxRate bounds the request rate: the tests share two cores with the
// control plane, the proxy and the controller they measure.
const MaxRate = 1000

const (
	defaultConcurrency = 32
	defaultTimeout     = 5 * time.Second
)

// Target is where the requests go.
type Target struct {
	// URL is the proxy's entrypoint, such as http://127.0.0.1:PORT/; its
	// host must be a loopback address.
	URL string
	// Host is the Host header, which picks the route.
	Host string
	// Header is added to every request (a header route's match).
	Header http.Header
}

// Options shape the load.
type Options struct {
	// Rate is requests per second, above 0 and at most MaxRate.
	Rate float64
	// Concurrency bounds the requests in flight (default 32); when all are
	// taken the next request waits, and is recorded when it was sent.
	Concurrency int
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
}

// Result is one request.
type Result struct {
	Start   time.Time
	Latency time.Duration
	// Status is the answer's status code, 0 when none came.
	Status int
	// Err is why no answer came (or its body could not be read).
	Err string
	// Pod, Image and Revision are what the answering pod said, empty when
	// a pod did not answer (the proxy itself did, or nothing).
	Pod, Image, Revision string
}

// Failed reports a request without an answer or answered with an error.
func (r Result) Failed() bool { return r.Err != "" || r.Status < 200 || r.Status >= 400 }

func (r Result) String() string {
	s := fmt.Sprintf("%s %d", r.Start.Format("15:04:05.000"), r.Status)
	if r.Err != "" {
		s += " " + r.Err
	}
	if r.Pod != "" {
		s += fmt.Sprintf(" from %s (%s, revision %s)", r.Pod, r.Image, r.Revision)
	}
	return s + " in " + r.Latency.Round(time.Millisecond).String()
}

// Generator sends requests until stopped.
type Generator struct {
	target Target
	opts   Options
	client *http.Client
	limit  int
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	results Results
}

// Start sends requests to target at a steady rate until ctx ends or Stop.
func Start(ctx context.Context, target Target, opts Options) (*Generator, error) {
	return start(ctx, target, opts, 0)
}

// Send sends n requests at opts.Rate and returns them once all have ended
// (fewer if ctx ends first).
func Send(ctx context.Context, target Target, opts Options, n int) (Results, error) {
	g, err := start(ctx, target, opts, n)
	if err != nil {
		return nil, err
	}
	<-g.done
	return g.Stop(), nil
}

// start starts a generator that stops after limit requests, if above 0.
func start(ctx context.Context, target Target, opts Options, limit int) (*Generator, error) {
	if !(opts.Rate > 0 && opts.Rate <= MaxRate) {
		return nil, fmt.Errorf("load: rate %v: want more than 0 and at most %d requests/s", opts.Rate, MaxRate)
	}
	u, err := url.Parse(target.URL)
	if err != nil {
		return nil, fmt.Errorf("load: target %q: %w", target.URL, err)
	}
	if err := loopback.Check("load target "+target.URL, u.Hostname()); err != nil {
		return nil, err
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultConcurrency
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	// Stop ends the sending; the requests sent keep the caller's ctx, so
	// they get their answers.
	sending, cancel := context.WithCancel(ctx)
	g := &Generator{
		target: target,
		opts:   opts,
		client: &http.Client{
			Transport: &http.Transport{
				DialContext:         loopback.DialContext,
				MaxIdleConnsPerHost: opts.Concurrency,
				DisableCompression:  true,
			},
			// The proxy's answer is what is measured, redirects included.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		limit:  limit,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go g.run(sending, ctx)
	return g, nil
}

// run schedules request i at start + i/rate until sending ends: a late
// request does not move the ones after it, so the rate holds on average.
// Requests are sent with ctx.
func (g *Generator) run(sending, ctx context.Context) {
	defer close(g.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, g.opts.Concurrency)
	interval := time.Duration(float64(time.Second) / g.opts.Rate)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ; i++ {
		if g.limit > 0 && i >= g.limit {
			return
		}
		t.Reset(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case <-sending.Done():
			return
		case <-t.C:
		}
		select {
		case <-sending.Done():
			return
		case slots <- struct{}{}:
		}
		if sending.Err() != nil {
			// Stopped while waiting for a slot: select picks at random.
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			r := g.do(ctx)
			g.mu.Lock()
			g.results = append(g.results, r)
			g.mu.Unlock()
		})
	}
}

// do sends one request.
func (g *Generator) do(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	r := Result{Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.target.URL, nil)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	req.Host = g.target.Host
	for k, vs := range g.target.Header {
		req.Header[k] = vs
	}
	resp, err := g.client.Do(req)
	if err != nil {
		r.Latency = time.Since(r.Start)
		r.Err = err.Error()
		return r
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	r.Latency = time.Since(r.Start)
	r.Status = resp.StatusCode
	if err != nil {
		r.Err = "reading the answer: " + err.Error()
	}
	r.Pod = resp.Header.Get(podsim.HeaderPod)
	r.Image = resp.Header.Get(podsim.HeaderImage)
	r.Revision = resp.Header.Get(podsim.HeaderRevision)
	return r
}

// Results returns the requests that have ended so far, by start time
// (those Take returned excepted).
func (g *Generator) Results() Results {
	g.mu.Lock()
	out := slices.Clone(g.results)
	g.mu.Unlock()
	return byStart(out)
}

// Take returns the requests that have ended since the last Take, by start
// time, and forgets them: a generator that runs for days (make demo) holds
// only what its reader has not taken yet.
func (g *Generator) Take() Results {
	g.mu.Lock()
	out := g.results
	g.results = nil
	g.mu.Unlock()
	return byStart(out)
}

func byStart(rs Results) Results {
	slices.SortFunc(rs, func(a, b Result) int { return a.Start.Compare(b.Start) })
	return rs
}

// Stop stops sending, waits for the requests in flight to be answered
// (each within Options.Timeout) and returns every request not taken.
func (g *Generator) Stop() Results {
	g.cancel()
	<-g.done
	g.client.CloseIdleConnections()
	return g.Results()
}

// Results are recorded requests, in start order.
type Results []Result

// Between returns the requests started in [from, to).
func (rs Results) Between(from, to time.Time) Results {
	var out Results
	for _, r := range rs {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// ByRevision counts the requests by the revision that answered them; ""
// counts those no pod answered.
func (rs Results) ByRevision() map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Revision]++
	}
	return out
}

// Share is the share of all the requests that revision answered, from 0
// to 1 (0 without requests). Requests no pod answered count against it.
func (rs Results) Share(revision string) float64 {
	if len(rs) == 0 {
		return 0
	}
	return float64(rs.ByRevision()[revision]) / float64(len(rs))
}

// Settled returns the index of the first request from which the share of
// revision in every window of k consecutive requests stays within tol of
// share, up to the last request — where a changed split took effect — and
// false when the last window is off (or there are fewer than k requests).
// A window straddling the change is within tol once few enough of its
// requests came before it, so the index can be early by about
// k·tol/|the change of share| requests.
func (rs Results) Settled(revision string, share, tol float64, k int) (int, bool) {
	if k <= 0 || len(rs) < k {
		return 0, false
	}
	// The epsilon keeps a count exactly tol away (8 of 100 for 10 % ± 2)
	// within, whatever the floating point says.
	within := func(n int) bool { return math.Abs(float64(n)/float64(k)-share) <= tol+1e-9 }
	j := len(rs) - k
	n := 0 // answers of revision in rs[j : j+k]
	for _, r := range rs[j:] {
		if r.Revision == revision {
			n++
		}
	}
	if !within(n) {
		return 0, false
	}
	for ; j > 0; j-- {
		if rs[j-1].Revision == revision {
			n++
		}
		if rs[j-1+k].Revision == revision {
			n--
		}
		if !within(n) {
			return j, true
		}
	}
	return 0, true
}

// Failures returns the failed requests.
func (rs Results) Failures() Results {
	var out Results
	for _, r := range rs {
		if r.Failed() {
			out = append(out, r)
		}
	}
	return out
}

// Err lists up to limit failed requests with their times, or returns nil.
func (rs Results) Err(limit int) error {
	f := rs.Failures()
	if len(f) == 0 {
		return nil
	}
	errs := []error{fmt.Errorf("%d of %d requests failed", len(f), len(rs))}
	for i, r := range f {
		if i == limit {
			errs = append(errs, fmt.Errorf("… and %d more", len(f)-limit))
			break
		}
		errs = append(errs, errors.New(r.String()))
	}
	return errors.Join(errs...)
}
