//go:build soak

package soak

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// The invariants, checked continuously. Each says where DESIGN.md makes the
// promise and, in the code, which moments are exempt and why.
const (
	invSurge        = "surge"
	invAvailability = "availability"
	invWeight       = "canary-weight"
	invPromotion    = "promotion-after-bad-analysis"
	invReplicaSets  = "replicasets-with-pods"
)

var invariantOrder = []string{invSurge, invAvailability, invWeight, invPromotion, invReplicaSets}

// retireGrace is how long a ReplicaSet may keep pods after it lost its
// role (stable or current revision) or after its scale-down deadline: the
// controller may be dead (a kill, up to 15 s for the leader Lease, start-up
// on a loaded machine) or see its writes fail for a while.
const retireGrace = 2 * time.Minute

// violation is one breach of an invariant, with what the watcher saw.
type violation struct {
	at        time.Time
	rv        uint64
	rollout   types.NamespacedName
	invariant string
	message   string
	observed  string
}

// rolloutState is what the checks of one Rollout remember between events.
type rolloutState struct {
	m *member
	// exempt: the availability floor is not enforced — before the first
	// deploy is available, and, for the canary without routing, from an
	// abort until the stable is back (see checkAvailability).
	exempt bool
	// aborts are the resourceVersions at which the Rollout was seen
	// aborted, with the revision aborted; promotes those at which a new
	// promote or promote-full request token appeared.
	aborts   []mark
	promotes []uint64
	// roles: when each revision (hash) was last seen stable or current;
	// firstSeen: when its ReplicaSet first appeared.
	roles, firstSeen map[string]time.Time
	// waiting: when the stable or current ReplicaSet was last seen with
	// pods asked for and not yet available.
	waiting time.Time
}

type mark struct {
	rv   uint64
	hash string
}

func newRolloutState(m *member) *rolloutState {
	return &rolloutState{m: m, exempt: true, roles: map[string]time.Time{}, firstSeen: map[string]time.Time{}}
}

// observe records what the promotion and ReplicaSet checks need of a new
// version of the Rollout.
func (st *rolloutState) observe(rv uint64, prev client.Object, ro *v1alpha1.Rollout, at time.Time) {
	if ro.Status.Abort {
		st.aborts = append(st.aborts, mark{rv: rv, hash: ro.Status.CurrentPodHash})
	}
	var before map[string]string
	if p, ok := prev.(*v1alpha1.Rollout); ok && p != nil {
		before = p.Annotations
	}
	for _, a := range []string{v1alpha1.PromoteAnnotation, v1alpha1.PromoteFullAnnotation} {
		if v := ro.Annotations[a]; v != "" && v != before[a] {
			st.promotes = append(st.promotes, rv)
		}
	}
	for _, h := range roles(ro) {
		st.roles[h] = at
	}
}

// roles are the revisions a Rollout may have pods of: the stable, the
// current one by the status, and the current one by the template (the
// controller creates its ReplicaSet before the status names it).
func roles(ro *v1alpha1.Rollout) []string {
	return []string{ro.Status.StableRS, ro.Status.CurrentPodHash, specHash(ro)}
}

// check runs the invariants of one Rollout as of p.rv.
func (w *watcher) check(p pendingCheck) {
	s := w.snapshotAt(p.rollout, p.rv)
	if s.ro == nil {
		return
	}
	st := w.state[p.rollout]
	s.at = p.enqueued
	w.verdict(s, invSurge, checkSurge(s))
	if msg, enforced := checkAvailability(s, st); enforced {
		w.verdict(s, invAvailability, msg)
	} else {
		w.tally.inc("checks exempt: " + invAvailability)
	}
	if s.m.strategy == strategyRouted {
		w.verdict(s, invWeight, checkWeight(s))
	}
	if p.trigger == kindRollout && s.prev != nil && s.prev.Status.StableRS != "" && s.ro.Status.StableRS != s.prev.Status.StableRS {
		w.verdict(s, invPromotion, w.checkPromotion(s, st))
	}
}

// verdict counts a check and records a violation when one starts.
func (w *watcher) verdict(s snapshot, invariant, msg string) {
	w.tally.inc("checks: " + invariant)
	key := s.m.key.String() + "/" + invariant
	if msg == "" {
		delete(w.violating, key)
		return
	}
	w.tally.inc("violating checks: " + invariant)
	if w.violating[key] {
		return
	}
	w.violating[key] = true
	w.record(violation{at: s.at, rv: s.rv, rollout: s.m.key, invariant: invariant, message: msg, observed: describe(s)})
}

func (w *watcher) record(v violation) {
	w.violations = append(w.violations, v)
	w.tally.inc("violations: " + v.invariant)
}

