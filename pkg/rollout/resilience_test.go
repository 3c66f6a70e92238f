package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// pausedAtHalf is a routed Rollout paused at 50 % of its update.
func pausedAtHalf(t *testing.T) *sim {
	s := newSim(t, routedRollout(4, setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	if s.weight != 50 {
		t.Fatalf("traffic %d at the pause, want 50", s.weight)
	}
	return s
}

// TestAbortOfInvalidRolloutSendsTrafficToStable: the canary Service is
// deleted mid-update, so the spec is invalid; an abort request still sends
// every router to weight 0, first, and nothing else is written.
func TestAbortOfInvalidRolloutSendsTrafficToStable(t *testing.T) {
	s := pausedAtHalf(t)
	name := s.ro.Spec.Strategy.Canary.CanaryService
	svc := s.services[name]
	delete(s.services, name)
	if p := s.tick(); p.TrafficWeight != nil {
		t.Fatalf("an invalid Rollout without abort moves traffic to %d", *p.TrafficWeight)
	}
	before := s.sizes()
	s.request(v1alpha1.AbortAnnotation, "a")
	p := s.tick()
	if p.TrafficWeight == nil || *p.TrafficWeight != 0 || !p.TrafficFirst {
		t.Fatalf("abort of an invalid Rollout: traffic %v, first %v; want 0, first", p.TrafficWeight, p.TrafficFirst)
	}
	if p.Create != nil || len(p.Scale) > 0 || len(p.Services) > 0 || len(p.Delete) > 0 {
		t.Errorf("abort of an invalid Rollout writes more than the routers: %+v", p)
	}
	if !p.Status.Abort || p.Status.LastHandled.Abort != "a" {
		t.Errorf("status abort %v, last handled %q; want the request recorded", p.Status.Abort, p.Status.LastHandled.Abort)
	}
	if w := p.Status.Canary.Weights; w == nil || w.Canary.Weight != 0 || w.Stable.Weight != 100 {
		t.Errorf("status weights %+v, want all on the stable", w)
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled); c == nil || c.Reason != v1alpha1.ReasonInvalidSpec {
		t.Errorf("Stalled %+v, want InvalidSpec", c)
	}
	if !slices.ContainsFunc(p.Events, func(e Event) bool { return e.Reason == v1alpha1.ReasonRolloutAborted }) {
		t.Errorf("events %+v, want RolloutAborted", p.Events)
	}
	if diff := s.sizes(); !equalSizes(diff, before) {
		t.Errorf("sizes %v after the abort, want %v unchanged", diff, before)
	}
	// Once the spec is valid again the abort goes on as usual.
	s.services[name] = svc
	s.until("canary scaled down", 20, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:2"] == 0 })
}

func equalSizes(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAbortOfInvalidRolloutWithoutRouting records the abort; there is no
// router to move and no replica count to trust.
func TestAbortOfInvalidRolloutWithoutRouting(t *testing.T) {
	s := newSim(t, canaryRollout(4, "1", "0", setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedPhase)
	delete(s.services, s.ro.Spec.Strategy.Canary.CanaryService)
	s.request(v1alpha1.AbortAnnotation, "a")
	p := s.tick()
	if p.TrafficWeight != nil || len(p.Scale) > 0 || !p.Status.Abort {
		t.Errorf("traffic %v, scale %+v, abort %v; want only the abort recorded", p.TrafficWeight, p.Scale, p.Status.Abort)
	}
}

// TestAbortPlansTrafficFirst: an abort by request, also under spec.paused,
// plans weight 0 to be written before the rest.
func TestAbortPlansTrafficFirst(t *testing.T) {
	for _, paused := range []bool{false, true} {
		s := pausedAtHalf(t)
		s.ro.Spec.Paused = paused
		s.request(v1alpha1.AbortAnnotation, "a")
		p := s.tick()
		if p.TrafficWeight == nil || *p.TrafficWeight != 0 || !p.TrafficFirst {
			t.Errorf("spec.paused %v: traffic %v, first %v; want 0, first", paused, p.TrafficWeight, p.TrafficFirst)
		}
	}
	s := pausedAtHalf(t)
	s.request(v1alpha1.PromoteAnnotation, "p")
	if p := s.tick(); p.TrafficFirst {
		t.Errorf("a promotion plans traffic first: %+v", p)
	}
}

// router is a traffic router that records its calls in a shared log and
// fails SetWeight with err.
type router struct {
	name string
	log  *[]string
	err  error
	// behind: the router reads back other weights than it was given (its
	// cache was behind, so it wrote nothing).
	behind bool
}

func (r *router) Name() string                                      { return r.name }
func (r *router) Validate(context.Context, *v1alpha1.Rollout) error { return nil }
func (r *router) SetWeight(_ context.Context, _ *v1alpha1.Rollout, w traffic.Weights) error {
	*r.log = append(*r.log, fmt.Sprintf("%s weight %d", r.name, w.Canary))
	return r.err
}

func (r *router) Verify(context.Context, *v1alpha1.Rollout, traffic.Weights) (bool, error) {
	return r.err == nil && !r.behind, nil
}

func (r *router) SetManagedRoutes(context.Context, *v1alpha1.Rollout, []traffic.ManagedRoute) error {
	return nil
}

func (r *router) Release(context.Context, *v1alpha1.Rollout, []traffic.Destination) error {
	return nil
}

// applier is a Reconciler over a fake client whose writes are logged in
// order with the routers' (narrow: the order and the error handling of the
// applier, not the API).
func applier(t *testing.T, ro *v1alpha1.Rollout, routerErrs map[string]error, objs ...client.Object) (*Reconciler, *[]string, *events.FakeRecorder) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var log []string
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(append(objs, ro)...).WithStatusSubresource(ro).
		WithInterceptorFuncs(interceptor.Funcs{
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				log = append(log, fmt.Sprintf("patch %T %s", obj, obj.GetName()))
				return c.Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	reg := traffic.Registry{}
	for name, err := range routerErrs {
		reg[name] = func(client.Client, client.Reader) traffic.Router { return &router{name: name, log: &log, err: err} }
	}
	rec := events.NewFakeRecorder(20)
	return &Reconciler{Client: c, APIReader: c, Recorder: rec, Routers: reg, Clock: clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))}, &log, rec
}

// abortPlan is the plan of a routed Rollout that aborts (two routers),
// with the canary ReplicaSet's scale-down in it, as when
// abortScaleDownDelaySeconds has passed.
func abortPlan(t *testing.T) (*v1alpha1.Rollout, Plan, []client.Object) {
	s := pausedAtHalf(t)
	s.ro.Spec.Strategy.Canary.TrafficRouting.Istio = &v1alpha1.IstioTrafficRouting{}
	s.request(v1alpha1.AbortAnnotation, "a")
	p, err := plan(s.input())
	if err != nil {
		t.Fatal(err)
	}
	if !p.TrafficFirst {
		t.Fatalf("abort plan: traffic first %v", p.TrafficFirst)
	}
	var canary *appsv1.ReplicaSet
	for _, rs := range s.rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == s.ro.Status.CurrentPodHash {
			canary = rs.DeepCopy()
		}
	}
	p.Scale = []ScaleChange{{Name: canary.Name, From: *canary.Spec.Replicas, To: 0}}
	ro := s.ro.DeepCopy()
	ro.ResourceVersion = ""
	canary.ResourceVersion = ""
	objs := []client.Object{canary}
	for _, svc := range s.services {
		svc = svc.DeepCopy()
		svc.ResourceVersion = ""
		objs = append(objs, svc)
	}
	return ro, p, objs
}

// TestApplyAbortRoutesFirstEachOnItsOwn: the routers are set before the
// canary is scaled down; a router that fails does not keep the other from
// going to 0, and then nothing is scaled.
func TestApplyAbortRoutesFirstEachOnItsOwn(t *testing.T) {
	ro, p, objs := abortPlan(t)
	r, log, _ := applier(t, ro, map[string]error{"gatewayAPI": nil, "istio": nil}, objs...)
	if err := r.applyObjects(context.Background(), ro, &p); err != nil {
		t.Fatal(err)
	}
	scaled := slices.IndexFunc(*log, func(l string) bool { return strings.HasPrefix(l, "patch *v1.ReplicaSet") })
	if scaled < 2 || !slices.Contains((*log)[:scaled], "istio weight 0") || !slices.Contains((*log)[:scaled], "gatewayAPI weight 0") {
		t.Errorf("writes %q: want both routers at 0 before the ReplicaSet is scaled", *log)
	}

	ro, p, objs = abortPlan(t)
	unavailable := apierrors.NewServiceUnavailable("etcd is busy")
	r, log, _ = applier(t, ro, map[string]error{"gatewayAPI": unavailable, "istio": nil}, objs...)
	err := r.applyObjects(context.Background(), ro, &p)
	if !errors.Is(err, unavailable) || classify(err) != transient {
		t.Errorf("error %v (%v), want the router's 503, transient", err, classify(err))
	}
	if !slices.Contains(*log, "istio weight 0") {
		t.Errorf("writes %q: the healthy router was not set to 0", *log)
	}
	if slices.ContainsFunc(*log, func(l string) bool { return strings.HasPrefix(l, "patch *v1.ReplicaSet") }) {
		t.Errorf("writes %q: the canary was scaled while a router still sends it traffic", *log)
	}
}

// TestApplyFailureConditions: a forbidden write is Stalled at once with
// the API's message and a Warning event; a transient one shows in
// Reconciling only once it lasts, and a success clears both.
func TestApplyFailureConditions(t *testing.T) {
	ro, p, objs := abortPlan(t)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "gateway.networking.k8s.io", Resource: "httproutes"}, "web", errors.New("RBAC says no"))
	r, _, rec := applier(t, ro, map[string]error{"gatewayAPI": forbidden, "istio": nil}, objs...)
	ctx := context.Background()
	res, err := r.apply(ctx, ro, p)
	if err != nil || res.RequeueAfter != permanentRetry {
		t.Errorf("forbidden: result %+v, %v; want a slow retry and no error", res, err)
	}
	var got v1alpha1.Rollout
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonReconcileError || !strings.Contains(c.Message, "RBAC says no") {
		t.Errorf("Stalled %+v, want True ReconcileError with the API's message", c)
	}
	if got.Status.Phase != v1alpha1.RolloutPhaseDegraded || got.Status.ObservedGeneration != ro.Generation {
		t.Errorf("phase %s, observed generation %d; want Degraded at %d", got.Status.Phase, got.Status.ObservedGeneration, ro.Generation)
	}
	if got.Status.Abort {
		t.Error("the plan's status was written though the plan was not carried out")
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning ReconcileError") || !strings.Contains(e, "RBAC says no") {
		t.Errorf("event %q, want a ReconcileError warning with the API's message", e)
	}

	ro, p, objs = abortPlan(t)
	unavailable := apierrors.NewServiceUnavailable("etcd is busy")
	r, _, _ = applier(t, ro, map[string]error{"gatewayAPI": unavailable, "istio": nil}, objs...)
	for i := 1; i <= transientReported; i++ {
		if _, err := r.apply(ctx, ro, p); !errors.Is(err, unavailable) {
			t.Fatalf("transient failure %d returned %v, want the error for backoff", i, err)
		}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReconciling)
		reported := c != nil && c.Reason == v1alpha1.ReasonReconcileError
		if reported != (i >= transientReported) {
			t.Errorf("after %d transient failures Reconciling is %+v", i, c)
		}
		if s := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionStalled); s != nil && s.Reason == v1alpha1.ReasonReconcileError {
			t.Errorf("a transient failure made the Rollout Stalled: %+v", s)
		}
		ro = got.DeepCopy()
	}
}

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	rows := []struct {
		err  error
		want ending
	}{
		{nil, applied},
		{errRequeue, stale},
		{fmt.Errorf("router x: %w", errRequeue), stale},
		{errBlocked, blocked},
		{apierrors.NewForbidden(gr, "web", errors.New("no")), permanent},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", nil), permanent},
		{apierrors.NewBadRequest(`admission webhook "deny.example.com" denied the request`), permanent},
		{traffic.Invalid("no route"), permanent},
		{apierrors.NewInternalError(errors.New("boom")), transient},
		{apierrors.NewServiceUnavailable("later"), transient},
		{apierrors.NewTooManyRequests("slow down", 1), transient},
		{apierrors.NewNotFound(gr, "web"), transient},
		{context.DeadlineExceeded, transient},
		{errors.Join(errRequeue, apierrors.NewInternalError(errors.New("boom"))), transient},
		{errors.Join(apierrors.NewInternalError(errors.New("boom")), apierrors.NewForbidden(gr, "web", errors.New("no"))), permanent},
	}
	for _, r := range rows {
		if got := classify(r.err); got != r.want {
			t.Errorf("classify(%v) = %d, want %d", r.err, got, r.want)
		}
	}
}

