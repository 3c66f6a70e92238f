//go:build soak

package soak

import (
	"context"
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// settle waits, once the faults have stopped, until every Rollout is in
// the state its schedule implies, and returns what still differs when
// timeout passes (nothing when all agree).
func settle(ctx context.Context, drivers []*driver, w *watcher, admin client.Client, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		w.flush()
		problems := endState(ctx, drivers, w, admin)
		if len(problems) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return problems
		}
		time.Sleep(2 * time.Second)
	}
}

func endState(ctx context.Context, drivers []*driver, w *watcher, admin client.Client) []string {
	var problems []string
	namespaces := map[string]bool{}
	for _, d := range drivers {
		namespaces[d.m.key.Namespace] = true
		for _, p := range d.endProblems(w) {
			problems = append(problems, fmt.Sprintf("%s: %s", d.m.key, p))
		}
	}
	// The fleet's analyses have no Job metrics: any Job is one nobody asked for.
	for ns := range namespaces {
		var jobs batchv1.JobList
		if err := admin.List(ctx, &jobs, client.InNamespace(ns)); err != nil {
			problems = append(problems, fmt.Sprintf("listing Jobs of %s: %v", ns, err))
			continue
		}
		for _, j := range jobs.Items {
			problems = append(problems, fmt.Sprintf("%s/%s: a Job (active %d, owners %v)", ns, j.Name, j.Status.Active, ownerNames(j.OwnerReferences)))
		}
	}
	slices.Sort(problems)
	return problems
}

func ownerNames(refs []metav1.OwnerReference) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Kind+"/"+r.Name)
	}
	return out
}

// endProblems compares one Rollout with its expected end state.
func (d *driver) endProblems(w *watcher) []string {
	if d.problem != "" {
		return []string{"the schedule stopped: " + d.problem}
	}
	exp := d.expect
	if exp == nil {
		return []string{"the final update was not played"}
	}
	s := w.latest(d.m.key)
	ro := s.ro
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	stableRev, currentRev := d.hashes[exp.stableImage], d.hashes[exp.currentImage]
	want := fmt.Sprintf("Degraded (aborted) on %s with stable %s", image(exp.currentImage), image(exp.stableImage))
	if exp.healthy {
		want = fmt.Sprintf("Healthy on %s", image(exp.stableImage))
	}
	switch {
	case ro == nil:
		return []string{"the Rollout is gone"}
	case exp.healthy && ro.Status.Phase != v1alpha1.RolloutPhaseHealthy,
		!exp.healthy && (ro.Status.Phase != v1alpha1.RolloutPhaseDegraded || !ro.Status.Abort),
		ro.Status.StableRS != stableRev || ro.Status.CurrentPodHash != currentRev:
		bad("want %s (stable %s, current %s); status: %s", want, stableRev, currentRev, summarize(ro))
	}
	// Exactly one ReplicaSet with pods, the stable, all available.
	r := ptr.Deref(ro.Spec.Replicas, 1)
	for _, rs := range s.rss {
		spec, h := ptr.Deref(rs.Spec.Replicas, 1), rs.Labels[v1alpha1.PodTemplateHashLabel]
		switch {
		case h == stableRev && (spec != r || rs.Status.Replicas != r || rs.Status.AvailableReplicas != r):
			bad("stable ReplicaSet %s has spec %d, %d pods, %d available; want %d", rs.Name, spec, rs.Status.Replicas, rs.Status.AvailableReplicas, r)
		case h == stableRev && rsImage(rs) != image(exp.stableImage):
			bad("stable ReplicaSet %s runs %s, want %s", rs.Name, rsImage(rs), image(exp.stableImage))
		case h != stableRev && (spec > 0 || rs.Status.Replicas > 0):
			bad("ReplicaSet %s (%s) still has spec %d and %d pods", rs.Name, rsImage(rs), spec, rs.Status.Replicas)
		}
	}
	// All traffic on the stable revision.
	for _, svc := range []*corev1.Service{s.svcA, s.svcB} {
		if svc == nil {
			continue
		}
		if h := svc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; h != stableRev {
			bad("Service %s selects revision %q, want the stable %s", svc.Name, h, stableRev)
		}
	}
	if s.route != nil {
		stable, canary := d.m.services()
		if wt, _ := canaryWeight(s.route, stable, canary); wt != 0 {
			bad("HTTPRoute still sends weight %d to %s", wt, canary)
		}
	}
	out = append(out, d.runProblems(w, ro, exp)...)
	return out
}

// runProblems: each analysis ran at most once per attempt of its revision
// and exactly once per attempt of the final one, with the verdict the
// schedule set; no run is left running, and every run belongs to the
// Rollout.
func (d *driver) runProblems(w *watcher, ro *v1alpha1.Rollout, exp *expectation) []string {
	var out []string
	runs, created := w.runsOf(d.m.key)
	for g, n := range created {
		if n > d.attempts[g.hash] {
			out = append(out, fmt.Sprintf("%d %s AnalysisRuns of revision %s for %d attempt(s)", n, g.kind, g.hash, d.attempts[g.hash]))
		}
	}
	if d.analysed() {
		kind := map[strategy]string{strategyRouted: "step", strategyBlueGreen: "prePromotion"}[d.m.strategy]
		if n := created[runGroup{rollout: d.m.key, hash: exp.revision, kind: kind}]; n != exp.runs {
			out = append(out, fmt.Sprintf("%d %s AnalysisRuns of the final revision %s, want %d (one per attempt)", n, kind, exp.revision, exp.runs))
		}
	}
	for _, run := range runs {
		owner := metav1.GetControllerOf(run)
		switch {
		case !run.Status.Phase.Completed():
			out = append(out, fmt.Sprintf("AnalysisRun %s left %q (terminate=%t)", run.Name, run.Status.Phase, run.Spec.Terminate))
		case run.Labels[v1alpha1.PodTemplateHashLabel] == exp.revision && run.Status.Phase != exp.runPhase:
			out = append(out, fmt.Sprintf("AnalysisRun %s of the final revision ended %s, want %s: %s", run.Name, run.Status.Phase, exp.runPhase, run.Status.Message))
		}
		if owner == nil || owner.UID != ro.UID {
			out = append(out, fmt.Sprintf("AnalysisRun %s is not owned by the Rollout (owner %v)", run.Name, owner))
		}
	}
	return out
}
