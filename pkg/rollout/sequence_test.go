package rollout

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden narrations in testdata/")

// sim is a tiny world for the planner: ReplicaSets whose pods appear at once
// and become available one tick after they appear, Services, and a clock that
// advances one second per tick. Every tick it runs the planner, applies the
// plan, checks the invariants and writes one line of narration.
type sim struct {
	t        testing.TB
	ro       *v1alpha1.Rollout
	rss      map[string]*appsv1.ReplicaSet
	services map[string]*corev1.Service
	now      time.Time
	start    time.Time
	story    strings.Builder
	lastLine string
	// flaky, when set, says whether a pod fails to become available this tick.
	flaky func() bool
	// broken images never have available pods.
	broken map[string]bool
	// pods by ReplicaSet name, oldest first, for restartAt.
	pods    map[string][]*corev1.Pod
	podSeq  int
	evicted []string
	// workload is the Deployment of spec.workloadRef, if any.
	workload *appsv1.Deployment
	// weight is the canary weight the routers carry (traffic routing).
	weight int32
	// runs are the AnalysisRuns the plans created; templates those the
	// Rollout may reference (all exist unless a test removes one).
	runs        map[string]*v1alpha1.AnalysisRun
	templates   map[string]*v1alpha1.AnalysisTemplateSpec
	experiments map[string]*v1alpha1.Experiment
	// rsLag: the ReplicaSet controller sees a scale a tick late, so the
	// plan after it reads a status older than the spec.
	rsLag    bool
	scaledAt map[string]bool
	// endpointsLag is how many ticks the Services' EndpointSlices list a
	// ReplicaSet's available pods after they became available.
	endpointsLag int
	// available is each ReplicaSet's available pods at every tick so far.
	available map[string][]int32
	// endpointReads counts the plans that read EndpointSlices;
	// lastEndpoints is what the last one found.
	endpointReads int
	lastEndpoints int32
	// notified are the plans' transitions (Plan.Notify), as "trigger step".
	notified []string
	// coalesce, when set, holds the status writes the plans say may wait,
	// as the Reconciler does (tickHeld).
	coalesce *coalescer
}

func newSim(t testing.TB, ro *v1alpha1.Rollout) *sim {
	t.Helper()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &sim{t: t, ro: ro, rss: map[string]*appsv1.ReplicaSet{}, services: map[string]*corev1.Service{}, now: start, start: start}
	for _, ref := range serviceRefs(ro) {
		s.services[ref.name] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: ref.name, Namespace: ro.Namespace},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
		}
	}
	return s
}

func canaryRollout(replicas int32, maxSurge, maxUnavailable string, steps ...v1alpha1.CanaryStep) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: types.UID("uid-web"), Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			Replicas:             ptr.To(replicas),
			RevisionHistoryLimit: ptr.To[int32](2),
			Selector:             &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
				CanaryService:  "web-canary",
				StableService:  "web-stable",
				MaxSurge:       ptr.To(intstr.Parse(maxSurge)),
				MaxUnavailable: ptr.To(intstr.Parse(maxUnavailable)),
				Steps:          steps,
			}},
		},
	}
}

func setWeight(w int32) v1alpha1.CanaryStep { return v1alpha1.CanaryStep{SetWeight: ptr.To(w)} }

func pause(d string) v1alpha1.CanaryStep {
	if d == "" {
		return v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{}}
	}
	return v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{Duration: ptr.To(intstr.Parse(d))}}
}

func (s *sim) say(format string, args ...any) {
	fmt.Fprintf(&s.story, "%4ds  ", int(s.now.Sub(s.start).Seconds()))
	fmt.Fprintf(&s.story, format+"\n", args...)
	s.lastLine = ""
}

func (s *sim) setImage(image string) {
	s.ro.Spec.Template.Spec.Containers[0].Image = image
	s.ro.Generation++
	s.say("user: image %s", image)
}