// TestSupersedeTakesTrafficFirst: a new template mid-canary (found by the
// soak) moves the canary Service to the new revision, whose pods do not
// exist yet: the routers must drop the old canary's share before that
// switch; so must a template back to the stable revision, before the old
// canary's pods go. A promotion's handover is the other way round: the stable
// Service selects the promoted pods first, then the canary's share goes.
func TestSupersedeTakesTrafficFirst(t *testing.T) {
	s := pausedAtHalf(t)
	s.setImage("web:3")
	p := s.tick()
	switched := slices.ContainsFunc(p.Services, func(sc ServiceChange) bool { return sc.Name == s.ro.Spec.Strategy.Canary.CanaryService })
	if !switched || p.TrafficWeight == nil || *p.TrafficWeight != 0 || !p.TrafficFirst {
		t.Errorf("supersede: canary Service switched %v, traffic %v, first %v; want the switch with traffic 0 written first", switched, p.TrafficWeight, p.TrafficFirst)
	}

	// The status may not know the weight the routers carry (found by the
	// soak: the status write that recorded it failed): the switch alone
	// puts traffic first.
	s = pausedAtHalf(t)
	s.ro.Status.Canary.Weights.Canary.Weight = 0
	s.setImage("web:3")
	if p := s.tick(); !p.TrafficFirst {
		t.Errorf("supersede with a status that records no canary weight: traffic first %v, want first", p.TrafficFirst)
	}

	// The template back to the stable revision mid-canary (found by the
	// soak, seed 808, with a status that did not record the weight the
	// routers carried): the old canary's pods go, so its share goes first.
	for _, recorded := range []bool{true, false} {
		s = pausedAtHalf(t)
		if !recorded {
			s.ro.Status.Canary.Weights.Canary.Weight = 0
		}
		s.setImage("web:1")
		p := s.tick()
		if p.TrafficWeight == nil || *p.TrafficWeight != 0 || !p.TrafficFirst {
			t.Errorf("back to stable (weight recorded %v): traffic %v, first %v; want 0, written first", recorded, p.TrafficWeight, p.TrafficFirst)
		}
	}

	s = pausedAtHalf(t)
	s.request(v1alpha1.PromoteAnnotation, "p")
	for range 20 {
		p := s.tick()
		stable := slices.ContainsFunc(p.Services, func(sc ServiceChange) bool { return sc.Name == s.ro.Spec.Strategy.Canary.StableService })
		if stable {
			if p.TrafficFirst {
				t.Errorf("promotion handover writes traffic before the stable Service: %+v", p)
			}
			return
		}
	}
	t.Fatal("no promotion switched the stable Service")
}

