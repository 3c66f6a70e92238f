package analysis

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// expire deletes a finished run once its ttlStrategy has elapsed, and
// otherwise comes back at that moment.
func (r *Reconciler) expire(ctx context.Context, run *v1alpha1.AnalysisRun, now time.Time) (reconcile.Result, error) {
	deadline, ok := ttlDeadline(run)
	if !ok {
		return reconcile.Result{}, nil
	}
	if wait := deadline.Sub(now); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	log.FromContext(ctx).Info("Deleting the AnalysisRun: its ttlStrategy elapsed", "analysisRun", run.Name, "phase", run.Status.Phase)
	if err := r.Client.Delete(ctx, run, client.Preconditions{UID: &run.UID}); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, fmt.Errorf("deleting expired analysisrun: %w", err)
	}
	r.forget(client.ObjectKeyFromObject(run))
	return reconcile.Result{}, nil
}

// ttlDeadline is when a finished run is deleted: secondsAfterSuccess after
// it completed Successful, secondsAfterFailure after it completed otherwise,
// each falling back to secondsAfterCompletion. False: the run is kept.
func ttlDeadline(run *v1alpha1.AnalysisRun) (time.Time, bool) {
	ttl := run.Spec.TTLStrategy
	if ttl == nil || run.Status.CompletedAt == nil || !run.Status.Phase.Completed() {
		return time.Time{}, false
	}
	seconds := ttl.SecondsAfterFailure
	if run.Status.Phase == v1alpha1.AnalysisPhaseSuccessful {
		seconds = ttl.SecondsAfterSuccess
	}
	if seconds == nil {
		seconds = ttl.SecondsAfterCompletion
	}
	if seconds == nil {
		return time.Time{}, false
	}
	return run.Status.CompletedAt.Add(time.Duration(*seconds) * time.Second), true
}
