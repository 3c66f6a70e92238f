//go:build bench

package scale

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
)

// BenchmarkScaleFloor is scenario A with no controller at all: the load
// generator itself makes the ReplicaSet writes the scenario implies, on N
// units of 2 replicas. Create: a ConfigMap per unit that owns (as their
// controller) the unit's ReplicaSets, and one ReplicaSet of 2, until all are
// available. Update: a second ReplicaSet at 1 (the surge), the first scaled
// to 1 once it is available, the second to 2 after the 1 s pause, the first
// to 0 once the second is available; a unit is done when the first has no
// pods left. No Rollout, status or event is written, so the wall time is
// what the pods alone take on this machine: a lower bound for any
// controller, and the yardstick for how much of scenario A's wall time is
// the controller's. The ReplicaSets have a controller as any workload's
// do (a Deployment's, a Rollout's), because kube-controller-manager's
// ReplicaSet controller works harder for those: scaling one down, it lists
// the pods of every ReplicaSet with the same controller from the
// namespace's pods, a scan as long as the namespace holds pods. Without an
// owner the floor would skip that cost (N² for N units in one namespace),
// which no controller that owns its ReplicaSets can.
func BenchmarkScaleFloor(b *testing.B) { eachScale(b, floorKind) }

var floorKind = kind{"floor", func(b *testing.B, n, rep int) (create, update phase) { return floorRun(b, "floor", nil, n, rep) }, floorResult}

// BenchmarkScaleFloorRollout is BenchmarkScaleFloor plus the writes that
// any controller of a Rollout must make, made by the load generator with
// no controller running: the unit's owner is a Rollout (created with the
// unit); an update starts with the user's patch of its pod template, then
// a status write that the update started (so that `kubectl wait` and
// kstatus see the new generation in progress) and its event; it ends with
// the status write that the Rollout is Healthy and its event. The statuses
// are the controller's own, recorded from one Rollout of scenario A. This
// is the lower bound of scenario A's cost for a controller whose API is a
// custom resource and which keeps DESIGN's status and events, however
// little it writes otherwise.
func BenchmarkScaleFloorRollout(b *testing.B) { eachScale(b, floorRolloutKind(recordUnitWrites(b))) }

// floorRolloutKind is BenchmarkScaleFloorRollout's scenario, writing w.
func floorRolloutKind(w *unitWrites) kind {
	return kind{"floor-rollout", func(b *testing.B, n, rep int) (create, update phase) { return floorRun(b, "floor-rollout", w, n, rep) }, floorResult}
}

func floorRun(b *testing.B, kind string, writes *unitWrites, n, rep int) (create, update phase) {
	b.Helper()
	ns := benchNamespace(b, fmt.Sprintf("%s-%d-%d", kind, n, rep))
	plane, err := controlPlane(cl)
	if err != nil {
		b.Fatal(err)
	}
	w := watchEvents(b, ns, &appsv1.ReplicaSet{})
	d := newFloorDriver(w, ns, n)
	d.writes = writes
	defer d.stop()
	create = measure(b, fmt.Sprintf("%s-%d-%d-create", kind, n, rep), nil, plane, n, func() time.Time { return d.run(b, floorCreate) })
	b.Logf("%s N=%d rep %d create: %s", kind, n, rep, create.planeString())
	update = measure(b, fmt.Sprintf("%s-%d-%d-update", kind, n, rep), nil, plane, n, func() time.Time { return d.run(b, floorUpdate) })
	b.Logf("%s N=%d rep %d update: %s", kind, n, rep, update.planeString())
	w.stop()
	deleteNamespace(b, ns)
	return create, update
}

// floorStage is where a unit is; each stage waits for one condition on
// its ReplicaSets, then writes and moves on.
type floorStage int