// TestStaleReplicaSetStatusServesNothing: a ReplicaSet whose status is
// older than its spec (scaled 1 → 0 → 1 within the ReplicaSet controller's
// lag, found by the soak) has no pod that may take traffic or finish a step,
// whatever the old status says; its scale arithmetic keeps the status, or
// its pods would count as unavailable and be removed for free (also found
// by the soak, when this test's first version zeroed both).
func TestStaleReplicaSetStatusServesNothing(t *testing.T) {
	ro := canaryRollout(1, "1", "0")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-a", Generation: 3}, Spec: appsv1.ReplicaSetSpec{Replicas: ptrInt32(1)},
		Status: appsv1.ReplicaSetStatus{ObservedGeneration: 2, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}}
	if v := viewOf(rs, ro); v.serving() != 0 || v.available != 1 {
		t.Errorf("stale status: %d serving, %d available; want 0 serving, the status's 1 for scale arithmetic", v.serving(), v.available)
	}
	rs.Status.ObservedGeneration = 3
	if v := viewOf(rs, ro); v.serving() != 1 {
		t.Errorf("current status: %d serving, want 1", v.serving())
	}
	// Scaled down, and the ReplicaSet controller has not removed the pod
	// yet (found by the soak: a weight was given for a pod about to go).
	rs.Spec.Replicas = ptrInt32(0)
	if v := viewOf(rs, ro); v.serving() != 0 || v.available != 1 {
		t.Errorf("a pod above spec.replicas: %d serving, %d available; want 0 serving, 1 available for scale arithmetic", v.serving(), v.available)
	}
}

