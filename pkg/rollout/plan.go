package rollout

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// Input is everything the planner needs, gathered from the cache.
type Input struct {
	Rollout *v1alpha1.Rollout
	// ReplicaSets owned by the Rollout, and orphans its selector matches.
	ReplicaSets []*appsv1.ReplicaSet
	// Services referenced by the strategy, by name; a missing one is absent.
	Services map[string]*corev1.Service
	// Pods of the ReplicaSets, for restartAt and ephemeral metadata (read
	// only for a Rollout that uses either).
	Pods []*corev1.Pod
	// Workload is the Deployment spec.workloadRef names; nil when absent.
	Workload *appsv1.Deployment
	// TrafficInvalid says what is wrong with the routing objects the Rollout
	// names (a missing route, no stable backend); empty when all is well.
	TrafficInvalid string
	// AnalysisRuns owned by the Rollout, by name.
	AnalysisRuns map[string]*v1alpha1.AnalysisRun
	// Templates the Rollout references, by analysis.TemplateKey; a missing
	// one is absent.
	Templates map[string]*v1alpha1.AnalysisTemplateSpec
	// Experiments owned by the Rollout, by name.
	Experiments map[string]*v1alpha1.Experiment
	// WatchNamespace is the one namespace a namespaced controller watches
	// (empty in cluster mode): clusterScope references are invalid there.
	WatchNamespace string
	// CanaryEndpoints is how many pods of the current ReplicaSet the
	// EndpointSlices of the Service carrying the canary weight list ready;
	// nil until a plan asked for it (Plan.Endpoints).
	CanaryEndpoints *int32
	// HeldStatus is the latest status this controller decided and has not
	// written yet (Plan.StatusWait): progress is measured from it, and a
	// timed pause step it entered keeps its start rather than starting
	// again.
	HeldStatus *v1alpha1.RolloutStatus
	Now        time.Time
}

// Plan is what the applier does, in this order: adopt, create, switch
// Services, scale, delete, then write Status and record Events.
type Plan struct {
	// Finalize adds the cleanup finalizer before the first write to an
	// object the user owns (a Service, a route, the workloadRef Deployment).
	Finalize bool
	Adopt    []string
	Create   *appsv1.ReplicaSet
	Services []ServiceChange
	Scale    []ScaleChange
	// Annotate sets annotations of ReplicaSets: revisions (a rollback makes
	// an old one current again) and scale-down deadlines.
	Annotate []AnnotationChange
	// Evict lists pods to evict (restartAt).
	Evict  []string
	Delete []string
	// Relabel changes the ephemeral metadata (DESIGN §13) of ReplicaSet
	// templates, before scaling, and of pods, last: in place, by patch.
	Relabel []MetadataChange
	// WorkloadReplicas scales the Deployment of spec.workloadRef down.
	WorkloadReplicas *ScaleChange
	// TrafficWeight is the canary weight the routers must carry; nil without
	// traffic routing (or while paused).
	TrafficWeight *int32
	// TrafficFirst: the routers are set before any other write, because
	// the update is aborted or, during an update, the plan takes traffic
	// away from a destination (a superseded canary, whose Service is about
	// to select the new revision's pods, not yet available). Traffic given
	// goes last, once the pods that take it exist; so does the promotion's
	// handover, after the stable Service selects the promoted pods.
	TrafficFirst bool
	// TrafficExtra are the experiment destinations beside the canary; those
	// at weight 0 must be removed.
	TrafficExtra []traffic.Destination
	// Routes are the managed header and mirror routes the routers must carry
	// (with TrafficWeight; empty removes them all).
	Routes []traffic.ManagedRoute
	// Endpoints, when set, asks for Input.CanaryEndpoints before the plan is
	// carried out: it gives the canary traffic it does not carry yet, and a
	// router sends requests to the endpoints a Service lists, which follow
	// the pods' readiness with a lag (planTraffic).
	Endpoints *EndpointsQuery
	// CreateRuns are AnalysisRuns to create.
	CreateRuns []*v1alpha1.AnalysisRun
	// TerminateRuns are unfinished AnalysisRuns no longer needed.
	TerminateRuns []string
	// DeleteRuns are finished AnalysisRuns beyond the history limits.
	DeleteRuns []string
	// CreateExperiments are Experiments to create; TerminateExperiments
	// unfinished ones no longer needed.
	CreateExperiments    []*v1alpha1.Experiment
	TerminateExperiments []string
	Status               v1alpha1.RolloutStatus
	Events               []Event
	// Notify are the transitions the plan makes, for notifications; the
	// Reconciler records those someone is subscribed to.
	Notify []v1alpha1.PendingNotification
	// RequeueAfter is when a timed pause or delay ends; 0 means no timer.
	RequeueAfter time.Duration
	// StatusWait is how long the status change may wait for the next write
	// that matters, which carries it (statusWait); zero: write it now.
	StatusWait Wait
}