// limits resolve maxSurge (rounded up) and maxUnavailable (rounded down)
// for a strategy, as DESIGN §3.1 and §3.3 state them.
func limits(m *member, replicas int32) (surge, unavailable int32) {
	if m.strategy == strategyBlueGreen {
		// §3.3: the new revision comes up beside the active one, which
		// stays at full size until the switch: up to twice the replicas,
		// and never fewer available than replicas.
		return replicas, 0
	}
	s, _ := intstr.GetScaledValueFromIntOrPercent(&m.maxSurge, int(replicas), true)
	u, _ := intstr.GetScaledValueFromIntOrPercent(&m.maxUnavailable, int(replicas), false)
	if s == 0 && u == 0 {
		u = 1 // §3.3: if both resolve to 0, maxUnavailable counts as 1
	}
	surge, unavailable = int32(s), min(int32(u), replicas)
	if m.strategy == strategyRouted {
		// §3.3: with traffic routing the stable stays at full size and the
		// canary comes on top of it, so maxSurge cannot bound the total;
		// the canary is at most replicas pods, so the total is at most
		// replicas + max(maxSurge, replicas).
		surge = max(surge, replicas)
	}
	return surge, unavailable
}

// specTotal and availableTotal sum over the ReplicaSets. A ReplicaSet's
// available pods count only up to its spec: pods it is about to delete are
// no longer the controller's to count on.
func specTotal(rss []*appsv1.ReplicaSet) (n int32) {
	for _, rs := range rss {
		n += ptr.Deref(rs.Spec.Replicas, 1)
	}
	return n
}

func available(rs *appsv1.ReplicaSet) int32 {
	return min(ptr.Deref(rs.Spec.Replicas, 1), rs.Status.AvailableReplicas)
}

// checkSurge: the ReplicaSets' spec.replicas never add up to more than
// replicas + maxSurge (DESIGN §3.3: "Surge / unavailability limits hold at
// every moment"). No exemption: not on first deploy (one ReplicaSet at
// replicas), not on abort ("scaled down at once, within surge limits"),
// not for superseding updates. The fleet never changes spec.replicas, so
// a scale change needs no exemption either.
func checkSurge(s snapshot) string {
	r := ptr.Deref(s.ro.Spec.Replicas, 1)
	surge, _ := limits(s.m, r)
	if total := specTotal(s.rss); total > r+surge {
		return fmt.Sprintf("ReplicaSets ask for %d pods, more than replicas %d + maxSurge %d", total, r, surge)
	}
	return ""
}

// checkAvailability: available pods never fall below replicas −
// maxUnavailable. It is enforced once established and reports whether it
// was. Exempt:
//   - the first deploy, until it is first available: there is nothing to
//     keep available yet;
//   - for the canary without traffic routing, from the moment an abort is
//     requested (the request token is on the Rollout and not yet handled)
//     or in effect, until the pods are back: DESIGN §3.3 has the aborted
//     canary's pods go at once ("a canary without routing is scaled down
//     at once, within surge limits" — within the surge limit, not the
//     availability floor), since they would otherwise take traffic meant
//     for the stable. The exemption ends when the floor is met by
//     ReplicaSets whose status has seen their spec.
//
// With traffic routing and for blue-green the stable stays at full size
// through an abort, so the floor holds there too.
func checkAvailability(s snapshot, st *rolloutState) (string, bool) {
	r := ptr.Deref(s.ro.Spec.Replicas, 1)
	_, unavailable := limits(s.m, r)
	floor := r - unavailable
	var avail, settled int32
	for _, rs := range s.rss {
		avail += available(rs)
		if rs.Status.ObservedGeneration >= rs.Generation {
			settled += available(rs)
		}
	}
	aborting := s.m.strategy == strategyCanary && (s.ro.Status.Abort || abortRequested(s.ro))
	switch {
	case aborting:
		st.exempt = true
	case st.exempt && settled >= floor:
		// Back only when ReplicaSets whose status is current say so: an
		// aborted canary scaled to 0 shows its old pods until the
		// ReplicaSet controller has seen the scale.
		st.exempt = false
	}
	if st.exempt {
		return "", false
	}
	if avail < floor {
		return fmt.Sprintf("%d pods available, fewer than replicas %d − maxUnavailable %d", avail, r, unavailable), true
	}
	return "", true
}

// abortRequested: an abort token the controller has not handled yet.
func abortRequested(ro *v1alpha1.Rollout) bool {
	v := ro.Annotations[v1alpha1.AbortAnnotation]
	return v != "" && v != ro.Status.LastHandled.Abort
}