func (s *sim) request(annotation, token string) {
	if s.ro.Annotations == nil {
		s.ro.Annotations = map[string]string{}
	}
	s.ro.Annotations[annotation] = token
	s.say("user: %s=%s", strings.TrimPrefix(annotation, "rollouts.kubeseed.io/"), token)
}

// breakImage makes the pods of an image unavailable from now on.
func (s *sim) breakImage(image string) {
	if s.broken == nil {
		s.broken = map[string]bool{}
	}
	s.broken[image] = true
	s.say("world: pods of %s stop being available", image)
}

func (s *sim) scale(replicas int32) {
	s.ro.Spec.Replicas = ptr.To(replicas)
	s.ro.Generation++
	s.say("user: replicas %d", replicas)
}

func (s *sim) sorted() []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range s.rss {
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// tick runs one reconcile and one step of the world.
func (s *sim) tick() Plan {
	s.t.Helper()
	weight, reads := s.weight, s.endpointReads
	p, err := planTraffic(s.t.Context(), s.input(), s.readyEndpoints)
	if err != nil {
		s.t.Fatalf("plan at %s: %v", s.now.Sub(s.start), err)
	}
	for _, n := range p.Notify {
		s.notified = append(s.notified, strings.TrimSpace(fmt.Sprintf("%s %d %s", n.Trigger, ptr.Deref(n.Step, -1), n.AnalysisRun)))
	}
	before := s.snapshot()
	s.apply(p)
	s.checkInvariants(before, p)
	s.checkEndpoints(weight, reads)
	s.narrate(p)
	s.advance()
	return p
}

// input is what the controller observes of the world now.
func (s *sim) input() Input {
	return Input{
		Rollout: s.ro.DeepCopy(), ReplicaSets: s.sorted(), Services: s.services, Pods: s.allPods(), Workload: s.workload,
		AnalysisRuns: s.runs, Templates: s.templates, Experiments: s.experiments, Now: s.now,
		HeldStatus: s.coalesce.heldStatus(types.NamespacedName{Namespace: s.ro.Namespace, Name: s.ro.Name}),
	}
}

// tickHeld runs one reconcile whose status write the coalescer may hold:
// then the status stays as it was, and the plan's events are not recorded
// (the next reconcile decides them again). It reports whether it held.
func (s *sim) tickHeld() (Plan, bool) {
	s.t.Helper()
	if s.coalesce == nil {
		s.coalesce = newCoalescer()
	}
	before, now := *s.ro.Status.DeepCopy(), s.now
	p := s.tick()
	if s.coalesce.hold(types.NamespacedName{Namespace: s.ro.Namespace, Name: s.ro.Name}, p.StatusWait, &p.Status, now) > 0 {
		s.ro.Status = before
		return p, true
	}
	return p, false
}

type snapshot struct{ spec, available int32 }

func (s *sim) snapshot() map[string]snapshot {
	out := map[string]snapshot{}
	for name, rs := range s.rss {
		out[name] = snapshot{*rs.Spec.Replicas, rs.Status.AvailableReplicas}
	}
	return out
}

func (s *sim) apply(p Plan) {
	for _, name := range p.Adopt {
		s.rss[name].OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s.ro, v1alpha1.GroupVersion.WithKind("Rollout"))}
	}
	if p.Create != nil {
		if _, exists := s.rss[p.Create.Name]; exists {
			s.t.Fatalf("plan creates %s, which exists", p.Create.Name)
		}
		s.rss[p.Create.Name] = p.Create.DeepCopy()
	}
	if p.Finalize {
		s.ro.Finalizers = append(s.ro.Finalizers, v1alpha1.CleanupFinalizer)
	}
	if writesUserObjects := len(p.Services) > 0 || p.TrafficWeight != nil || p.WorkloadReplicas != nil; writesUserObjects && !slices.Contains(s.ro.Finalizers, v1alpha1.CleanupFinalizer) {
		s.t.Fatalf("plan writes objects the user owns without the cleanup finalizer: %+v", p)
	}
	for _, sc := range p.Services {
		svc := s.services[sc.Name]
		svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] = sc.Hash
		metav1.SetMetaDataAnnotation(&svc.ObjectMeta, v1alpha1.ManagedByAnnotation, s.ro.Name)
	}
	for _, sc := range p.Scale {
		rs := s.rss[sc.Name]
		if got := *rs.Spec.Replicas; got != sc.From {
			s.t.Fatalf("scale %s from %d, but it has %d", sc.Name, sc.From, got)
		}
		rs.Spec.Replicas = ptr.To(sc.To)
		rs.Generation++
		if sc.StepsDone != nil {
			if *sc.StepsDone == "" {
				delete(rs.Annotations, v1alpha1.StepsDoneAnnotation)
			} else {
				metav1.SetMetaDataAnnotation(&rs.ObjectMeta, v1alpha1.StepsDoneAnnotation, *sc.StepsDone)
			}
		}
		if s.rsLag {
			if s.scaledAt == nil {
				s.scaledAt = map[string]bool{}
			}
			s.scaledAt[sc.Name] = true
		}
	}
	for _, a := range p.Annotate {
		rs := s.rss[a.Name]
		if rs.Annotations == nil {
			rs.Annotations = map[string]string{}
		}
		if a.Value == "" {
			delete(rs.Annotations, a.Key)
		} else {
			rs.Annotations[a.Key] = a.Value
		}
	}
	s.relabel(p.Relabel)
	for _, name := range p.Delete {
		delete(s.rss, name)
	}
	for _, name := range p.Evict {
		s.evict(name)
	}
	if w := p.TrafficWeight; w != nil {
		s.weight = *w
	}
	s.applyRuns(p)
	if sc := p.WorkloadReplicas; sc != nil {
		if got := ptr.Deref(s.workload.Spec.Replicas, 1); got != sc.From {
			s.t.Fatalf("scale deployment %s from %d, but it has %d", sc.Name, sc.From, got)
		}
		s.say("deployment %s scaled to %d", s.workload.Name, sc.To)
		s.workload.Spec.Replicas = ptr.To(sc.To)
	}
	s.ro.Status = p.Status
}

