//go:build soak

package soak

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/hash"
)

// The invariant watcher has its own client straight to the API server (no
// proxy, no faults) and an informer per kind. The invariants span kinds (a
// route's weight against a ReplicaSet's pods, a promotion against an
// AnalysisRun's verdict), but each kind is its own watch stream, and one
// stream may deliver an event later than another delivers a later one. So
// the watcher orders everything by resourceVersion, which the API server
// draws from one etcd revision counter for every kind: it keeps a short
// history of each object, and checks a Rollout "as of" the resourceVersion
// of each event about it, once every stream has delivered up to that
// version (or has been quiet for a moment, which means it has nothing
// older to deliver). A check therefore sees the cluster as it was at that
// instant, never half old and half new.

type objKind int

const (
	kindRollout objKind = iota
	kindReplicaSet
	kindService
	kindRoute
	kindRun
	numKinds
)

const (
	// quietAfter: a stream that delivered nothing for this long is taken
	// to have delivered everything up to now.
	quietAfter = time.Second
	// maxWait bounds how long a check waits for a lagging stream.
	maxWait = 30 * time.Second
	// keepHistory is how long superseded versions of an object are kept:
	// far longer than any check waits.
	keepHistory = 3 * time.Minute
)

// version is an object as of a resourceVersion; obj is nil once deleted.
type version struct {
	rv  uint64
	obj client.Object
	at  time.Time
}

type history []version

// at is the object as of rv: its last version not newer than rv.
func (h history) at(rv uint64) client.Object {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].rv <= rv {
			return h[i].obj
		}
	}
	return nil
}

func (h history) latest() client.Object {
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1].obj
}

type event struct {
	kind    objKind
	obj     client.Object
	deleted bool
	at      time.Time
}

// pendingCheck is a check of one Rollout as of rv, waiting for the streams.
type pendingCheck struct {
	rv       uint64
	rollout  types.NamespacedName
	trigger  objKind
	enqueued time.Time
}

// runGroup is one analysis of one revision of a Rollout.
type runGroup struct {
	rollout    types.NamespacedName
	hash, kind string
}

// runInfo follows an AnalysisRun's verdict.
type runInfo struct {
	group runGroup
	// badRV is the first version at which the run was Failed, Error or
	// Inconclusive, and badPhase that phase.
	badRV    uint64
	badPhase v1alpha1.AnalysisPhase
	// terminateRV is the first version with spec.terminate set: from then
	// on the controller no longer follows the run.
	terminateRV uint64
	// errors counts its measurements that failed to measure (the metric
	// endpoint unreachable): what the outage windows did.
	errors int32
}

type watcher struct {
	fleet     map[types.NamespacedName]*member
	byService map[types.NamespacedName]types.NamespacedName
	tally     *tally
	events    chan event
	// inflight counts events sent and not yet taken in.
	inflight atomic.Int64

	mu         sync.Mutex
	objs       [numKinds]map[types.NamespacedName]history
	progress   [numKinds]uint64
	lastEvent  [numKinds]time.Time
	rsOf       map[types.NamespacedName]map[types.NamespacedName]bool
	state      map[types.NamespacedName]*rolloutState
	runs       map[types.NamespacedName]*runInfo
	created    map[runGroup]map[string]bool
	pending    []pendingCheck
	violations []violation
	// violating holds the (rollout, invariant) pairs violated at their
	// last check: a violation is recorded when it starts, not at every
	// event while it lasts (those are counted).
	violating map[string]bool
}

func newWatcher(fleet []*member, t *tally) *watcher {
	w := &watcher{
		fleet: map[types.NamespacedName]*member{}, byService: map[types.NamespacedName]types.NamespacedName{},
		tally: t, events: make(chan event, 1<<16),
		rsOf: map[types.NamespacedName]map[types.NamespacedName]bool{}, state: map[types.NamespacedName]*rolloutState{},
		runs: map[types.NamespacedName]*runInfo{}, created: map[runGroup]map[string]bool{}, violating: map[string]bool{},
	}
	for k := range w.objs {
		w.objs[k] = map[types.NamespacedName]history{}
	}
	for _, m := range fleet {
		w.fleet[m.key] = m
		w.state[m.key] = newRolloutState(m)
		a, b := m.services()
		w.byService[types.NamespacedName{Namespace: m.key.Namespace, Name: a}] = m.key
		w.byService[types.NamespacedName{Namespace: m.key.Namespace, Name: b}] = m.key
	}
	return w
}

// start runs the informers and the checker until ctx ends.
func (w *watcher) start(ctx context.Context, cfg *rest.Config) error {
	c, err := cache.New(cfg, cache.Options{Scheme: apis.NewScheme()})
	if err != nil {
		return err
	}
	kinds := [numKinds]client.Object{&v1alpha1.Rollout{}, &appsv1.ReplicaSet{}, &corev1.Service{}, &gatewayv1.HTTPRoute{}, &v1alpha1.AnalysisRun{}}
	for k, obj := range kinds {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		push := func(o any, deleted bool) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if co, ok := o.(client.Object); ok {
				w.inflight.Add(1)
				w.events <- event{kind: objKind(k), obj: co, deleted: deleted, at: time.Now()}
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { push(o, false) },
			UpdateFunc: func(_, o any) { push(o, false) },
			DeleteFunc: func(o any) { push(o, true) },
		}); err != nil {
			return err
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("the watcher's informers did not sync")
	}
	go w.loop(ctx)
	return nil
}

