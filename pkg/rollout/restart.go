package rollout

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// planRestart replaces the pods created before spec.restartAt, through the
// eviction API so PodDisruptionBudgets are honoured, at most
// max(maxUnavailable, 1) pods down at a time. It only runs while the
// ReplicaSets are steady (nothing to scale, every pod available); when no old
// pod is left, status.restartedAt records the request as done.
func planRestart(p *Plan, ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, pods []*corev1.Pod, now time.Time, out *outcome) {
	at := ro.Spec.RestartAt
	if at == nil || (st.RestartedAt != nil && !st.RestartedAt.Before(at)) {
		return
	}
	if now.Before(at.Time) {
		out.after(at.Sub(now))
		return
	}
	var unavailable int32
	for _, rs := range w.all {
		unavailable += max(rs.spec, rs.current) - rs.available
	}
	if len(p.Scale) > 0 || p.Create != nil {
		return
	}
	var old []*corev1.Pod
	for _, pod := range pods {
		if pod.CreationTimestamp.Before(at) && pod.DeletionTimestamp.IsZero() {
			old = append(old, pod)
		}
	}
	if len(old) == 0 {
		st.RestartedAt = at.DeepCopy()
		out.events = append(out.events, Event{Reason: v1alpha1.ReasonRolloutRestarted, Message: fmt.Sprintf("Every pod created before %s was replaced", at.UTC().Format(time.RFC3339))})
		return
	}
	budget := max(w.limits.unavailable, 1) - unavailable
	if budget <= 0 {
		return
	}
	sort.Slice(old, func(i, j int) bool {
		if !old[i].CreationTimestamp.Equal(&old[j].CreationTimestamp) {
			return old[i].CreationTimestamp.Before(&old[j].CreationTimestamp)
		}
		return old[i].Name < old[j].Name
	})
	for _, pod := range old[:min(int(budget), len(old))] {
		p.Evict = append(p.Evict, pod.Name)
	}
	out.phase, out.reason = v1alpha1.RolloutPhaseProgressing, v1alpha1.ReasonRolloutRestarted
	out.message = fmt.Sprintf("Restarting: %d pods created before %s left", len(old), at.UTC().Format(time.RFC3339))
}