const (
	floorCreate  floorStage = iota // first ReplicaSet created at 2: until available
	floorUpdate                    // second created at 1: until it is available
	floorPause                     // first scaled to 1: 1 s
	floorFull                      // second scaled to 2: until available
	floorDrain                     // first scaled to 0: until it has no pods
	floorHealthy                   // the Rollout's status and event that it is Healthy: until written
	floorDone
)

// floorDriver steps N units through the stages from ReplicaSet events,
// with writers requests in flight.
type floorDriver struct {
	ns     string
	w      *eventWatch
	ctx    context.Context
	work   chan func() error
	failed chan error
	stop   func()

	mu      sync.Mutex
	stage   map[string]floorStage
	owner   map[string]metav1.OwnerReference // each unit's ConfigMap or Rollout
	writes  *unitWrites                      // a Rollout's writes, if the units are Rollouts
	left    int
	last    time.Time
	allDone chan struct{}
}

func newFloorDriver(w *eventWatch, ns string, n int) *floorDriver {
	ctx, cancel := context.WithCancel(context.Background())
	d := &floorDriver{ns: ns, w: w, ctx: ctx, work: make(chan func() error), failed: make(chan error, 1), stage: map[string]floorStage{}, owner: map[string]metav1.OwnerReference{}}
	for i := range n {
		d.stage[fmt.Sprintf("unit-%05d", i)] = floorDone
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case fn := <-d.work:
					if err := fn(); err != nil {
						select {
						case d.failed <- err:
						default:
						}
					}
				}
			}
		})
	}
	d.stop = func() { cancel(); wg.Wait() }
	w.onEvent(func(obj client.Object, at time.Time) {
		if unit := obj.GetLabels()["unit"]; unit != "" {
			d.advance(unit, at)
		}
	})
	return d
}

// queue hands a write to the writers; it blocks until one takes it or the
// driver stops.
func (d *floorDriver) queue(fn func() error) {
	select {
	case d.work <- fn:
	case <-d.ctx.Done():
	}
}

// run starts every unit at stage from and returns when the last is done.
func (d *floorDriver) run(b *testing.B, from floorStage) time.Time {
	b.Helper()
	d.mu.Lock()
	d.left, d.allDone = len(d.stage), make(chan struct{})
	units := make([]string, 0, len(d.stage))
	for unit := range d.stage {
		d.stage[unit] = from
		units = append(units, unit)
	}
	d.mu.Unlock()
	rev, replicas := "1", int32(2)
	if from == floorUpdate {
		rev, replicas = "2", 1
	}
	for _, unit := range units {
		d.queue(func() error { return d.create(unit, rev, replicas) })
	}
	select {
	case <-d.allDone:
	case err := <-d.failed:
		b.Fatal(err)
	case <-time.After(phaseTimeout):
		d.mu.Lock()
		defer d.mu.Unlock()
		b.Fatalf("%d of %d units not done within %s", d.left, len(d.stage), phaseTimeout)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// create creates a unit's ReplicaSet of revision rev, and first the
// ConfigMap or Rollout that owns it if the unit has none yet. With a
// Rollout's writes, an update starts with the user's template patch, and
// the status and event that say it started follow the new ReplicaSet, in
// the controller's order.
func (d *floorDriver) create(unit, rev string, replicas int32) error {
	ctx := context.Background()
	d.mu.Lock()
	owner, ok := d.owner[unit]
	d.mu.Unlock()
	updating := ok && d.writes != nil
	switch {
	case !ok && d.writes == nil:
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: d.ns, Name: unit}}
		if err := k8s.Create(ctx, cm); err != nil {
			return err
		}
		owner = metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: unit, UID: cm.UID, Controller: ptr.To(true)}
	case !ok:
		ro := scaleRollout(d.ns, unit)
		if err := k8s.Create(ctx, ro); err != nil {
			return err
		}
		owner = metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Rollout", Name: unit, UID: ro.UID, Controller: ptr.To(true)}
	case updating:
		if err := d.writes.userUpdate(ctx, d.ns, unit); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.owner[unit] = owner
	d.mu.Unlock()
	rs := floorReplicaSet(d.ns, unit, rev, replicas)
	rs.OwnerReferences = []metav1.OwnerReference{owner}
	if err := k8s.Create(ctx, rs); err != nil || !updating {
		return err
	}
	return d.writes.started(ctx, d.ns, unit)
}