func (w *watcher) loop(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sweep := time.NewTicker(2 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-w.events:
			w.mu.Lock()
			w.ingest(e)
			w.mu.Unlock()
			w.inflight.Add(-1)
		case <-tick.C:
			w.mu.Lock()
			w.drain(time.Now(), false)
			w.mu.Unlock()
		case <-sweep.C:
			w.mu.Lock()
			w.sweep(time.Now())
			w.mu.Unlock()
		}
	}
}

// flush waits until the checker has taken in every event received so far
// and run every check they asked for, each when its streams are ready as
// always: the end-state check reads a complete picture. Only the checker
// goroutine takes events, or two could take two events of one stream out
// of order.
func (w *watcher) flush() {
	deadline := time.Now().Add(maxWait + 5*time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		idle := w.inflight.Load() == 0 && len(w.pending) == 0
		w.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func resourceVersion(o client.Object) uint64 {
	rv, _ := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	return rv
}

// owner is the fleet Rollout an object belongs to, if any.
func (w *watcher) owner(k objKind, o client.Object) (types.NamespacedName, bool) {
	var key types.NamespacedName
	switch k {
	case kindRollout, kindRoute:
		key = client.ObjectKeyFromObject(o)
	case kindReplicaSet:
		key = types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetLabels()["app"]}
	case kindService:
		key = w.byService[client.ObjectKeyFromObject(o)]
	case kindRun:
		key = types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetLabels()[v1alpha1.RolloutLabel]}
	}
	_, ok := w.fleet[key]
	return key, ok
}

func (w *watcher) ingest(e event) {
	rv := resourceVersion(e.obj)
	if e.deleted && rv == 0 {
		rv = w.progress[e.kind]
	}
	w.lastEvent[e.kind] = e.at
	w.progress[e.kind] = max(w.progress[e.kind], rv)
	ro, ok := w.owner(e.kind, e.obj)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(e.obj)
	h := w.objs[e.kind][key]
	if n := len(h); n > 0 && rv <= h[n-1].rv && !e.deleted {
		return // a relist repeating what we have
	}
	obj := e.obj
	if e.deleted {
		obj = nil
	}
	var prev client.Object
	if len(h) > 0 {
		prev = h[len(h)-1].obj
	}
	h = append(h, version{rv: rv, obj: obj, at: e.at})
	w.objs[e.kind][key] = prune(h, e.at)

	st := w.state[ro]
	switch e.kind {
	case kindRollout:
		if obj != nil {
			st.observe(rv, prev, obj.(*v1alpha1.Rollout), e.at)
		}
	case kindReplicaSet:
		if w.rsOf[ro] == nil {
			w.rsOf[ro] = map[types.NamespacedName]bool{}
		}
		w.rsOf[ro][key] = true
		if _, seen := st.firstSeen[e.obj.GetLabels()[v1alpha1.PodTemplateHashLabel]]; !seen {
			st.firstSeen[e.obj.GetLabels()[v1alpha1.PodTemplateHashLabel]] = e.at
		}
	case kindRun:
		w.observeRun(rv, key, ro, e.obj.(*v1alpha1.AnalysisRun), e.deleted)
	}
	w.enqueue(pendingCheck{rv: rv, rollout: ro, trigger: e.kind, enqueued: e.at})
}

// prune drops versions older than keepHistory but the newest of them.
func prune(h history, now time.Time) history {
	i := 0
	for i+1 < len(h) && now.Sub(h[i+1].at) > keepHistory {
		i++
	}
	return h[i:]
}

func (w *watcher) observeRun(rv uint64, key, ro types.NamespacedName, run *v1alpha1.AnalysisRun, deleted bool) {
	info := w.runs[key]
	if info == nil {
		info = &runInfo{group: runGroup{rollout: ro, hash: run.Labels[v1alpha1.PodTemplateHashLabel], kind: run.Labels[v1alpha1.AnalysisKindLabel]}}
		w.runs[key] = info
		if w.created[info.group] == nil {
			w.created[info.group] = map[string]bool{}
		}
		w.created[info.group][run.Name] = true
	}
	if deleted {
		return
	}
	var errs int32
	for _, mr := range run.Status.MetricResults {
		errs += mr.Error
	}
	info.errors = max(info.errors, errs)
	if run.Spec.Terminate && info.terminateRV == 0 {
		info.terminateRV = rv
	}
	switch run.Status.Phase {
	case v1alpha1.AnalysisPhaseFailed, v1alpha1.AnalysisPhaseError, v1alpha1.AnalysisPhaseInconclusive:
		if info.badRV == 0 {
			info.badRV, info.badPhase = rv, run.Status.Phase
		}
	}
}

