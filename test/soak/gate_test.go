//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// gate is a TCP proxy on a fixed loopback port in front of a metric
// endpoint (Prometheus, the web metric server). Closed, it refuses
// connections — its listener is gone — and it cuts the ones it carried, so
// pooled keep-alive connections fail as well.
type gate struct {
	target string

	mu    sync.Mutex
	addr  string
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newGate(target string) (*gate, error) {
	if err := checkLoopback(target); err != nil {
		return nil, err
	}
	g := &gate{target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	if err := g.open(); err != nil {
		return nil, err
	}
	return g, nil
}

// url is the base URL of the endpoint through the gate.
func (g *gate) url() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return "http://" + g.addr
}

func (g *gate) open() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return err
	}
	g.ln, g.addr = ln, ln.Addr().String()
	go g.accept(ln)
	return nil
}

// shut closes the listener and every connection through the gate, and
// returns how many connections it cut.
func (g *gate) shut() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		_ = g.ln.Close()
		g.ln = nil
	}
	n := len(g.conns) / 2 // each carried connection is a pair
	for c := range g.conns {
		_ = c.Close()
	}
	clear(g.conns)
	return n
}

func (g *gate) accept(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go g.pipe(in)
	}
}

func (g *gate) pipe(in net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := dialLoopback(ctx, "tcp", g.target)
	cancel()
	if err != nil {
		_ = in.Close()
		return
	}
	g.mu.Lock()
	if g.ln == nil { // shut meanwhile
		g.mu.Unlock()
		_, _ = in.Close(), out.Close()
		return
	}
	g.conns[in], g.conns[out] = struct{}{}, struct{}{}
	g.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		_, _ = dst.Close(), src.Close()
	}
	go cp(out, in)
	go cp(in, out)
	wg.Wait()
	g.mu.Lock()
	delete(g.conns, in)
	delete(g.conns, out)
	g.mu.Unlock()
}

// outages closes the gate for windows of 5–20 s, 20–60 s apart, until ctx
// ends, and leaves it open. Each window is counted under name.
//
// Why these sizes: every metric of the soak's templates measures every 2 s
// and tolerates 30 consecutive errors (consecutiveErrorLimit), that is about
// a minute of failed measurements in a row; a window lasts at most 20 s and
// is followed by at least 20 s of service, in which the next measurement
// succeeds and resets the count. So no window can end an analysis with
// Error, and every analysis-caused abort of the run is one the schedule
// asked for with a failing verdict: the end state stays predictable, and a
// run that aborts anyway points at the controller.
func (g *gate) outages(ctx context.Context, c config, stream uint64, t *tally, name string) {
	r := c.rng(stream)
	defer func() { _ = g.open() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(uniform(r, 20*time.Second, 60*time.Second)):
		}
		t.add(faultMetricCuts, g.shut())
		t.inc(name)
		select {
		case <-ctx.Done():
		case <-time.After(uniform(r, 5*time.Second, 20*time.Second)):
		}
		for err := g.open(); err != nil; err = g.open() {
			// The port was taken meanwhile: unlikely, and fatal for the
			// templates that name it.
			t.inc("gate reopen failures: " + err.Error())
			time.Sleep(time.Second)
		}
	}
}

// webMetric serves the verdict a Rollout's web analysis asks for: the
// template passes the verdict annotation of the Rollout as ?v=, and the
// answer is {"ok": true} for "1". The schedule decides which releases fail
// by that annotation, so the endpoint has no state of its own.
func webMetric(t *tally) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/verdict", func(w http.ResponseWriter, r *http.Request) {
		t.inc(countMeasurements)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"ok": r.URL.Query().Get("v") == verdictGood})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.inc("web metric server errors")
		}
	}()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
