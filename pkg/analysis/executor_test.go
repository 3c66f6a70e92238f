package analysis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
)

// notifications counts the runs an executor told about.
type notifications struct {
	mu   sync.Mutex
	runs []types.NamespacedName
	ch   chan types.NamespacedName
}

func newNotifications() *notifications {
	return &notifications{ch: make(chan types.NamespacedName, 100)}
}

func (n *notifications) tell(_ context.Context, run types.NamespacedName) {
	n.mu.Lock()
	n.runs = append(n.runs, run)
	n.mu.Unlock()
	n.ch <- run
}

func (n *notifications) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.runs)
}

func key(ns, run string) measureKey {
	return measureKey{run: types.NamespacedName{Namespace: ns, Name: run}, uid: types.UID(run), metric: "m"}
}

// blocking is a measurement that says it started and then waits for
// release or for its context to end.
func blocking(started chan<- measureKey, k measureKey, release <-chan struct{}) func(context.Context) Measured {
	return func(ctx context.Context) Measured {
		started <- k
		select {
		case <-release:
			return Measured{Value: "released"}
		case <-ctx.Done():
			return Measured{Err: ctx.Err()}
		}
	}
}

// TestExecutorNamespaceBound: a namespace whose measurements hang holds
// only its own slots; another namespace's measurement starts and finishes
// while they hang.
func TestExecutorNamespaceBound(t *testing.T) {
	n := newNotifications()
	e := newExecutor(4, 2, n.tell)
	defer e.shutdown()
	started := make(chan measureKey, 10)
	hang := make(chan struct{})
	for i := range 5 {
		k := key("a", fmt.Sprintf("run-%d", i))
		e.submit(k, blocking(started, k, hang))
	}
	b := key("b", "run")
	e.submit(b, func(context.Context) Measured { started <- b; return Measured{Value: "1"} })

	if got := <-n.ch; got != b.run {
		t.Fatalf("first run told about: %v, want %v", got, b.run)
	}
	if state, res := e.state(b); state != measureDone || res.Value != "1" {
		t.Errorf("b: state %v result %+v, want done with 1", state, res)
	}
	e.mu.Lock()
	running, waiting := e.active["a"], len(e.waiting["a"])
	e.mu.Unlock()
	if running != 2 || waiting != 3 {
		t.Errorf("namespace a: %d running and %d waiting, want 2 and 3 (its bound is 2)", running, waiting)
	}

	close(hang)
	for range 5 {
		<-n.ch
	}
	for i := range 5 {
		if state, res := e.state(key("a", fmt.Sprintf("run-%d", i))); state != measureDone || res.Value != "released" {
			t.Errorf("a/run-%d: state %v result %+v once released", i, state, res)
		}
	}
	if len(started) != 6 {
		t.Errorf("%d measurements started, want 6", len(started))
	}
}

// TestExecutorTakesTurns: when slots are short, the namespaces waiting
// take turns instead of the first one's queue going first.
func TestExecutorTakesTurns(t *testing.T) {
	n := newNotifications()
	e := newExecutor(1, 1, n.tell)
	defer e.shutdown()
	started := make(chan measureKey, 10)
	gate := make(chan struct{})
	first := key("x", "gate")
	e.submit(first, blocking(started, first, gate))
	<-started
	var mu sync.Mutex
	var order []string
	for _, k := range []measureKey{key("a", "1"), key("a", "2"), key("a", "3"), key("b", "1")} {
		e.submit(k, func(context.Context) Measured {
			mu.Lock()
			order = append(order, k.run.String())
			mu.Unlock()
			return Measured{}
		})
	}
	close(gate)
	for range 5 {
		<-n.ch
	}
	if diff := cmp.Diff([]string{"a/1", "b/1", "a/2", "a/3"}, order); diff != "" {
		t.Errorf("order of measurements (-want +got):\n%s", diff)
	}
}

