package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// now is the clock of request tokens and restartAt; tests replace it.
var now = time.Now

// updating reports whether an update is in progress: a new revision that
// is not stable yet.
func updating(ro *v1alpha1.Rollout) bool {
	return ro.Status.CurrentPodHash != "" && ro.Status.CurrentPodHash != ro.Status.StableRS
}

// request is a one-shot request carried by an annotation: the controller
// acts on each new token once.
type request struct {
	use, short, long, example string
	annotation                string
	// check says why the request makes no sense now, or "".
	check func(ro *v1alpha1.Rollout) string
	done  string
}

func newRequestCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, r request) *cobra.Command {
	return &cobra.Command{
		Use: r.use, Short: r.short, Long: r.long, Example: r.example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendRequest(cmd.Context(), streams.Out, flags, args[0], r.annotation, r.check, r.done)
		},
	}
}

func sendRequest(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name, annotation string, check func(*v1alpha1.Rollout) string, done string) error {
	return editRollout(ctx, out, flags, name, func(ro *v1alpha1.Rollout) (map[string]any, string, error) {
		if why := check(ro); why != "" {
			return nil, "", fmt.Errorf("rollout %q: %s", name, why)
		}
		token := now().UTC().Format(time.RFC3339Nano)
		return map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotation: token}}}, done, nil
	})
}

// editRollout reads a Rollout, asks edit for the merge patch to apply (or
// why not) and what to print, applies it and prints.
func editRollout(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name string, edit func(*v1alpha1.Rollout) (map[string]any, string, error)) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	ro, err := s.rollout(ctx, name)
	if err != nil {
		return err
	}
	patch, done, err := edit(ro)
	if err != nil {
		return err
	}
	if err := s.patch(ctx, ro, patch); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "rollout %q %s\n", name, done)
	return err
}

// patch applies a JSON merge patch to a Rollout.
func (s *session) patch(ctx context.Context, ro *v1alpha1.Rollout, patch map[string]any) error {
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	if err := s.client.Patch(ctx, ro, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return fmt.Errorf("patching rollout %s: %w", ro.Name, err)
	}
	return nil
}

func promoteCheck(ro *v1alpha1.Rollout) string {
	switch {
	case !updating(ro):
		return "no update is in progress: nothing to promote"
	case ro.Status.Abort:
		return "the update is aborted: retry it first"
	}
	return ""
}

func newPromoteCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	var full bool
	cmd := &cobra.Command{
		Use:   "promote NAME",
		Short: "Leave the current pause or step; --full skips every remaining step",
		Long: `promote asks the controller to go on with an update: it leaves the
current pause (or skips the current step, an inconclusive analysis included).
With --full the remaining steps and analyses are skipped and the new revision
is promoted at once.`,
		Example: `  # Continue past a pause
  kubectl rollouts promote checkout

  # Skip all remaining steps
  kubectl rollouts promote checkout --full`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			if full {
				return sendRequest(cmd.Context(), streams.Out, flags, args[0], v1alpha1.PromoteFullAnnotation, promoteCheck, "fully promoted: skipping the remaining steps")
			}
			return sendRequest(cmd.Context(), streams.Out, flags, args[0], v1alpha1.PromoteAnnotation, promoteCheck, "promoted")
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "Skip every remaining step and analysis.")
	return cmd
}

func newAbortCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newRequestCommand(streams, flags, request{
		use: "abort NAME", short: "Abort the update: traffic and replicas go back to the stable revision",
		long: `abort stops the update in progress: the canary weight goes to 0 at once, the
stable revision is scaled back up and the Rollout becomes Degraded with reason
RolloutAborted. The template stays as it is; retry starts the update again,
undo or a new template moves on.`,
		example:    "  kubectl rollouts abort checkout",
		annotation: v1alpha1.AbortAnnotation,
		check: func(ro *v1alpha1.Rollout) string {
			switch {
			case !updating(ro):
				return "no update is in progress: nothing to abort"
			case ro.Status.Abort:
				return "the update is already aborted"
			}
			return ""
		},
		done: "aborted",
	})
}

func newRetryCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return newRequestCommand(streams, flags, request{
		use: "retry NAME", short: "Start an aborted update again from its first step",
		example:    "  kubectl rollouts retry checkout",
		annotation: v1alpha1.RetryAnnotation,
		check: func(ro *v1alpha1.Rollout) string {
			if !ro.Status.Abort {
				return "the update is not aborted: nothing to retry"
			}
			return ""
		},
		done: "retried",
	})
}

func newPauseCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, pause bool) *cobra.Command {
	use, short, done := "pause NAME", "Freeze scaling, Service switches and traffic weights", "paused"
	if !pause {
		use, short, done = "resume NAME", "Undo pause", "resumed"
	}
	return &cobra.Command{
		Use: use, Short: short,
		Long: `pause sets spec.paused: the controller keeps watching the Rollout but changes
no ReplicaSet, Service or traffic weight until resume clears it. (A pause step
is left with promote, not resume.)`,
		Example:           "  kubectl rollouts pause checkout\n  kubectl rollouts resume checkout",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return editRollout(cmd.Context(), streams.Out, flags, args[0], func(ro *v1alpha1.Rollout) (map[string]any, string, error) {
				if ro.Spec.Paused == pause {
					return nil, "", fmt.Errorf("rollout %q is already %s", args[0], done)
				}
				return map[string]any{"spec": map[string]any{"paused": pause}}, done, nil
			})
		},
	}
}

func newRestartCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "restart NAME",
		Short: "Replace every pod, a few at a time, honouring PodDisruptionBudgets",
		Long: `restart sets spec.restartAt to now: the controller evicts every pod created
before it, at most max(maxUnavailable, 1) at a time, through the eviction API.`,
		Example:           "  kubectl rollouts restart checkout",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return editRollout(cmd.Context(), streams.Out, flags, args[0], func(*v1alpha1.Rollout) (map[string]any, string, error) {
				// Rounded up: pods created earlier in the current second are replaced too.
				at := now().UTC().Truncate(time.Second).Add(time.Second).Format(time.RFC3339)
				return map[string]any{"spec": map[string]any{"restartAt": at}}, "restarting pods created before " + at, nil
			})
		},
	}
}