// TestApplyTrafficFirstWaitsForTheWeight: a router whose route does not
// read back the weight taken away (found by the soak: a route cached from
// before a watch was dropped looked right, so nothing was written) stops the
// plan before the Services and the scale-down.
func TestApplyTrafficFirstWaitsForTheWeight(t *testing.T) {
	ro, p, objs := abortPlan(t)
	r, log, _ := applier(t, ro, map[string]error{"gatewayAPI": nil, "istio": nil}, objs...)
	r.Routers["istio"] = func(client.Client, client.Reader) traffic.Router {
		return &router{name: "istio", log: log, behind: true}
	}
	err := r.applyObjects(context.Background(), ro, &p)
	if classify(err) != stale {
		t.Errorf("error %v, want a requeue while a router does not carry the weight", err)
	}
	if slices.ContainsFunc(*log, func(l string) bool { return strings.HasPrefix(l, "patch ") }) {
		t.Errorf("writes %q after a router that does not carry the weight", *log)
	}
}

// TestObserveReadsAroundAnOverdueCache: a ReplicaSet whose cached copy
// predates our own scale is waited for, and read from the API server once
// that has lasted cacheLag (found by the soak: after a dropped watch the
// ReplicaSet informer backed off for up to a minute, and an abort waited
// behind it).
func TestObserveReadsAroundAnOverdueCache(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(3, "1", "0")
	cached := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: "web-a", Labels: map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "rollouts.kubeseed.io/v1alpha1", Kind: "Rollout", Name: ro.Name, UID: ro.UID, Controller: new(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptrInt32(3)},
	}
	build := func(rs *appsv1.ReplicaSet) client.Client {
		return fake.NewClientBuilder().WithScheme(scheme).WithObjects(rs).
			WithIndex(&appsv1.ReplicaSet{}, controllerIndex, controllerOf).
			WithIndex(&v1alpha1.AnalysisRun{}, controllerIndex, controllerOf).
			WithIndex(&v1alpha1.Experiment{}, controllerIndex, controllerOf).Build()
	}
	cache := build(cached)
	live := cached.DeepCopy()
	live.Spec.Replicas = ptrInt32(1)
	api := build(live)
	if err := api.Update(context.Background(), live); err != nil { // one version past the cache's
		t.Fatal(err)
	}
	if err := cache.Get(context.Background(), client.ObjectKeyFromObject(cached), cached); err != nil {
		t.Fatal(err)
	}

	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	r := &Reconciler{Client: cache, APIReader: api, Clock: clk}
	r.scaled.wrote(client.ObjectKeyFromObject(live), live.ResourceVersion, clk.Now())
	if _, err := r.observe(context.Background(), ro); !errors.Is(err, errRequeue) {
		t.Fatalf("cache behind our scale for no time: %v, want errRequeue", err)
	}
	clk.SetTime(clk.Now().Add(cacheLag + time.Millisecond))
	in, err := r.observe(context.Background(), ro)
	if err != nil {
		t.Fatalf("cache behind our scale for longer than %s: %v", cacheLag, err)
	}
	if len(in.ReplicaSets) != 1 || *in.ReplicaSets[0].Spec.Replicas != 1 {
		t.Errorf("observed %d ReplicaSets, want the API server's copy at 1 replica", len(in.ReplicaSets))
	}

	// Deleted since: the cache's copy is left out.
	if err := api.Delete(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	rv, _ := strconv.Atoi(cached.ResourceVersion)
	r.scaled.wrote(client.ObjectKeyFromObject(live), strconv.Itoa(rv+1), clk.Now().Add(-2*cacheLag))
	if in, err := r.observe(context.Background(), ro); err != nil || len(in.ReplicaSets) != 0 {
		t.Errorf("a ReplicaSet gone from the API server: %d observed, %v; want none", len(in.ReplicaSets), err)
	}
}