// advance: pods appear and disappear at once (unavailable ones go first) and
// become available one tick after they appear.
func (s *sim) advance() {
	for _, rs := range s.sorted() {
		if s.scaledAt[rs.Name] {
			delete(s.scaledAt, rs.Name)
			continue
		}
		rs.Status.ObservedGeneration = rs.Generation
		spec := *rs.Spec.Replicas
		existing := rs.Status.Replicas
		avail := min(spec, existing)
		if s.flaky != nil && avail > 0 && s.flaky() {
			avail = min(avail, rs.Status.AvailableReplicas)
		}
		if s.broken[rs.Spec.Template.Spec.Containers[0].Image] {
			avail = 0
		}
		rs.Status.AvailableReplicas = avail
		rs.Status.ReadyReplicas = rs.Status.AvailableReplicas
		rs.Status.Replicas = spec
		s.syncPods(rs)
		if s.available == nil {
			s.available = map[string][]int32{}
		}
		s.available[rs.Name] = append(s.available[rs.Name], avail)
	}
	s.now = s.now.Add(time.Second)
}

// checkEndpoints: a plan that gave the canary more traffic read its
// endpoints first, and gave no more than the pods listed ready serve (any
// traffic at all under setCanaryScale, where the user sized the canary).
func (s *sim) checkEndpoints(weight int32, reads int) {
	s.t.Helper()
	replicas := ptr.Deref(s.ro.Spec.Replicas, 1)
	if s.weight <= weight || replicas == 0 {
		return // at 0 replicas no pod serves either revision
	}
	if s.endpointReads == reads {
		s.t.Fatalf("at %s the canary weight rose %d → %d without reading its endpoints", s.now.Sub(s.start), weight, s.weight)
	}
	c := s.ro.Spec.Strategy.Canary
	serves := min(c.TrafficRouting.MaxTrafficWeight, s.lastEndpoints*c.TrafficRouting.MaxTrafficWeight/replicas)
	if scaled := slices.ContainsFunc(c.Steps, func(st v1alpha1.CanaryStep) bool { return st.SetCanaryScale != nil }); scaled && s.lastEndpoints > 0 {
		serves = c.TrafficRouting.MaxTrafficWeight
	}
	if s.weight > serves {
		s.t.Fatalf("at %s the canary weight rose %d → %d with %d ready endpoints, which serve %d", s.now.Sub(s.start), weight, s.weight, s.lastEndpoints, serves)
	}
}