// ScaleChange sets the replicas of a ReplicaSet.
type ScaleChange struct {
	Name     string
	From, To int32
	Reason   string
	// Version is the resourceVersion the plan saw.
	Version string
	// StepsDone, when set, sets the ReplicaSet's StepsDoneAnnotation to
	// it in the same patch, or removes the annotation when empty.
	StepsDone *string
}

// ServiceChange points a Service's selector at the pods of one hash.
type ServiceChange struct {
	Name, Hash string
	// Patch sets the hash selector key and the managed-by annotation and
	// nothing else, testing the values it replaces. A Service the Rollout
	// has not annotated as its own yet is claimed only at the version the
	// plan read, so two Rollouts cannot both take it.
	Patch []jsonpatch.Op
}

// EndpointsQuery names the Service whose EndpointSlices to read and the
// ReplicaSet whose pods to count among their ready endpoints.
type EndpointsQuery struct {
	Service, ReplicaSet string
}

// AnnotationChange sets one annotation of a ReplicaSet.
type AnnotationChange struct {
	Name, Key, Value string
}

// Event is a Kubernetes event about the Rollout; Reason is a condition reason.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// world is the planner's view of the ReplicaSets: the current template's, the
// stable one and the rest.
type world struct {
	ro          *v1alpha1.Rollout
	now         time.Time
	runs        map[string]*v1alpha1.AnalysisRun
	templates   map[string]*v1alpha1.AnalysisTemplateSpec
	experiments map[string]*v1alpha1.Experiment
	replicas    int32
	limits      limits
	// routed: traffic goes through routers, weights out of maxWeight.
	routed    bool
	maxWeight int32
	minPods   int32
	// dynamic: dynamicStableScale, the stable shrinks as traffic leaves it.
	dynamic bool
	// endpoints: Input.CanaryEndpoints.
	endpoints *int32
	// heldStatus: Input.HeldStatus.
	heldStatus *v1alpha1.RolloutStatus
	hash       string // current template
	all        []rsView
	current    *rsView // nil until created
	stable     *rsView // nil on first deploy
}

// pauseStart is when the pause step idx starts if it starts now: when this
// controller entered it, if it did and the status that says so waits
// (Input.HeldStatus), now otherwise.
func (w *world) pauseStart(idx int, now time.Time) time.Time {
	h := w.heldStatus
	if h == nil || h.CurrentPodHash != w.hash || int(ptr.Deref(h.CurrentStepIndex, 0)) != idx {
		return now
	}
	for _, pc := range h.PauseConditions {
		if pc.Reason == v1alpha1.PauseReasonCanaryPauseStep && pc.StartTime.Time.Before(now) {
			return pc.StartTime.Time
		}
	}
	return now
}

func (w *world) others() []*rsView {
	var out []*rsView
	for i := range w.all {
		rs := &w.all[i]
		if rs != w.current && rs != w.stable {
			out = append(out, rs)
		}
	}
	return out
}

// split returns the canary and stable sizes for a weight. Without traffic
// routing the replica counts are the traffic split (canarySplit). With it the
// canary needs ceil(weight × replicas / maxTrafficWeight) pods (at least
// minPodsPerReplicaSet when it takes traffic) and the stable stays at full
// size.
func (w *world) split(weight int32) (canary, stable int32) {
	if !w.routed {
		return canarySplit(w.replicas, weight, w.limits.surge)
	}
	if weight <= 0 || w.replicas == 0 {
		return 0, w.replicas
	}
	canary = int32((int64(weight)*int64(w.replicas) + int64(w.maxWeight) - 1) / int64(w.maxWeight))
	return min(max(canary, w.minPods), w.replicas), w.replicas
}