func (w *watcher) enqueue(p pendingCheck) {
	i := sort.Search(len(w.pending), func(i int) bool { return w.pending[i].rv > p.rv })
	w.pending = slices.Insert(w.pending, i, p)
}

// ready: every stream has delivered up to p.rv or is quiet.
func (w *watcher) ready(p pendingCheck, now time.Time) bool {
	if now.Sub(p.enqueued) > maxWait {
		w.tally.inc("checks that waited the longest for a stream")
		return true
	}
	for k := range numKinds {
		if w.progress[k] < p.rv && now.Sub(w.lastEvent[k]) < quietAfter {
			return false
		}
	}
	return true
}

func (w *watcher) drain(now time.Time, all bool) {
	for len(w.pending) > 0 && (all || w.ready(w.pending[0], now)) {
		p := w.pending[0]
		w.pending = w.pending[1:]
		w.check(p)
	}
}

// snapshot is a Rollout and its objects as of one resourceVersion.
type snapshot struct {
	m          *member
	rv         uint64
	at         time.Time // when the event of rv arrived
	ro         *v1alpha1.Rollout
	prev       *v1alpha1.Rollout // the version before ro, for a check triggered by the Rollout
	rss        []*appsv1.ReplicaSet
	svcA, svcB *corev1.Service
	route      *gatewayv1.HTTPRoute
	runs       []*v1alpha1.AnalysisRun
}

func (w *watcher) snapshotAt(key types.NamespacedName, rv uint64) snapshot {
	m := w.fleet[key]
	s := snapshot{m: m, rv: rv}
	h := w.objs[kindRollout][key]
	if o := h.at(rv); o != nil {
		s.ro = o.(*v1alpha1.Rollout)
		for i := len(h) - 1; i > 0; i-- {
			if h[i].rv <= rv {
				if p := h[i-1].obj; p != nil {
					s.prev = p.(*v1alpha1.Rollout)
				}
				break
			}
		}
	}
	rsKeys := make([]types.NamespacedName, 0, len(w.rsOf[key]))
	for k := range w.rsOf[key] {
		rsKeys = append(rsKeys, k)
	}
	slices.SortFunc(rsKeys, func(a, b types.NamespacedName) int { return strings.Compare(a.Name, b.Name) })
	for _, k := range rsKeys {
		if o := w.objs[kindReplicaSet][k].at(rv); o != nil {
			s.rss = append(s.rss, o.(*appsv1.ReplicaSet))
		}
	}
	a, b := m.services()
	if o := w.objs[kindService][types.NamespacedName{Namespace: key.Namespace, Name: a}].at(rv); o != nil {
		s.svcA = o.(*corev1.Service)
	}
	if o := w.objs[kindService][types.NamespacedName{Namespace: key.Namespace, Name: b}].at(rv); o != nil {
		s.svcB = o.(*corev1.Service)
	}
	if o := w.objs[kindRoute][key].at(rv); o != nil {
		s.route = o.(*gatewayv1.HTTPRoute)
	}
	for k, info := range w.runs {
		if o := w.objs[kindRun][k].at(rv); o != nil && info.group.rollout == key {
			s.runs = append(s.runs, o.(*v1alpha1.AnalysisRun))
		}
	}
	slices.SortFunc(s.runs, func(a, b *v1alpha1.AnalysisRun) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// latest is the snapshot of a Rollout as the watcher knows it now.
func (w *watcher) latest(key types.NamespacedName) snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snapshotAt(key, ^uint64(0))
}

// rollout is the latest Rollout, nil before it exists.
func (w *watcher) rollout(key types.NamespacedName) *v1alpha1.Rollout {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.objs[kindRollout][key].latest(); o != nil {
		return o.(*v1alpha1.Rollout).DeepCopy()
	}
	return nil
}

// runsOf are the latest AnalysisRuns of a Rollout, and how many runs each
// analysis of each revision ever had.
func (w *watcher) runsOf(key types.NamespacedName) ([]*v1alpha1.AnalysisRun, map[runGroup]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var runs []*v1alpha1.AnalysisRun
	for k, info := range w.runs {
		if info.group.rollout != key {
			continue
		}
		if o := w.objs[kindRun][k].latest(); o != nil {
			runs = append(runs, o.(*v1alpha1.AnalysisRun))
		}
	}
	counts := map[runGroup]int{}
	for g, names := range w.created {
		if g.rollout == key {
			counts[g] = len(names)
		}
	}
	return runs, counts
}

// measurementErrors sums the errored measurements of every run.
func (w *watcher) measurementErrors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, info := range w.runs {
		n += int(info.errors)
	}
	return n
}

// specHash is the hash the controller gives the Rollout's template.
func specHash(ro *v1alpha1.Rollout) string {
	if ro.Spec.Template == nil {
		return ""
	}
	h, err := hash.PodTemplate(ro.Spec.Template, ro.Status.CollisionCount)
	if err != nil {
		return ""
	}
	return h
}
