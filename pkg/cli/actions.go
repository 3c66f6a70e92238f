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

// Action is a change asked of a Rollout: by a request annotation whose new
// token the controller acts on once, or by a spec field. The plugin's
// commands and the dashboard's buttons go through Actions and Act alone.
type Action struct {
	// Check says why the action makes no sense for ro now, or "".
	Check func(ro *v1alpha1.Rollout) string
	// Patch is the JSON merge patch that asks for it; done is what it did,
	// for `rollout "NAME" <done>`.
	Patch func(ro *v1alpha1.Rollout) (patch map[string]any, done string)
}

// Actions are the actions by the plugin's command name.
var Actions = map[string]Action{
	"promote":      {Check: promoteCheck, Patch: requestPatch(v1alpha1.PromoteAnnotation, "promoted")},
	"promote-full": {Check: promoteCheck, Patch: requestPatch(v1alpha1.PromoteFullAnnotation, "fully promoted: skipping the remaining steps")},
	"abort": {
		Check: func(ro *v1alpha1.Rollout) string {
			switch {
			case !updating(ro):
				return "no update is in progress: nothing to abort"
			case ro.Status.Abort:
				return "the update is already aborted"
			}
			return ""
		},
		Patch: requestPatch(v1alpha1.AbortAnnotation, "aborted"),
	},
	"retry": {
		Check: func(ro *v1alpha1.Rollout) string {
			if !ro.Status.Abort {
				return "the update is not aborted: nothing to retry"
			}
			return ""
		},
		Patch: requestPatch(v1alpha1.RetryAnnotation, "retried"),
	},
	"pause":  pauseAction(true),
	"resume": pauseAction(false),
	"restart": {
		Check: func(*v1alpha1.Rollout) string { return "" },
		Patch: func(*v1alpha1.Rollout) (map[string]any, string) {
			// Rounded up: pods created earlier in the current second are replaced too.
			at := now().UTC().Truncate(time.Second).Add(time.Second).Format(time.RFC3339)
			return map[string]any{"spec": map[string]any{"restartAt": at}}, "restarting pods created before " + at
		},
	},
}

// ActionNames are the actions in the order the plugin and the dashboard
// present them.
var ActionNames = []string{"promote", "promote-full", "abort", "retry", "pause", "resume", "restart"}

// requestPatch sets a request annotation to a new token, the time now.
func requestPatch(annotation, done string) func(*v1alpha1.Rollout) (map[string]any, string) {
	return func(*v1alpha1.Rollout) (map[string]any, string) {
		token := now().UTC().Format(time.RFC3339Nano)
		return map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotation: token}}}, done
	}
}

func pauseAction(pause bool) Action {
	done := "paused"
	if !pause {
		done = "resumed"
	}
	return Action{
		Check: func(ro *v1alpha1.Rollout) string {
			if ro.Spec.Paused == pause {
				return "it is already " + done
			}
			return ""
		},
		Patch: func(*v1alpha1.Rollout) (map[string]any, string) {
			return map[string]any{"spec": map[string]any{"paused": pause}}, done
		},
	}
}

// Act applies the action named to ro through c and says what it did:
// `rollout "NAME" <done>`. An action that makes no sense now is refused
// with the reason, and the API server's refusal (forbidden, say) is
// returned as it is.
func Act(ctx context.Context, c client.Client, ro *v1alpha1.Rollout, name string) (string, error) {
	a, ok := Actions[name]
	if !ok {
		return "", fmt.Errorf("unknown action %q", name)
	}
	if why := a.Check(ro); why != "" {
		return "", fmt.Errorf("rollout %q: %s", ro.Name, why)
	}
	patch, done := a.Patch(ro)
	raw, err := json.Marshal(patch)
	if err != nil {
		return "", err
	}
	if err := c.Patch(ctx, ro, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return "", fmt.Errorf("patching rollout %s: %w", ro.Name, err)
	}
	return fmt.Sprintf("rollout %q %s", ro.Name, done), nil
}

// act runs the action named on the Rollout name, for a command.
func act(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name, action string) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	ro, err := s.rollout(ctx, name)
	if err != nil {
		return err
	}
	msg, err := Act(ctx, s.client, ro, action)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, msg)
	return err
}

// actionCommand is a command that runs one action on the Rollout named.
func actionCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, cmd *cobra.Command, action string) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.ValidArgsFunction = completeRollouts(flags)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return act(cmd.Context(), streams.Out, flags, args[0], action)
	}
	return cmd
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
				return act(cmd.Context(), streams.Out, flags, args[0], "promote-full")
			}
			return act(cmd.Context(), streams.Out, flags, args[0], "promote")
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "Skip every remaining step and analysis.")
	return cmd
}

func newAbortCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return actionCommand(streams, flags, &cobra.Command{
		Use: "abort NAME", Short: "Abort the update: traffic and replicas go back to the stable revision",
		Long: `abort stops the update in progress: the canary weight goes to 0 at once, the
stable revision is scaled back up and the Rollout becomes Degraded with reason
RolloutAborted. The template stays as it is; retry starts the update again,
undo or a new template moves on.`,
		Example: "  kubectl rollouts abort checkout",
	}, "abort")
}

func newRetryCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return actionCommand(streams, flags, &cobra.Command{
		Use: "retry NAME", Short: "Start an aborted update again from its first step",
		Example: "  kubectl rollouts retry checkout",
	}, "retry")
}

func newPauseCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, pause bool) *cobra.Command {
	use, short, action := "pause NAME", "Freeze scaling, Service switches and traffic weights", "pause"
	if !pause {
		use, short, action = "resume NAME", "Undo pause", "resume"
	}
	return actionCommand(streams, flags, &cobra.Command{
		Use: use, Short: short,
		Long: `pause sets spec.paused: the controller keeps watching the Rollout but changes
no ReplicaSet, Service or traffic weight until resume clears it. (A pause step
is left with promote, not resume.)`,
		Example: "  kubectl rollouts pause checkout\n  kubectl rollouts resume checkout",
	}, action)
}

func newRestartCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	return actionCommand(streams, flags, &cobra.Command{
		Use:   "restart NAME",
		Short: "Replace every pod, a few at a time, honouring PodDisruptionBudgets",
		Long: `restart sets spec.restartAt to now: the controller evicts every pod created
before it, at most max(maxUnavailable, 1) at a time, through the eviction API.`,
		Example: "  kubectl rollouts restart checkout",
	}, "restart")
}