// endpointsRetry is how soon a weight held for endpoints is tried again:
// EndpointSlices are read when needed, not watched.
const endpointsRetry = time.Second

// canaryRoutable is how many canary pods a router may send requests to: the
// serving ones, and no more than the Service's EndpointSlices list ready
// once the plan has read them (Input.CanaryEndpoints).
func (w *world) canaryRoutable() int32 {
	n := w.current.serving()
	if w.endpoints != nil {
		n = min(n, *w.endpoints)
	}
	return n
}

// endpointsWanted says how many ready endpoints a weight waits for.
func (w *world) endpointsWanted(pods int32) string {
	return fmt.Sprintf("%d of %d pods of %s listed ready", ptr.Deref(w.endpoints, 0), pods, w.current.name)
}

// oldPods counts pods of ReplicaSets that are neither current nor stable.
func (w *world) oldPods() int32 {
	var n int32
	for _, rs := range w.others() {
		n += max(rs.spec, rs.current)
	}
	return n
}

// plan decides what to do with a Rollout. It is a pure function of its
// input: no client calls, no clock reads.
func plan(in Input) (Plan, error) {
	ro, msg := withWorkload(in.Rollout, in.Workload)
	in.Rollout = ro
	st := ro.Status.DeepCopy()
	var p Plan
	if msg == "" {
		msg = invalidSpec(in)
	}
	if msg == "" {
		msg = in.TrafficInvalid
	}
	if msg != "" {
		p.Events = append(p.Events, Event{Warning: true, Reason: v1alpha1.ReasonInvalidSpec, Message: msg})
		p.Events = append(p.Events, abortWhileInvalid(ro, st, in.Now, &p)...)
		p.Status = finishStatus(ro, *st, nil, outcome{phase: v1alpha1.RolloutPhaseDegraded, reason: v1alpha1.ReasonInvalidSpec, message: msg}, in.Now)
		p.Notify = transitions(&ro.Status, &p.Status, p.Events, false, in.Now)
		return p, nil
	}
	w, err := observeWorld(in, st)
	if err != nil {
		return Plan{}, err
	}

	if st.CurrentPodHash != w.hash {
		p.Events = append(p.Events, startUpdate(ro, st, w))
		if e, ok := withinRollbackWindow(ro, st, w); ok {
			st.PromoteFull = true
			p.Events = append(p.Events, e)
		}
	}
	if st.StableRS == "" {
		// First deploy: nothing to compare with, the first ReplicaSet is stable.
		st.StableRS = w.hash
		w.stable = w.current
	}
	req, events := handleRequests(ro, st, st.StableRS != w.hash, in.Now)
	p.Events = append(p.Events, events...)
	promoteRequest := req.promote

	var out outcome
	targets := map[string]int32{}
	switch {
	case ro.Spec.Strategy.Canary != nil:
		out, err = planCanary(ro, st, w, req, in.Now, targets)
	case ro.Spec.Strategy.BlueGreen != nil:
		out, err = planBlueGreen(ro, st, w, req, in.Now, targets)
	default:
		return Plan{}, fmt.Errorf("spec.strategy has neither canary nor blueGreen")
	}
	if err != nil {
		return Plan{}, err
	}
	if !ro.Spec.Paused {
		applyTargets(&p, ro, w, targets, out.dropNow, out.stepsDone)
		p.Services = serviceChanges(ro, in.Services, out.services)
		p.Annotate = append(append(out.annotate, revisionBump(w)...), clearDeadline(st, w)...)
		p.Relabel = planMetadata(ro, st, w, in.Pods, p.Create)
	}
	// An abort moves the traffic even under spec.paused: taking it off the
	// canary is always safe, and it goes first (DESIGN §14).
	if (!ro.Spec.Paused || st.Abort) && w.routed && st.Canary.Weights != nil {
		p.TrafficWeight = ptr.To(st.Canary.Weights.Canary.Weight)
		p.TrafficExtra = extraTraffic(ro.Status.Canary.Weights, st.Canary.Weights)
		// Not at a promotion, though: there the stable Service must select
		// the promoted pods before the canary's share falls back to it. A
		// template back to the stable revision promotes nothing: the old
		// canary's pods go, so its share goes first — whatever the status
		// says of it, as the write that recorded it may have been lost.
		backToStable := ro.Status.StableRS == w.hash && ro.Status.CurrentPodHash != w.hash
		p.TrafficFirst = st.Abort || backToStable || st.StableRS != w.hash && (lowers(ro.Status.Canary.Weights, st.Canary.Weights) ||
			repoints(p.Services, ro.Spec.Strategy.Canary.CanaryService))
		if st.StableRS != w.hash && !st.Abort {
			p.Routes = traffic.ActiveRoutes(ro.Spec.Strategy.Canary, int(ptr.Deref(st.CurrentStepIndex, 0)))
		}
		p.Endpoints = endpointsToCheck(ro, st, w, in.CanaryEndpoints != nil)
	}
	p.Annotate = append(p.Annotate, staleStepsMark(ro, w, &p, st)...)
	p.Adopt = orphans(w)
	p.Delete = historyToDelete(w.all, ptr.Deref(ro.Spec.RevisionHistoryLimit, 10), st.StableRS, w.hash)
	if !ro.Spec.Paused {
		planRestart(&p, ro, st, w, in.Pods, in.Now, &out)
	}
	countReplicas(st, w)
	trackProgress(ro, st, w, &out, in.Now)
	p.Events = append(p.Events, out.events...)
	p.RequeueAfter = out.requeueAfter
	p.CreateRuns = out.createRuns
	p.TerminateRuns = staleRuns(in.AnalysisRuns, out.keepRuns)
	p.DeleteRuns = runHistory(in.AnalysisRuns, out.keepRuns, ro.Spec.Analysis)
	p.CreateExperiments = out.createExperiments
	p.TerminateExperiments = staleExperiments(in.Experiments, out.keepRuns)
	p.Status = finishStatus(ro, *st, w, out, in.Now)
	p.StatusWait = statusWait(ro, &ro.Status, &p.Status, len(p.Events), p.RequeueAfter, stepsMarked(w, &p))
	p.WorkloadReplicas = workloadScale(ro, in.Workload, &p.Status)
	p.Finalize = needsFinalizer(ro, &p)
	p.Notify = transitions(&ro.Status, &p.Status, p.Events, promoteRequest, in.Now)
	return p, nil
}

