//go:build bench

package scale

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
)

// eventWatch is the load generator's informers on some kinds of a
// namespace. Every add or update, with the moment it arrived, goes to the
// expectations registered before (one mark each) and, for Rollouts, to the
// current tracker (N Rollouts reaching a state).
type eventWatch struct {
	cache   cache.Cache
	stop    func()
	mu      sync.Mutex
	open    []expectation
	hooks   []func(client.Object, time.Time)
	tracker atomic.Pointer[tracker]
}

type expectation struct {
	match func(client.Object) bool
	mark  *bench.Mark
}

func watchEvents(b *testing.B, ns string, kinds ...client.Object) *eventWatch {
	b.Helper()
	c, err := cache.New(config, cache.Options{Scheme: apis.NewScheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		b.Fatal(err)
	}
	w := &eventWatch{cache: c}
	handle := func(o any) {
		if obj, ok := o.(client.Object); ok {
			w.observe(obj, time.Now())
		}
	}
	for _, obj := range kinds {
		inf, err := c.GetInformer(context.Background(), obj)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: handle, UpdateFunc: func(_, o any) { handle(o) }}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Start(ctx) }()
	w.stop = sync.OnceFunc(func() { cancel(); <-done })
	b.Cleanup(w.stop)
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("watch did not sync")
	}
	return w
}

// expect registers what to wait for; register before the request that
// causes it.
func (w *eventWatch) expect(match func(client.Object) bool) *bench.Mark {
	m := bench.NewMark()
	w.mu.Lock()
	w.open = append(w.open, expectation{match: match, mark: m})
	w.mu.Unlock()
	return m
}

func (w *eventWatch) observe(obj client.Object, at time.Time) {
	if ro, ok := obj.(*v1alpha1.Rollout); ok {
		if t := w.tracker.Load(); t != nil {
			t.observe(ro, at)
		}
	}
	w.mu.Lock()
	hooks := w.hooks
	kept := w.open[:0]
	for _, e := range w.open {
		if e.match(obj) {
			e.mark.Set(at)
			continue
		}
		kept = append(kept, e)
	}
	w.open = kept
	w.mu.Unlock()
	for _, hook := range hooks {
		hook(obj, at)
	}
}

// onEvent calls fn with every add or update from now on.
func (w *eventWatch) onEvent(fn func(client.Object, time.Time)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks = append(w.hooks, fn)
}

func (w *eventWatch) await(b *testing.B, m *bench.Mark, what string) time.Time {
	b.Helper()
	at, ok := m.Wait(latencyTimeout)
	if !ok {
		var list v1alpha1.RolloutList
		_ = w.cache.List(context.Background(), &list)
		var states []string
		for _, ro := range list.Items {
			states = append(states, fmt.Sprintf("%s: %+v", ro.Name, ro.Status))
		}
		b.Fatalf("%s not seen within %s; rollouts: %v", what, latencyTimeout, states)
	}
	return at
}

// track starts following n Rollouts until each has been seen in the state
// want describes.
func (w *eventWatch) track(n int, want func(*v1alpha1.Rollout) bool) *tracker {
	t := &tracker{want: want, n: n, at: map[string]time.Time{}, all: make(chan struct{})}
	w.tracker.Store(t)
	return t
}

// tracker records when each Rollout was first seen in the wanted state.
type tracker struct {
	want func(*v1alpha1.Rollout) bool
	n    int
	mu   sync.Mutex
	at   map[string]time.Time
	last time.Time
	all  chan struct{}
}

func (t *tracker) observe(ro *v1alpha1.Rollout, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.at[ro.Name]; seen || len(t.at) == t.n || !t.want(ro) {
		return
	}
	t.at[ro.Name] = at
	t.last = at
	if len(t.at) == t.n {
		close(t.all)
	}
}

// wait returns when the last Rollout got there, or fails the benchmark
// with where the others stand.
func (t *tracker) wait(b *testing.B, w *eventWatch) time.Time {
	b.Helper()
	select {
	case <-t.all:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.last
	case <-time.After(phaseTimeout):
	}
	var list v1alpha1.RolloutList
	if err := w.cache.List(context.Background(), &list); err != nil {
		b.Fatal(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	phases := map[string]int{}
	var example string
	for i := range list.Items {
		ro := &list.Items[i]
		if _, ok := t.at[ro.Name]; ok {
			continue
		}
		phases[string(ro.Status.Phase)+": "+ro.Status.Message]++
		if example == "" {
			example = fmt.Sprintf("%s: %+v", ro.Name, ro.Status)
		}
	}
	b.Fatalf("%d of %d Rollouts done within %s; the others: %v\nfor example %s", len(t.at), t.n, phaseTimeout, phases, example)
	return time.Time{}
}