// TestTrafficOutcome: what the routers' answers mean for a plan.
func TestTrafficOutcome(t *testing.T) {
	gone := apierrors.NewNotFound(schema.GroupResource{Group: "gateway.networking.k8s.io", Resource: "httproutes"}, "web")
	boom := errors.New("boom")
	rows := []struct {
		name         string
		first        bool
		results      []routed
		wantVerified bool
		wantErr      error
	}{
		{"all carry it", false, []routed{{"a", true, nil}, {"b", true, nil}}, true, nil},
		{"one not read back yet, giving traffic", false, []routed{{"a", true, nil}, {"b", false, nil}}, false, nil},
		{"one not read back yet, taking it away", true, []routed{{"a", true, nil}, {"b", false, nil}}, false, errRequeue},
		{"a route gone while taking traffic away", true, []routed{{"a", false, gone}, {"b", true, nil}}, true, nil},
		{"a route gone while giving traffic", false, []routed{{"a", false, gone}}, false, gone},
		{"one fails, the other answered", true, []routed{{"a", false, boom}, {"b", true, nil}}, false, boom},
		{"no routers", true, nil, true, nil},
	}
	for _, r := range rows {
		verified, err := trafficOutcome(r.first, r.results)
		if verified != r.wantVerified || !errors.Is(err, r.wantErr) || (err == nil) != (r.wantErr == nil) {
			t.Errorf("%s: verified %v, error %v; want %v, %v", r.name, verified, err, r.wantVerified, r.wantErr)
		}
	}
}