// advance moves a unit on as far as its ReplicaSets in the cache allow.
func (d *floorDriver) advance(unit string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		first, second := d.replicaSet(unit, "1"), d.replicaSet(unit, "2")
		switch d.stage[unit] {
		case floorCreate:
			if first == nil || first.Status.AvailableReplicas < 2 {
				return
			}
			d.healthy(unit, at, true)
		case floorUpdate:
			if second == nil || second.Status.AvailableReplicas < 1 {
				return
			}
			d.stage[unit] = floorPause
			d.scale(unit, "1", 1)
			time.AfterFunc(time.Second, func() {
				d.mu.Lock()
				defer d.mu.Unlock()
				d.stage[unit] = floorFull
				d.scale(unit, "2", 2)
			})
		case floorFull:
			if second == nil || second.Generation != second.Status.ObservedGeneration || second.Status.AvailableReplicas < 2 {
				return
			}
			d.stage[unit] = floorDrain
			d.scale(unit, "1", 0)
		case floorDrain:
			if first == nil || first.Generation != first.Status.ObservedGeneration || first.Status.Replicas > 0 {
				return
			}
			d.healthy(unit, at, false)
		default:
			return
		}
	}
}

// healthy ends a unit's phase: at once, or once the Rollout's status and
// event say it is Healthy (first: of its first revision). Called with d.mu
// held, so the writes are queued.
func (d *floorDriver) healthy(unit string, at time.Time, first bool) {
	if d.writes == nil {
		d.done(unit, at)
		return
	}
	d.stage[unit] = floorHealthy
	go d.queue(func() error {
		if err := d.writes.healthy(context.Background(), d.ns, unit, first); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.done(unit, time.Now())
		return nil
	})
}

func (d *floorDriver) done(unit string, at time.Time) {
	d.stage[unit] = floorDone
	d.left--
	d.last = at
	if d.left == 0 {
		close(d.allDone)
	}
}

func (d *floorDriver) replicaSet(unit, rev string) *appsv1.ReplicaSet {
	var rs appsv1.ReplicaSet
	if err := d.w.cache.Get(context.Background(), types.NamespacedName{Namespace: d.ns, Name: unit + "-" + rev}, &rs); err != nil {
		return nil
	}
	return &rs
}

// scale queues a scale patch; called with d.mu held, so it must not block.
func (d *floorDriver) scale(unit, rev string, replicas int32) {
	go d.queue(func() error {
		patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
		return k8s.Patch(context.Background(), &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: d.ns, Name: unit + "-" + rev}}, patch)
	})
}

// floorReplicaSet is one revision of a unit, with the pods scenario A's
// Rollouts have.
func floorReplicaSet(ns, unit, rev string, replicas int32) *appsv1.ReplicaSet {
	labels := map[string]string{"unit": unit, "rev": rev}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: unit + "-" + rev, Labels: labels},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:" + rev}}},
			},
		},
	}
}

func (p phase) planeString() string {
	return fmt.Sprintf("wall %.1fs, control plane %.1fs CPU (%s), writes/unit %s", p.wall.Seconds(), p.planeCPU.Seconds(), planeByName(p.plane), p.writesString())
}

