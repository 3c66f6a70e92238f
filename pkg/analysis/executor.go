package analysis

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Default bounds of the measurements taken at once (--analysis-measurements
// and --analysis-measurements-per-namespace).
const (
	DefaultMeasurements             = 100
	DefaultMeasurementsPerNamespace = 10
)

// measurementCap bounds a measurement whose provider does not bound itself:
// the providers' own timeouts (at most 60s) end theirs first.
const measurementCap = 2 * time.Minute

// measureKey names one metric of one run: a metric has at most one
// measurement going at a time.
type measureKey struct {
	run    types.NamespacedName
	uid    types.UID
	metric string
}

// measureState is where a metric's measurement is in the executor.
type measureState int

const (
	// measureNone: the executor has nothing for the metric.
	measureNone measureState = iota
	// measureBusy: waiting for a slot or being taken.
	measureBusy
	// measureDone: taken; the result waits to be recorded.
	measureDone
)

// task is one measurement handed to the executor.
type task struct {
	key     measureKey
	measure func(context.Context) Measured
	cancel  context.CancelFunc // set once it runs
	done    bool
	result  Measured
}

// executor takes measurements outside the reconcile workers. A provider
// that hangs until its timeout then holds a slot of the executor, never a
// worker, so the reconciles of every other run go on. Slots are bounded in
// all (total) and per namespace (perNamespace); when slots are short the
// namespaces take turns, so one namespace's many or slow measurements do
// not delay another's. A reconcile submits a due measurement and returns;
// when it finishes, notify names its run, and a later reconcile records the
// result and forgets it.
type executor struct {
	total, perNamespace int
	// notify is told the run of each measurement that finished.
	notify func(ctx context.Context, run types.NamespacedName)

	// ctx is the parent of every measurement's context; stop cancels it.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	tasks   map[measureKey]*task
	waiting map[string][]*task // by namespace, oldest first
	turns   []string           // namespaces with waiting tasks, next turn first
	running int
	active  map[string]int // running, by namespace
}

func newExecutor(total, perNamespace int, notify func(context.Context, types.NamespacedName)) *executor {
	ctx, stop := context.WithCancel(context.Background())
	return &executor{
		total: max(total, 1), perNamespace: max(perNamespace, 1), notify: notify,
		ctx: ctx, stop: stop,
		tasks: map[measureKey]*task{}, waiting: map[string][]*task{}, active: map[string]int{},
	}
}

// Start implements manager.Runnable: when ctx ends it cancels the
// measurements still going and returns once they have.
func (e *executor) Start(ctx context.Context) error {
	<-ctx.Done()
	e.shutdown()
	return nil
}

// shutdown cancels every measurement and waits for the running ones.
func (e *executor) shutdown() {
	e.stop()
	e.mu.Lock()
	e.waiting, e.turns = map[string][]*task{}, nil
	e.mu.Unlock()
	e.wg.Wait()
}

// state says whether the metric's measurement is waiting or running, or
// finished with result.
func (e *executor) state(key measureKey) (measureState, Measured) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[key]
	switch {
	case !ok:
		return measureNone, Measured{}
	case t.done:
		return measureDone, t.result
	}
	return measureBusy, Measured{}
}

// submit queues a measurement of the metric unless the executor already
// has one for it, waiting, running or done.
func (e *executor) submit(key measureKey, measure func(context.Context) Measured) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.tasks[key]; ok || e.ctx.Err() != nil {
		return
	}
	t := &task{key: key, measure: measure}
	e.tasks[key] = t
	ns := key.run.Namespace
	if len(e.waiting[ns]) == 0 {
		e.turns = append(e.turns, ns)
	}
	e.waiting[ns] = append(e.waiting[ns], t)
	e.dispatch()
}

// forget drops the metric's measurement: its recorded result, or one still
// waiting or running (cancelled; its result is dropped).
func (e *executor) forget(key measureKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.drop(key)
}

// forgetRun drops every measurement of the run (all its UIDs).
func (e *executor) forgetRun(run types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key := range e.tasks {
		if key.run == run {
			e.drop(key)
		}
	}
}

// drop forgets a task; e.mu is held.
func (e *executor) drop(key measureKey) {
	t, ok := e.tasks[key]
	if !ok {
		return
	}
	delete(e.tasks, key)
	switch {
	case t.cancel != nil:
		t.cancel()
	case !t.done:
		ns := key.run.Namespace
		e.waiting[ns] = slices.DeleteFunc(e.waiting[ns], func(w *task) bool { return w == t })
		if len(e.waiting[ns]) == 0 {
			delete(e.waiting, ns)
			e.turns = slices.DeleteFunc(e.turns, func(n string) bool { return n == ns })
		}
	}
}

// dispatch starts waiting measurements while slots are free; e.mu is held.
func (e *executor) dispatch() {
	for e.running < e.total {
		t := e.next()
		if t == nil {
			return
		}
		ns := t.key.run.Namespace
		e.running++
		e.active[ns]++
		ctx, cancel := context.WithTimeout(e.ctx, measurementCap)
		t.cancel = cancel
		e.wg.Add(1)
		go e.run(ctx, cancel, t)
	}
}

// next takes the oldest waiting task of the first namespace in turn that
// has a slot free, and sends that namespace to the back of the turns; nil
// when none can start. e.mu is held.
func (e *executor) next() *task {
	for i, ns := range e.turns {
		if e.active[ns] >= e.perNamespace {
			continue
		}
		q := e.waiting[ns]
		t := q[0]
		e.turns = slices.Delete(e.turns, i, i+1)
		if len(q) == 1 {
			delete(e.waiting, ns)
		} else {
			e.waiting[ns] = q[1:]
			e.turns = append(e.turns, ns)
		}
		return t
	}
	return nil
}

// run takes one measurement, keeps its result unless it was forgotten
// meanwhile, frees the slot, and tells the run.
func (e *executor) run(ctx context.Context, cancel context.CancelFunc, t *task) {
	defer e.wg.Done()
	result := guarded(ctx, t.measure)
	cancel()
	ns := t.key.run.Namespace
	e.mu.Lock()
	e.running--
	if e.active[ns]--; e.active[ns] == 0 {
		delete(e.active, ns)
	}
	current := e.tasks[t.key] == t
	if current {
		t.done, t.result, t.cancel = true, result, nil
	}
	e.dispatch()
	e.mu.Unlock()
	if current {
		e.notify(e.ctx, t.key.run)
	}
}

// guarded takes a measurement, turning a panic into an Error measurement: a
// provider fed a tenant's answer must not end the controller for everyone.
func guarded(ctx context.Context, measure func(context.Context) Measured) (m Measured) {
	defer func() {
		if p := recover(); p != nil {
			log.FromContext(ctx).Error(fmt.Errorf("%v", p), "A measurement panicked", "stack", string(debug.Stack()))
			now := time.Now()
			// The panic's value stays in the log: it was not redacted.
			m = Measured{Err: errors.New("the measurement panicked: a bug in the controller (its log has the stack)"), Started: now, Finished: now}
		}
	}()
	return measure(ctx)
}