// TestUnsureWriteReadsLive: a scale whose answer was lost (found by the
// soak: a cut connection after the API server had applied the stable's
// scale-down) makes the next reconcile read that ReplicaSet from the API
// server at once, and until the cache shows that version.
func TestUnsureWriteReadsLive(t *testing.T) {
	var g staleGuard
	key := types.NamespacedName{Namespace: "default", Name: "web-a"}
	now := time.Unix(1e9, 0)
	g.unsure(key, now)
	if behind, overdue := g.behind(key, "100", now); !behind || !overdue {
		t.Fatalf("after an unsure write: behind %v, overdue %v; want both (read live now)", behind, overdue)
	}
	g.readLive(key, "120") // the API server's copy, with the write
	if behind, overdue := g.behind(key, "110", now); !behind || !overdue {
		t.Errorf("cache at 110 after reading 120 live: behind %v, overdue %v; want both", behind, overdue)
	}
	if behind, _ := g.behind(key, "120", now); behind {
		t.Error("cache at the version read live: still behind")
	}
	// readLive changes only what unsure left: a known write stays.
	g.wrote(key, "130", now)
	g.readLive(key, "200")
	if behind, _ := g.behind(key, "150", now); behind {
		t.Error("readLive replaced a known write's version")
	}
}

func TestMayHaveApplied(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "replicasets"}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("scaling: %w", errors.New("unexpected EOF")), true},
		{apierrors.NewServiceUnavailable("injected"), true},
		{apierrors.NewInternalError(errors.New("etcd")), true},
		{apierrors.NewTimeoutError("slow", 1), true},
		{apierrors.NewConflict(gr, "web-a", errors.New("test failed")), false},
		{apierrors.NewForbidden(gr, "web-a", errors.New("no")), false},
		{apierrors.NewNotFound(gr, "web-a"), false},
		{apierrors.NewTooManyRequests("later", 1), false},
	} {
		if got := mayHaveApplied(c.err); got != c.want {
			t.Errorf("mayHaveApplied(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestScaleWithLostAnswerIsUnsure: the API server applies the scale, the
// answer never arrives; the ReplicaSet is to be read live next time.
func TestScaleWithLostAnswerIsUnsure(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-a"}, Spec: appsv1.ReplicaSetSpec{Replicas: ptrInt32(3)}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(rs).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := c.Patch(ctx, obj, patch, opts...); err != nil {
				return err
			}
			return errors.New("unexpected EOF")
		},
	}).Build()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	r := &Reconciler{Client: c, APIReader: c, Clock: clk}
	err := r.scale(t.Context(), "default", ScaleChange{Name: "web-a", From: 3, To: 2})
	if err == nil || classify(err) != transient {
		t.Fatalf("scale with a lost answer: %v (%v), want a transient error", err, classify(err))
	}
	if behind, overdue := r.scaled.behind(client.ObjectKeyFromObject(rs), rs.ResourceVersion, clk.Now()); !behind || !overdue {
		t.Errorf("after a lost answer: behind %v, overdue %v; want the ReplicaSet read live", behind, overdue)
	}

	// A scale from the cache's old size is refused: read live next time.
	r.scaled.forget(client.ObjectKeyFromObject(rs))
	r.Client = fake.NewClientBuilder().WithScheme(scheme).WithObjects(rs).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
			return apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-a", errors.New("the patch's tests no longer hold"))
		},
	}).Build()
	if err := r.scale(t.Context(), "default", ScaleChange{Name: "web-a", From: 4, To: 2}); !errors.Is(err, errRequeue) {
		t.Fatalf("scale from a size the ReplicaSet no longer has: %v, want errRequeue", err)
	}
	if behind, overdue := r.scaled.behind(client.ObjectKeyFromObject(rs), rs.ResourceVersion, clk.Now()); !behind || !overdue {
		t.Errorf("after a refused scale: behind %v, overdue %v; want the ReplicaSet read live", behind, overdue)
	}
}