// checkWeight: the HTTPRoute never sends the canary more than its available
// pods serve (DESIGN §3.3: "the router weight moves to the new value only
// once the canary has that many available pods"): with canary weight w of
// maxTrafficWeight M and R replicas, the pods behind the canary Service —
// those of the revision its selector names — number at least
// ceil(w·R/M), and at least minPodsPerReplicaSet. No exemption: abort,
// superseding updates and promotion all move traffic first (§14 "abort
// first").
func checkWeight(s snapshot) string {
	if s.route == nil {
		return ""
	}
	stable, canary := s.m.services()
	w, found := canaryWeight(s.route, stable, canary)
	if !found || w <= 0 {
		return ""
	}
	r := ptr.Deref(s.ro.Spec.Replicas, 1)
	need := max((w*r+s.m.maxWeight-1)/s.m.maxWeight, s.m.minPods)
	hash := ""
	if s.svcB != nil {
		hash = s.svcB.Spec.Selector[v1alpha1.PodTemplateHashLabel]
	}
	var served int32
	for _, rs := range s.rss {
		if hash == "" || rs.Labels[v1alpha1.PodTemplateHashLabel] == hash {
			served += available(rs)
		}
	}
	if served < need {
		return fmt.Sprintf("HTTPRoute sends weight %d/%d to %s, which selects revision %q with %d available pods; it needs %d", w, s.m.maxWeight, canary, hash, served, need)
	}
	return ""
}

// canaryWeight is the weight of the canary backendRef beside the stable one.
func canaryWeight(route *gatewayv1.HTTPRoute, stable, canary string) (int32, bool) {
	for _, rule := range route.Spec.Rules {
		hasStable := false
		for _, b := range rule.BackendRefs {
			hasStable = hasStable || string(b.Name) == stable
		}
		if !hasStable {
			continue
		}
		for _, b := range rule.BackendRefs {
			if string(b.Name) == canary {
				return ptr.Deref(b.Weight, 1), true // Gateway API's default weight is 1
			}
		}
	}
	return 0, false
}

