package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Exit codes of status.
const (
	exitDegraded = 1
	exitTimeout  = 2
)

func newStatusCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	var timeout time.Duration
	var watchIt bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Wait for a Rollout to be Healthy; the exit code says how it ended",
		Long: `status follows a Rollout (through a watch) with a one-line progress message
until it is Healthy — the current template fully released — or Degraded
(aborted, an invalid spec, a missed progress deadline). Exit codes, for CI
pipelines: 0 Healthy, 1 Degraded or aborted, 2 timed out.`,
		Example: `  # Gate a pipeline on the release
  kubectl rollouts set image checkout app=checkout:1.2.0
  kubectl rollouts status checkout --timeout 15m

  # Print the state once and exit with its code
  kubectl rollouts status checkout --watch=false`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return waitStatus(ctx, streams.Out, flags, args[0], watchIt, isTerminal(streams.Out))
		},
	}
	cmd.Flags().DurationVarP(&timeout, "timeout", "t", 0, "How long to wait (0: no limit); exit code 2 when it passes.")
	cmd.Flags().BoolVarP(&watchIt, "watch", "w", true, "Wait for a final state; --watch=false prints the current one.")
	return cmd
}

// verdict says whether a Rollout has reached a final state, and which.
func verdict(ro *v1alpha1.Rollout) (done bool, code int) {
	fresh := ro.Status.ObservedGeneration >= ro.Generation
	switch {
	case !fresh:
		return false, 0
	case ro.Status.Phase == v1alpha1.RolloutPhaseHealthy:
		return true, 0
	case ro.Status.Phase == v1alpha1.RolloutPhaseDegraded || ro.Status.Abort:
		return true, exitDegraded
	}
	return false, 0
}

// progressLine summarises a Rollout in one line.
func progressLine(ro *v1alpha1.Rollout) string {
	st := ro.Status
	phase := string(st.Phase)
	if phase == "" || st.ObservedGeneration < ro.Generation {
		phase = "Progressing"
	}
	line := phase
	if c := ro.Spec.Strategy.Canary; c != nil && len(c.Steps) > 0 && updating(ro) {
		line += fmt.Sprintf(" step %d/%d", ptr.Deref(st.CurrentStepIndex, 0), len(c.Steps))
	}
	line += fmt.Sprintf(", %d/%d updated, %d available", st.UpdatedReplicas, ptr.Deref(ro.Spec.Replicas, 1), st.AvailableReplicas)
	if st.Message != "" {
		line += ": " + st.Message
	}
	return line
}

func waitStatus(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name string, follow, tty bool) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	p := &progress{out: out, tty: tty}
	defer p.finish()
	for {
		ro, err := s.rollout(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return timedOut(name)
			}
			return err
		}
		p.show(progressLine(ro))
		if done, code := verdict(ro); done || !follow {
			return result(name, ro, code)
		}
		var list v1alpha1.RolloutList
		w, err := s.client.Watch(ctx, &list, client.InNamespace(s.namespace), &client.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name),
			Raw:           rawFrom(ro.ResourceVersion),
		})
		if err != nil {
			if ctx.Err() != nil {
				return timedOut(name)
			}
			return fmt.Errorf("watching rollout %s: %w", name, err)
		}
		code, finished, err := follows(ctx, w, p, name)
		w.Stop()
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			return timedOut(name)
		case err != nil:
			return err
		case finished:
			return code
		}
		// The watch ended (expired): read again and watch again.
	}
}

// follows shows each change until a final state (whose result it returns),
// the end of the watch, or the context's.
func follows(ctx context.Context, w watch.Interface, p *progress, name string) (result error, finished bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, false, fmt.Errorf("rollout %q was deleted", name)
			case watch.Error:
				return nil, false, nil
			}
			ro, ok := ev.Object.(*v1alpha1.Rollout)
			if !ok {
				continue
			}
			p.show(progressLine(ro))
			if done, code := verdict(ro); done {
				return resultOf(name, ro, code), true, nil
			}
		}
	}
}

func result(name string, ro *v1alpha1.Rollout, code int) error {
	done, _ := verdict(ro)
	if !done {
		return &ExitError{Code: exitTimeout, Err: fmt.Errorf("rollout %q is not done: %s", name, progressLine(ro))}
	}
	return resultOf(name, ro, code)
}

func resultOf(name string, ro *v1alpha1.Rollout, code int) error {
	if code == 0 {
		return nil
	}
	reason := ro.Status.Message
	if reason == "" {
		reason = string(ro.Status.Phase)
	}
	return &ExitError{Code: code, Err: fmt.Errorf("rollout %q is %s: %s", name, ro.Status.Phase, reason)}
}

func timedOut(name string) error {
	return &ExitError{Code: exitTimeout, Err: fmt.Errorf("timed out waiting for rollout %q", name)}
}

// progress prints a status line: redrawn in place on a terminal, one line
// per change otherwise.
type progress struct {
	out  io.Writer
	tty  bool
	last string
}

func (p *progress) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		_, _ = fmt.Fprintf(p.out, "\r\033[K%s", line)
		return
	}
	_, _ = fmt.Fprintln(p.out, line)
}

func (p *progress) finish() {
	if p.tty && p.last != "" {
		_, _ = fmt.Fprintln(p.out)
	}
}

// isTerminal reports whether w is a terminal, and NO_COLOR is unset.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("NO_COLOR") == "" && term.IsTerminal(int(f.Fd()))
}