// abortWhileInvalid handles the abort and retry requests of a Rollout whose
// spec is invalid, and sends an aborted update's traffic back to the stable
// on every router the spec names: the one write that needs no valid spec,
// since the stable keeps its full size under traffic routing (DESIGN §14).
// Nothing is scaled, and with dynamicStableScale, where the stable may be
// too small for all the traffic, the weights wait for a valid spec too.
func abortWhileInvalid(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, now time.Time, p *Plan) []Event {
	updating := st.StableRS != "" && st.CurrentPodHash != st.StableRS
	events := handleAbortRequests(ro, st, updating, now)
	c := ro.Spec.Strategy.Canary
	w := st.Canary.Weights
	if !st.Abort || c == nil || c.TrafficRouting == nil || c.DynamicStableScale || w == nil {
		return events
	}
	if w.Canary.Weight == 0 && len(w.Additional) == 0 && ptr.Deref(w.Verified, false) {
		return events // already back, and read back
	}
	back := &v1alpha1.TrafficWeights{
		Canary: v1alpha1.WeightDestination{PodTemplateHash: w.Canary.PodTemplateHash},
		Stable: v1alpha1.WeightDestination{Weight: max(c.TrafficRouting.MaxTrafficWeight, 1), PodTemplateHash: st.StableRS},
	}
	st.Canary.Weights = back
	p.TrafficWeight = ptr.To[int32](0)
	p.TrafficExtra = extraTraffic(ro.Status.Canary.Weights, back)
	p.TrafficFirst = true
	return events
}

