// Package deadline makes a reconcile that ran out of time a retry. The
// deadline itself is controller-runtime's (controller.Options
// ReconciliationTimeout, set from --reconcile-timeout), which also counts
// timeouts in controller_runtime_reconcile_timeouts_total.
package deadline

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ErrTimedOut is the error of a reconcile that ran past its deadline.
var ErrTimedOut = errors.New("reconcile ran past its deadline")

// Retry wraps a reconciler so that a reconcile whose context ran out of
// time returns an error, whatever it returned itself: the controller then
// retries it with backoff, even when the reconciler took the cut-off for a
// result (a requeue, nothing) or for a terminal error. Either way the
// work was cut short, so nothing it decided stands.
func Retry(r reconcile.Reconciler) reconcile.Reconciler {
	return retry{r}
}

type retry struct{ reconcile.Reconciler }

func (d retry) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := d.Reconciler.Reconcile(ctx, req)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return res, err
	}
	at, _ := ctx.Deadline()
	log.FromContext(ctx).Info("Reconcile ran past its deadline; retrying with backoff", "deadline", at, "reconcileError", err)
	if err == nil {
		return reconcile.Result{}, ErrTimedOut
	}
	// %v, not %w: a terminal error the cut-off caused must not end the
	// retries.
	return reconcile.Result{}, fmt.Errorf("%w: %s", ErrTimedOut, err.Error())
}
