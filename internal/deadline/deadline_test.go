package deadline

import (
	"context"
	"errors"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

type reconcilerFunc func(context.Context, reconcile.Request) (reconcile.Result, error)

func (f reconcilerFunc) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return f(ctx, req)
}

// waitsOut is a reconciler that waits for its context to end, then returns
// what it is given.
func waitsOut(res reconcile.Result, err error) reconcile.Reconciler {
	return reconcilerFunc(func(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
		<-ctx.Done()
		return res, err
	})
}

func TestRetry(t *testing.T) {
	terminal := reconcile.TerminalError(errors.New("invalid spec"))
	for _, tc := range []struct {
		name string
		r    reconcile.Reconciler
		// deadline: the context runs out of time.
		deadline  bool
		cancelled bool
		wantRes   reconcile.Result
		wantErr   error // errors.Is
		terminal  bool
	}{
		{name: "in time, result kept", r: reconcilerFunc(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{RequeueAfter: time.Minute}, nil
		}), wantRes: reconcile.Result{RequeueAfter: time.Minute}},
		{name: "in time, terminal error kept", r: reconcilerFunc(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, terminal
		}), wantErr: terminal, terminal: true},
		{name: "timed out, requeue taken for success", r: waitsOut(reconcile.Result{RequeueAfter: time.Hour}, nil), deadline: true, wantErr: ErrTimedOut},
		{name: "timed out, its error kept in the message", r: waitsOut(reconcile.Result{}, context.DeadlineExceeded), deadline: true, wantErr: ErrTimedOut},
		{name: "timed out, terminal error retried", r: waitsOut(reconcile.Result{}, terminal), deadline: true, wantErr: ErrTimedOut},
		{name: "shutdown is no timeout", r: waitsOut(reconcile.Result{}, nil), cancelled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.deadline {
				ctx, cancel = context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
			}
			if tc.cancelled {
				cancel()
			}
			res, err := Retry(tc.r).Reconcile(ctx, reconcile.Request{})
			if res != tc.wantRes {
				t.Errorf("result %+v, want %+v", res, tc.wantRes)
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if got := errors.Is(err, reconcile.TerminalError(nil)); got != tc.terminal {
				t.Errorf("terminal: %t, want %t (%v)", got, tc.terminal, err)
			}
		})
	}
}