// endpointsToCheck names the Service and ReplicaSet whose ready endpoints
// the plan must know before it gives the canary more traffic than the
// routers carry (known: it does already). Traffic taken away needs none.
func endpointsToCheck(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, known bool) *EndpointsQuery {
	if known || st.Abort || w.current == nil || w.current.planned {
		return nil
	}
	if st.Canary.Weights.Canary.Weight <= carried(ro.Status.Canary.Weights, w.hash) {
		return nil
	}
	c := ro.Spec.Strategy.Canary
	svc := c.CanaryService
	if svc == "" {
		// Subset-level routing: one Service selects every revision.
		svc = c.StableService
	}
	if svc == "" {
		return nil
	}
	return &EndpointsQuery{Service: svc, ReplicaSet: w.current.name}
}

// carried is the canary weight the routers carry for hash, as the status
// recorded it: 0 for another revision.
func carried(weights *v1alpha1.TrafficWeights, hash string) int32 {
	if weights == nil || weights.Canary.PodTemplateHash != hash {
		return 0
	}
	return weights.Canary.Weight
}

// repoints reports whether the plan points the named Service at other pods.
// During an update that is the canary Service moving to a newer revision,
// whose pods are not available yet: whatever weight the routers carry must
// be gone first. The status may not say they carry any (the write that
// recorded it may have failed), so this does not rest on lowers.
func repoints(changes []ServiceChange, name string) bool {
	return name != "" && slices.ContainsFunc(changes, func(sc ServiceChange) bool { return sc.Name == name })
}

// lowers reports whether the weights now give the canary, or an extra
// destination, less than the routers carry.
func lowers(before, now *v1alpha1.TrafficWeights) bool {
	if before == nil || now == nil {
		return false
	}
	if now.Canary.Weight < before.Canary.Weight {
		return true
	}
	for _, b := range before.Additional {
		i := slices.IndexFunc(now.Additional, func(d v1alpha1.WeightDestination) bool { return d.ServiceName == b.ServiceName })
		if i < 0 && b.Weight > 0 || i >= 0 && now.Additional[i].Weight < b.Weight {
			return true
		}
	}
	return false
}

// extraTraffic lists the experiment destinations the routers must carry
// now, and, at weight 0, those they carried before and must drop.
func extraTraffic(before, now *v1alpha1.TrafficWeights) []traffic.Destination {
	var out []traffic.Destination
	for _, d := range now.Additional {
		out = append(out, traffic.Destination{Service: d.ServiceName, Weight: d.Weight})
	}
	if before == nil {
		return out
	}
	for _, d := range before.Additional {
		if !slices.ContainsFunc(out, func(x traffic.Destination) bool { return x.Service == d.ServiceName }) {
			out = append(out, traffic.Destination{Service: d.ServiceName})
		}
	}
	return out
}

// withinRollbackWindow: going back to one of the last rollbackWindow.revisions
// revisions is fast — its steps and analysis are skipped.
func withinRollbackWindow(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world) (Event, bool) {
	rw := ro.Spec.RollbackWindow
	c := w.current
	if rw == nil || c.planned || w.hash == st.StableRS {
		return Event{}, false
	}
	if c.revision < maxRevision(w.all)-int64(rw.Revisions) {
		return Event{}, false
	}
	return Event{Reason: v1alpha1.ReasonRolloutPromoted, Message: fmt.Sprintf("Rolling back to revision %d (%s) within rollbackWindow: skipping steps", c.revision, c.name)}, true
}

// revisionBump makes the current ReplicaSet the newest revision when it was
// an older one (a rollback), so undo and history stay in order.
func revisionBump(w *world) []AnnotationChange {
	c := w.current
	if c.planned {
		return nil
	}
	var newest int64
	for _, rs := range w.all {
		if rs.name != c.name {
			newest = max(newest, rs.revision)
		}
	}
	if c.revision > newest {
		return nil
	}
	return []AnnotationChange{{Name: c.name, Key: v1alpha1.RevisionAnnotation, Value: strconv.FormatInt(newest+1, 10)}}
}