// checkPromotion: a revision becomes stable only if no AnalysisRun of it
// has an unanswered bad verdict (DESIGN §5: "Failed or Error aborts;
// Inconclusive pauses"). A verdict is answered by an abort of that revision
// seen at or after it (the retry that followed starts afresh), or, for
// Inconclusive, by a promote request after it (a person accepted it). A
// verdict reached after the controller had terminated the run (a step
// promoted past, a superseded or aborted attempt) is no longer its.
func (w *watcher) checkPromotion(s snapshot, st *rolloutState) string {
	promoted := s.ro.Status.StableRS
	var bad []string
	for key, info := range w.runs {
		if info.group.rollout != s.m.key || info.group.hash != promoted || info.badRV == 0 || info.badRV >= s.rv {
			continue
		}
		if info.terminateRV != 0 && info.terminateRV <= info.badRV {
			continue
		}
		answered := false
		for _, a := range st.aborts {
			answered = answered || (a.hash == promoted && a.rv >= info.badRV && a.rv <= s.rv)
		}
		if info.badPhase == v1alpha1.AnalysisPhaseInconclusive {
			for _, p := range st.promotes {
				answered = answered || (p > info.badRV && p <= s.rv)
			}
		}
		if !answered {
			bad = append(bad, fmt.Sprintf("%s %s at resourceVersion %d", key.Name, info.badPhase, info.badRV))
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("revision %s promoted to stable at resourceVersion %d while AnalysisRun(s) of it stood unanswered: %s", promoted, s.rv, strings.Join(bad, ", "))
	}
	return ""
}

// sweep checks, every few seconds, what needs a clock: a Rollout keeps
// pods in at most two ReplicaSets, its stable and its current revision.
// Others may keep pods while they retire:
//   - the canary of an update that a newer template superseded (DESIGN
//     §3.3 "a new template during an update supersedes the old canary"),
//     scaled down within the limits;
//   - the previous stable after a promotion, scaled down at the pace of the
//     availability floor (without routing) or kept for
//     scaleDownDelaySeconds (routing, blue-green);
//   - an aborted canary kept for abortScaleDownDelaySeconds.
//
// Each for at most retireGrace after it lost its role, after the
// scale-down deadline on it, or after the stable and current ReplicaSets
// last waited for pods to become available (the floor may keep a retiring
// pod until they are): a ReplicaSet that keeps pods longer is one the
// controller forgot.
func (w *watcher) sweep(now time.Time) {
	for key, st := range w.state {
		s := w.snapshotAt(key, ^uint64(0))
		if s.ro == nil {
			continue
		}
		s.at = now
		for _, h := range roles(s.ro) {
			st.roles[h] = now
		}
		if waitingForPods(s) {
			st.waiting = now
		}
		var stale []string
		withPods := 0
		for _, rs := range s.rss {
			if ptr.Deref(rs.Spec.Replicas, 1) == 0 {
				continue
			}
			withPods++
			h := rs.Labels[v1alpha1.PodTemplateHashLabel]
			since, ok := st.roles[h]
			if !ok {
				since = st.firstSeen[h]
			}
			until := since.Add(retireGrace)
			if d, err := time.Parse(time.RFC3339, rs.Annotations[v1alpha1.ScaleDownDeadlineAnnotation]); err == nil && d.Add(retireGrace).After(until) {
				until = d.Add(retireGrace)
			}
			if w := st.waiting.Add(retireGrace); w.After(until) {
				until = w
			}
			if now.Before(until) {
				continue
			}
			stale = append(stale, fmt.Sprintf("%s (%d pods, neither stable nor current for %s)", rs.Name, ptr.Deref(rs.Spec.Replicas, 1), now.Sub(since).Round(time.Second)))
		}
		msg := ""
		if len(stale) > 0 {
			msg = fmt.Sprintf("%d ReplicaSets with pods; beyond the stable and current revisions and their allowance: %s", withPods, strings.Join(stale, ", "))
		}
		w.verdict(s, invReplicaSets, msg)
	}
}

// waitingForPods reports whether the stable or the current ReplicaSet has
// pods asked for that are not available yet. A retiring ReplicaSet's pods
// may have to stay meanwhile: removing them would take the Rollout below
// its availability floor, and with surge spent nothing else can move.
func waitingForPods(s snapshot) bool {
	for _, rs := range s.rss {
		h := rs.Labels[v1alpha1.PodTemplateHashLabel]
		if (h == s.ro.Status.StableRS || h == s.ro.Status.CurrentPodHash) && available(rs) < ptr.Deref(rs.Spec.Replicas, 1) {
			return true
		}
	}
	return false
}

// describe renders what the watcher saw of a Rollout for a violation.
func describe(s snapshot) string {
	var b strings.Builder
	ro := s.ro
	fmt.Fprintf(&b, "as of resourceVersion %d:\n", s.rv)
	fmt.Fprintf(&b, "  Rollout %s rv=%s gen=%d observed=%d phase=%s stable=%s current=%s specHash=%s step=%d abort=%t message=%q\n",
		ro.Name, ro.ResourceVersion, ro.Generation, ro.Status.ObservedGeneration, ro.Status.Phase, ro.Status.StableRS, ro.Status.CurrentPodHash, specHash(ro),
		ptr.Deref(ro.Status.CurrentStepIndex, -1), ro.Status.Abort, ro.Status.Message)
	fmt.Fprintf(&b, "    requests: promote=%q promote-full=%q abort=%q retry=%q; handled %+v\n",
		ro.Annotations[v1alpha1.PromoteAnnotation], ro.Annotations[v1alpha1.PromoteFullAnnotation], ro.Annotations[v1alpha1.AbortAnnotation], ro.Annotations[v1alpha1.RetryAnnotation], ro.Status.LastHandled)
	if wt := ro.Status.Canary.Weights; wt != nil {
		fmt.Fprintf(&b, "    status weights: canary %d (%s) stable %d (%s) verified=%v\n", wt.Canary.Weight, wt.Canary.PodTemplateHash, wt.Stable.Weight, wt.Stable.PodTemplateHash, ptr.Deref(wt.Verified, false))
	}
	for _, rs := range s.rss {
		fmt.Fprintf(&b, "  ReplicaSet %s rv=%s spec=%d replicas=%d available=%d image=%s deadline=%q\n", rs.Name, rs.ResourceVersion,
			ptr.Deref(rs.Spec.Replicas, 1), rs.Status.Replicas, rs.Status.AvailableReplicas, rsImage(rs), rs.Annotations[v1alpha1.ScaleDownDeadlineAnnotation])
	}
	for _, svc := range []*corev1.Service{s.svcA, s.svcB} {
		if svc != nil {
			fmt.Fprintf(&b, "  Service %s rv=%s selector=%v\n", svc.Name, svc.ResourceVersion, svc.Spec.Selector)
		}
	}
	if s.route != nil {
		fmt.Fprintf(&b, "  HTTPRoute %s rv=%s backendRefs:", s.route.Name, s.route.ResourceVersion)
		for _, rule := range s.route.Spec.Rules {
			for _, br := range rule.BackendRefs {
				fmt.Fprintf(&b, " %s=%d", br.Name, ptr.Deref(br.Weight, 1))
			}
		}
		b.WriteString("\n")
	}
	for _, run := range s.runs {
		fmt.Fprintf(&b, "  AnalysisRun %s rv=%s phase=%s terminate=%t message=%q\n", run.Name, run.ResourceVersion, run.Status.Phase, run.Spec.Terminate, run.Status.Message)
	}
	return b.String()
}

func rsImage(rs *appsv1.ReplicaSet) string {
	for _, c := range rs.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}