// readyEndpoints is what the EndpointSlices list: the pods available
// endpointsLag ticks ago.
func (s *sim) readyEndpoints(_ context.Context, q EndpointsQuery) (int32, error) {
	s.endpointReads++
	if _, ok := s.services[q.Service]; !ok {
		s.t.Fatalf("plan reads the endpoints of %s, which is not a Service of the Rollout", q.Service)
	}
	history := s.available[q.ReplicaSet]
	s.lastEndpoints = 0
	if i := len(history) - 1 - s.endpointsLag; i >= 0 {
		s.lastEndpoints = history[i]
	}
	return s.lastEndpoints, nil
}

// syncPods keeps one pod object per existing pod: new ones are created now,
// surplus ones (the youngest) go.
func (s *sim) syncPods(rs *appsv1.ReplicaSet) {
	if s.pods == nil {
		s.pods = map[string][]*corev1.Pod{}
	}
	pods := s.pods[rs.Name]
	for int32(len(pods)) < rs.Status.Replicas {
		s.podSeq++
		pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name:              fmt.Sprintf("%s-%d", rs.Name, s.podSeq),
			Labels:            maps.Clone(rs.Spec.Template.Labels),
			Annotations:       maps.Clone(rs.Spec.Template.Annotations),
			CreationTimestamp: metav1.NewTime(s.now),
		}})
	}
	s.pods[rs.Name] = pods[:rs.Status.Replicas]
}

func (s *sim) allPods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, rs := range s.sorted() {
		out = append(out, s.pods[rs.Name]...)
	}
	return out
}

// evict deletes a pod; its ReplicaSet replaces it on the next tick.
func (s *sim) evict(name string) {
	for rsName, pods := range s.pods {
		for i, pod := range pods {
			if pod.Name != name {
				continue
			}
			s.pods[rsName] = append(pods[:i:i], pods[i+1:]...)
			rs := s.rss[rsName]
			rs.Status.Replicas--
			rs.Status.AvailableReplicas = min(rs.Status.AvailableReplicas, rs.Status.Replicas)
			s.evicted = append(s.evicted, name)
			return
		}
	}
	s.t.Fatalf("evicting %s, which does not exist", name)
}