// clearDeadline removes a stale scale-down deadline from the current
// ReplicaSet (one that was kept after an earlier switch or abort and is now
// current again), unless the current update is the aborted one.
func clearDeadline(st *v1alpha1.RolloutStatus, w *world) []AnnotationChange {
	c := w.current
	if c.planned || c.scaleDownAt == nil || (st.Abort && st.StableRS != w.hash) {
		return nil
	}
	return []AnnotationChange{{Name: c.name, Key: v1alpha1.ScaleDownDeadlineAnnotation}}
}

// observeWorld classifies the ReplicaSets and resolves the limits.
func observeWorld(in Input, st *v1alpha1.RolloutStatus) (*world, error) {
	ro := in.Rollout
	replicas := ptr.Deref(ro.Spec.Replicas, 1)
	w := &world{ro: ro, now: in.Now, runs: in.AnalysisRuns, templates: in.Templates, experiments: in.Experiments, replicas: replicas, endpoints: in.CanaryEndpoints, heldStatus: in.HeldStatus}
	var err error
	if c := ro.Spec.Strategy.Canary; c != nil {
		w.limits, err = resolveLimits(replicas, c.MaxSurge, c.MaxUnavailable)
		if tr := c.TrafficRouting; tr != nil {
			w.routed, w.maxWeight = true, max(tr.MaxTrafficWeight, 1)
			w.minPods = ptr.Deref(c.MinPodsPerReplicaSet, 1)
			w.dynamic = c.DynamicStableScale
			// The stable stays at full size and the canary comes on top of
			// it: maxSurge cannot bound the total.
			w.limits.surge = max(w.limits.surge, replicas)
		}
	} else {
		w.limits = limits{surge: replicas, unavailable: 0}
	}
	if err != nil {
		return nil, err
	}
	w.hash, err = templateHash(ro.Spec.Template, st.CollisionCount)
	if err != nil {
		return nil, err
	}
	for _, rs := range in.ReplicaSets {
		w.all = append(w.all, viewOf(rs, ro))
	}
	sort.Slice(w.all, func(i, j int) bool { return w.all[i].name < w.all[j].name })
	exists := false
	for _, rs := range w.all {
		exists = exists || rs.hash == w.hash
	}
	if !exists {
		// A template put back from a ReplicaSet (undo) carries the API
		// server's defaults, so its hash is not the ReplicaSet's.
		if h, ok := revisionOf(w.all, ro.Spec.Template); ok {
			w.hash, exists = h, true
		}
	}
	if !exists {
		// Planned: created by the applier with the replicas the plan gives it.
		w.all = append(w.all, rsView{name: replicaSetName(ro.Name, w.hash), hash: w.hash, revision: maxRevision(w.all) + 1, planned: true})
	}
	// Pointers into w.all are taken only once it no longer grows.
	for i := range w.all {
		switch w.all[i].hash {
		case w.hash:
			w.current = &w.all[i]
		case st.StableRS:
			w.stable = &w.all[i]
		}
	}
	if w.hash == st.StableRS {
		w.stable = w.current
	}
	return w, nil
}

// startUpdate resets the step state for a new template and reports it.
func startUpdate(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world) Event {
	st.CurrentPodHash = w.hash
	st.CurrentStepIndex = nil
	if ro.Spec.Strategy.Canary != nil {
		st.CurrentStepIndex = ptr.To[int32](0)
	}
	st.PauseConditions = nil
	st.Abort = false
	st.AbortedAt = nil
	st.PromoteFull = false
	st.BlueGreen.ScaleUpPreviewCheckPoint = false
	clearRuns(st)
	if st.StableRS == "" {
		return Event{Reason: v1alpha1.ReasonNewReplicaSetCreated, Message: fmt.Sprintf("First revision %s: scaling to %d replicas", w.current.name, w.replicas)}
	}
	if w.hash == st.StableRS {
		return Event{Reason: v1alpha1.ReasonRolloutCompleted, Message: fmt.Sprintf("Template is back to the stable revision %s: skipping steps", w.current.name)}
	}
	return Event{Reason: v1alpha1.ReasonNewReplicaSetCreated, Message: fmt.Sprintf("Update to revision %s started", w.current.name)}
}