// TestExecutorOncePerMetric: a metric's measurement is taken once, however
// often it is submitted, until its result is forgotten.
func TestExecutorOncePerMetric(t *testing.T) {
	n := newNotifications()
	e := newExecutor(10, 10, n.tell)
	defer e.shutdown()
	var count int
	var mu sync.Mutex
	release := make(chan struct{})
	measure := func(context.Context) Measured {
		mu.Lock()
		count++
		mu.Unlock()
		<-release
		return Measured{}
	}
	k := key("a", "run")
	for range 3 {
		e.submit(k, measure)
	}
	if state, _ := e.state(k); state != measureBusy {
		t.Errorf("state %v while running, want busy", state)
	}
	close(release)
	<-n.ch
	e.submit(k, measure) // done, not recorded yet
	e.forget(k)
	if state, _ := e.state(k); state != measureNone {
		t.Errorf("state %v after forget, want none", state)
	}
	e.submit(k, measure)
	<-n.ch
	mu.Lock()
	defer mu.Unlock()
	if count != 2 {
		t.Errorf("measured %d times, want 2 (once, then once after forget)", count)
	}
}

// TestExecutorForget: forgetting a running measurement cancels it and
// drops its result; forgetting a waiting one means it never starts.
func TestExecutorForget(t *testing.T) {
	n := newNotifications()
	e := newExecutor(1, 1, n.tell)
	started := make(chan measureKey, 10)
	ended := make(chan error, 10)
	running, queued := key("a", "running"), key("a", "queued")
	e.submit(running, func(ctx context.Context) Measured {
		started <- running
		<-ctx.Done()
		ended <- ctx.Err()
		return Measured{}
	})
	e.submit(queued, func(context.Context) Measured { started <- queued; return Measured{} })
	<-started
	e.forgetRun(queued.run)
	e.forget(running)
	if err := <-ended; err == nil {
		t.Error("the forgotten measurement's context did not end")
	}
	e.shutdown()
	if state, _ := e.state(running); state != measureNone {
		t.Errorf("a forgotten measurement has state %v", state)
	}
	if n.count() != 0 || len(started) != 0 {
		t.Errorf("%d runs told, %d more measurements started; want none", n.count(), len(started))
	}
}

// TestExecutorShutdown: stopping cancels the running measurements, waits
// for them, and starts nothing more.
func TestExecutorShutdown(t *testing.T) {
	n := newNotifications()
	e := newExecutor(10, 10, n.tell)
	started := make(chan measureKey, 10)
	var keys []measureKey
	for i := range 3 {
		k := key("a", fmt.Sprint(i))
		keys = append(keys, k)
		e.submit(k, blocking(started, k, nil))
	}
	for range 3 {
		<-started
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Start(ctx) }()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		// Ended by the cancellation, with its error as the result.
		if state, res := e.state(k); state != measureDone || res.Err == nil {
			t.Errorf("%v after shutdown: %v %+v", k.run, state, res)
		}
	}
	late := key("b", "late")
	e.submit(late, func(context.Context) Measured { started <- late; return Measured{} })
	if state, _ := e.state(late); state != measureNone || len(started) != 0 {
		t.Errorf("a measurement submitted after shutdown: state %v, %d started", state, len(started))
	}
}

// TestExecutorSurvivesAPanic: a measurement that panics is an Error
// measurement; the executor, and the controller with it, goes on.
func TestExecutorSurvivesAPanic(t *testing.T) {
	n := newNotifications()
	e := newExecutor(10, 10, n.tell)
	defer e.shutdown()
	k := key("a", "run")
	e.submit(k, func(context.Context) Measured { panic("secret-looking value") })
	<-n.ch
	state, m := e.state(k)
	if state != measureDone || m.Err == nil || !strings.Contains(m.Err.Error(), "the measurement panicked") {
		t.Fatalf("after a panic: state %v, measurement %+v", state, m)
	}
	if strings.Contains(m.Err.Error(), "secret-looking") {
		t.Errorf("the panic's value reached the measurement: %v", m.Err)
	}
	e.forget(k)
	e.submit(k, func(context.Context) Measured { return Measured{Value: "ok"} })
	<-n.ch
	if _, m := e.state(k); m.Value != "ok" {
		t.Errorf("the next measurement after a panic: %+v", m)
	}
}