// checkInvariants: never more than replicas+maxSurge pods asked for, never
// fewer than replicas-maxUnavailable available by the plan's own doing, and
// (with traffic routing) never more traffic than the canary can serve.
func (s *sim) checkInvariants(before map[string]snapshot, p Plan) {
	s.t.Helper()
	replicas := *s.ro.Spec.Replicas
	l := limits{surge: replicas}
	if c := s.ro.Spec.Strategy.Canary; c != nil {
		var err error
		if l, err = resolveLimits(replicas, c.MaxSurge, c.MaxUnavailable); err != nil {
			s.t.Fatal(err)
		}
		if c.TrafficRouting != nil {
			l.surge = max(l.surge, replicas)
		}
	}
	// An aborted canary without router goes at once (DESIGN: "scaled down
	// at once"): the floor holds for the other pods.
	dropped := ""
	if c := s.ro.Spec.Strategy.Canary; c != nil && c.TrafficRouting == nil && p.Status.Abort {
		dropped = p.Status.CurrentPodHash
	}
	var specBefore, specAfter, availBefore, availAfter int32
	for name, b := range before {
		specBefore += b.spec
		if rs := s.rss[name]; rs == nil || rs.Labels[v1alpha1.PodTemplateHashLabel] != dropped {
			availBefore += min(b.available, b.spec)
		}
	}
	for _, rs := range s.rss {
		spec := *rs.Spec.Replicas
		specAfter += spec
		if rs.Labels[v1alpha1.PodTemplateHashLabel] != dropped {
			availAfter += min(rs.Status.AvailableReplicas, spec)
		}
	}
	if specAfter > max(replicas+l.surge, specBefore) {
		s.t.Errorf("%s: %d pods asked for, more than replicas+surge %d", s.now.Sub(s.start), specAfter, replicas+l.surge)
	}
	if floor := min(replicas-l.unavailable, availBefore); availAfter < floor {
		s.t.Errorf("%s: %d pods available after the plan, below the floor %d", s.now.Sub(s.start), availAfter, floor)
	}
	// Traffic goes only to a canary with the pods to take it.
	if c := s.ro.Spec.Strategy.Canary; c != nil && c.TrafficRouting != nil && p.TrafficWeight != nil && *p.TrafficWeight > 0 {
		var canaryAvail int32
		for _, rs := range s.rss {
			if rs.Labels[v1alpha1.PodTemplateHashLabel] == s.ro.Status.CurrentPodHash {
				canaryAvail = rs.Status.AvailableReplicas
			}
		}
		w := &world{replicas: replicas, routed: true, maxWeight: c.TrafficRouting.MaxTrafficWeight, minPods: ptr.Deref(c.MinPodsPerReplicaSet, 1)}
		need, _ := w.split(*p.TrafficWeight)
		if _, ok := canaryScale(c.Steps, int(ptr.Deref(s.ro.Status.CurrentStepIndex, 0)), w); ok {
			need = 1 // setCanaryScale decouples the size from the weight
		}
		if canaryAvail < need && s.ro.Status.StableRS != s.ro.Status.CurrentPodHash {
			s.t.Errorf("%s: weight %d sent to a canary with %d available pods (needs %d)", s.now.Sub(s.start), *p.TrafficWeight, canaryAvail, need)
		}
	}
}

func (s *sim) narrate(p Plan) {
	var sizes []string
	for _, rs := range s.sorted() {
		role := "old"
		switch rs.Labels[v1alpha1.PodTemplateHashLabel] {
		case s.ro.Status.StableRS:
			role = "stable"
		case s.ro.Status.CurrentPodHash:
			role = "canary"
		}
		sizes = append(sizes, fmt.Sprintf("%s %s %d/%d", role, rs.Spec.Template.Spec.Containers[0].Image, rs.Status.AvailableReplicas, *rs.Spec.Replicas))
	}
	st := s.ro.Status
	line := fmt.Sprintf("%-11s %s", st.Phase, strings.Join(sizes, ", "))
	if c := s.ro.Spec.Strategy.Canary; c != nil && c.TrafficRouting != nil {
		line = fmt.Sprintf("%-11s step %d/%d  traffic %3d  %s", st.Phase, ptr.Deref(st.CurrentStepIndex, 0), len(c.Steps), s.weight, strings.Join(sizes, ", "))
	} else if c != nil {
		line = fmt.Sprintf("%-11s step %d/%d  %s", st.Phase, ptr.Deref(st.CurrentStepIndex, 0), len(c.Steps), strings.Join(sizes, ", "))
	} else {
		line += fmt.Sprintf("  active→%s preview→%s", s.imageOfHash(st.BlueGreen.ActiveSelector), s.imageOfHash(st.BlueGreen.PreviewSelector))
	}
	var events []string
	for _, e := range p.Events {
		events = append(events, e.Reason+": "+e.Message)
	}
	if len(events) > 0 {
		line += "\n        " + strings.Join(events, "\n        ")
	}
	if line == s.lastLine {
		return
	}
	s.say("%s", line)
	s.lastLine = line
}