// applyTargets turns target sizes into scale changes within the limits, and
// the creation of the current ReplicaSet when it doesn't exist yet. A
// scale-down removes the steps-done mark; stepsDone, when set, is the mark
// the current ReplicaSet's scale-up sets (canarySteps).
func applyTargets(p *Plan, ro *v1alpha1.Rollout, w *world, targets map[string]int32, dropNow, stepsDone string) {
	// Scale-ups favour the current ReplicaSet, then the stable; scale-downs
	// hit leftovers first, then the stable, then the current.
	order := []*rsView{w.current}
	if w.stable != nil && w.stable != w.current {
		order = append(order, w.stable)
	}
	order = append(order, w.others()...)
	sts := make([]scaleTarget, len(order))
	for i, rs := range order {
		sts[i] = scaleTarget{spec: rs.spec, available: rs.available, target: targets[rs.hash], stale: rs.stale}
		if rs.hash == dropNow && sts[i].target < rs.spec {
			// As if already down: the others scale as though it were.
			sts[i].spec, sts[i].available = sts[i].target, min(rs.available, sts[i].target)
		}
	}
	next := rollingStep(w.replicas, w.limits, sts)
	for i, rs := range order {
		switch {
		case rs.planned:
			p.Create = newReplicaSet(ro, w.hash, stableHash(w), next[i], rs.revision)
		case next[i] != rs.spec:
			sc := ScaleChange{Name: rs.name, From: rs.spec, To: next[i], Reason: scaleReason(w, rs, next[i]), Version: rs.version}
			switch {
			case next[i] < rs.spec && rs.stepsDone != "":
				sc.StepsDone = ptr.To("")
			case next[i] > rs.spec && rs == w.current && stepsDone != "" && rs.annotated:
				sc.StepsDone = ptr.To(stepsDone)
			}
			p.Scale = append(p.Scale, sc)
		}
		// The status describes the world as this plan leaves it.
		rs.spec = next[i]
	}
}

// stepsMarked reports whether the current ReplicaSet, once the plan is
// carried out, records that the canary steps of the plan's status are all
// done (StepsDoneAnnotation).
func stepsMarked(w *world, p *Plan) bool {
	mark, _ := markAfter(w, p)
	return mark != "" && mark == p.Status.CurrentStepHash
}

// markAfter is the steps-done mark of the current ReplicaSet once the plan
// is carried out, and whether a scale in the plan sets or removes it.
func markAfter(w *world, p *Plan) (mark string, scaled bool) {
	if w.current == nil {
		return "", false
	}
	for _, sc := range p.Scale {
		if sc.Name == w.current.name && sc.StepsDone != nil {
			return *sc.StepsDone, true
		}
	}
	return w.current.stepsDone, false
}

// staleStepsMark removes the steps-done mark of the current ReplicaSet once
// it is no longer true of the status st the plan leaves: an abort, a retry,
// steps changed. A scale-down of the ReplicaSet in the plan removes it
// already (applyTargets). Under spec.paused too: a stale mark would skip
// steps once the Rollout is resumed.
func staleStepsMark(ro *v1alpha1.Rollout, w *world, p *Plan, st *v1alpha1.RolloutStatus) []AnnotationChange {
	mark, scaled := markAfter(w, p)
	if mark == "" || scaled {
		return nil
	}
	if c := ro.Spec.Strategy.Canary; c != nil && !st.Abort && st.CurrentStepHash == mark && int(ptr.Deref(st.CurrentStepIndex, 0)) >= len(c.Steps) {
		return nil
	}
	return []AnnotationChange{{Name: w.current.name, Key: v1alpha1.StepsDoneAnnotation}}
}

func stableHash(w *world) string {
	if w.stable == nil {
		return ""
	}
	return w.stable.hash
}

func scaleReason(w *world, rs *rsView, to int32) string {
	dir := "up"
	if to < rs.spec {
		dir = "down"
	}
	switch rs {
	case w.current:
		return "current revision " + dir
	case w.stable:
		return "stable revision " + dir
	}
	return "old revision " + dir
}

// orphans are the ReplicaSets to adopt.
func orphans(w *world) []string {
	var names []string
	for _, rs := range w.all {
		if rs.orphan && !rs.planned {
			names = append(names, rs.name)
		}
	}
	return names
}