// floorResult summarises the repetitions of one floor phase: wall time and
// the control plane's CPU (there is no controller to measure).
func floorResult(name string, ps []phase) bench.Result {
	res := bench.Result{Name: name, Columns: []string{"rep", "wall s", "control plane CPU s", "by process", "control plane writes/unit"}}
	var wall, plane, writes []float64
	for i, p := range ps {
		wall, plane, writes = append(wall, p.wall.Seconds()), append(plane, p.planeCPU.Seconds()), append(writes, p.writesPerUnit())
		res.Rows = append(res.Rows, []string{fmt.Sprint(i + 1), bench.FormatValue(wall[i]), bench.FormatValue(plane[i]), planeByName(p.plane), p.writesString()})
	}
	res.Metrics = append(res.Metrics, spread("wall-s", wall)...)
	res.Metrics = append(res.Metrics, spread("plane-cpu-s", plane)...)
	res.Metrics = append(res.Metrics, spread("plane-writes/unit", writes)...)
	res.Metrics = append(res.Metrics, bench.Metric{Unit: "reps", Value: float64(len(ps))})
	return res
}

// unitWrites are the writes of BenchmarkScaleFloorRollout: the patches of
// /status that the controller wrote for one Rollout of scenario A when it
// was first Healthy, when its update started and when the update was done.
type unitWrites struct {
	firstHealthy, updating, updated []byte
}

// recordUnitWrites runs the controller on one Rollout of scenario A and
// keeps the statuses BenchmarkScaleFloorRollout writes.
func recordUnitWrites(b *testing.B) *unitWrites {
	b.Helper()
	ns := benchNamespace(b, "floor-rollout-statuses")
	statuses := recordStatuses(b, ns)
	deleteNamespace(b, ns)
	first := slices.IndexFunc(statuses, func(st v1alpha1.RolloutStatus) bool { return st.Phase == v1alpha1.RolloutPhaseHealthy })
	if first < 0 || first+2 >= len(statuses) {
		b.Fatalf("statuses recorded: want Healthy, then an update's, got %d (first Healthy at %d)", len(statuses), first)
	}
	return &unitWrites{firstHealthy: statusPatch(b, statuses[first]), updating: statusPatch(b, statuses[first+1]), updated: statusPatch(b, statuses[len(statuses)-1])}
}

// userUpdate is the user's update of a unit's Rollout (image app:2).
func (u *unitWrites) userUpdate(ctx context.Context, ns, unit string) error {
	return k8s.Patch(ctx, unitRollout(ns, unit), client.RawPatch(types.MergePatchType, fmt.Appendf(nil, imagePatch, 2)))
}

// started is the controller's status and event that a unit's update
// started.
func (u *unitWrites) started(ctx context.Context, ns, unit string) error {
	if err := patchStatus(ctx, ns, unit, u.updating); err != nil {
		return err
	}
	return rolloutEvent(ctx, ns, unit, "NewReplicaSetCreated", "Update to revision "+unit+"-2 started")
}

// healthy is the controller's status and event that a unit's Rollout is
// Healthy, at its first revision or at the end of an update.
func (u *unitWrites) healthy(ctx context.Context, ns, unit string, first bool) error {
	patch, reason, note := u.updated, "RolloutCompleted", "Revision "+unit+"-2 promoted to stable"
	if first {
		patch, reason, note = u.firstHealthy, "NewReplicaSetCreated", "First revision "+unit+"-1: scaling to 2 replicas"
	}
	if err := patchStatus(ctx, ns, unit, patch); err != nil {
		return err
	}
	return rolloutEvent(ctx, ns, unit, reason, note)
}

// unitRollout names a unit's Rollout for a patch.
func unitRollout(ns, unit string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: unit}}
}

// rolloutEvent writes an event about a unit's Rollout as the controller's
// recorder does (events.k8s.io/v1).
func rolloutEvent(ctx context.Context, ns, unit, reason, note string) error {
	return k8s.Create(ctx, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s.%x", unit, time.Now().UnixNano())},
		EventTime:           metav1.NowMicro(),
		ReportingController: "rollouts-controller",
		ReportingInstance:   "rollouts-controller-bench",
		Action:              reason,
		Reason:              reason,
		Note:                note,
		Type:                corev1.EventTypeNormal,
		Regarding:           corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Rollout", Namespace: ns, Name: unit},
	})
}