func (s *sim) imageOfHash(hash string) string {
	for _, rs := range s.rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == hash {
			return rs.Spec.Template.Spec.Containers[0].Image
		}
	}
	return "-"
}

// until ticks until cond holds, failing after limit ticks.
func (s *sim) until(what string, limit int, cond func(st v1alpha1.RolloutStatus) bool) {
	s.t.Helper()
	for range limit {
		s.tick()
		if cond(s.ro.Status) {
			return
		}
	}
	s.t.Fatalf("not %s after %d ticks; story so far:\n%s", what, limit, s.story.String())
}

// wait ticks for the given number of seconds.
func (s *sim) wait(ticks int) {
	for range ticks {
		s.tick()
	}
}

func phaseIs(ph v1alpha1.RolloutPhase) func(v1alpha1.RolloutStatus) bool {
	return func(st v1alpha1.RolloutStatus) bool { return st.Phase == ph }
}

func pausedAt(i int32) func(v1alpha1.RolloutStatus) bool {
	return func(st v1alpha1.RolloutStatus) bool {
		return ptr.Deref(st.CurrentStepIndex, -1) == i && st.Phase == v1alpha1.RolloutPhasePaused
	}
}

// sizes returns image → spec replicas.
func (s *sim) sizes() map[string]int32 {
	out := map[string]int32{}
	for _, rs := range s.rss {
		out[rs.Spec.Template.Spec.Containers[0].Image] += *rs.Spec.Replicas
	}
	return out
}

// settledOn: the ReplicaSet of image has n available pods out of n, and no
// other ReplicaSet has pods or wants any.
func (s *sim) settledOn(image string, n int32) bool {
	for _, rs := range s.rss {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			if *rs.Spec.Replicas != n || rs.Status.AvailableReplicas != n {
				return false
			}
		} else if *rs.Spec.Replicas != 0 || rs.Status.Replicas != 0 {
			return false
		}
	}
	return true
}

// stableSettled: all replicas on the stable revision and available.
func (s *sim) stableSettled() bool {
	for _, rs := range s.rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == s.ro.Status.StableRS {
			if *rs.Spec.Replicas != *s.ro.Spec.Replicas || rs.Status.AvailableReplicas != *rs.Spec.Replicas {
				return false
			}
		} else if *rs.Spec.Replicas != 0 || rs.Status.Replicas != 0 {
			return false
		}
	}
	return true
}

func (s *sim) expectSizes(want map[string]int32) {
	s.t.Helper()
	got := s.sizes()
	for k, v := range got {
		if v == 0 {
			if _, ok := want[k]; !ok {
				delete(got, k)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		s.t.Errorf("replicas by image (-want +got):\n%s\nstory:\n%s", diff, s.story.String())
	}
}

func (s *sim) expectServices(stableImage, canaryImage string) {
	s.t.Helper()
	hashOf := map[string]string{}
	for _, rs := range s.rss {
		hashOf[rs.Labels[v1alpha1.PodTemplateHashLabel]] = rs.Spec.Template.Spec.Containers[0].Image
	}
	c := s.ro.Spec.Strategy.Canary
	got := [2]string{hashOf[s.services[c.StableService].Spec.Selector[v1alpha1.PodTemplateHashLabel]], hashOf[s.services[c.CanaryService].Spec.Selector[v1alpha1.PodTemplateHashLabel]]}
	if want := [2]string{stableImage, canaryImage}; got != want {
		s.t.Errorf("Services select stable %s, canary %s; want %s, %s", got[0], got[1], want[0], want[1])
	}
}

// golden compares the narration with testdata/<test>.golden.
func (s *sim) golden() {
	s.t.Helper()
	path := filepath.Join("testdata", strings.ReplaceAll(s.t.Name(), "/", "_")+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s.story.String()), 0o644); err != nil {
			s.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatalf("%v (run go test ./pkg/rollout -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), s.story.String()); diff != "" {
		s.t.Errorf("narration differs from %s (-want +got):\n%s", path, diff)
	}
}
