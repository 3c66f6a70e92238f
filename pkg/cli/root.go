// Package cli implements the kubectl plugin `kubectl rollouts`.
package cli

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// NewRootCommand builds `kubectl rollouts` with the standard kubectl flags
// (--kubeconfig, --context, -n, …).
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-rollouts",
		Short: "Watch, promote and abort progressive rollouts",
		Long: `kubectl rollouts drives Rollouts of rollouts.kubeseed.io: canary and
blue-green releases with traffic shifting and metric analysis.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl rollouts"},
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newVersionCommand(streams, flags))
	root.AddCommand(newJudgeCommand(streams))
	root.AddCommand(
		newListCommand(streams, flags),
		newPromoteCommand(streams, flags),
		newAbortCommand(streams, flags),
		newRetryCommand(streams, flags),
		newPauseCommand(streams, flags, true),
		newPauseCommand(streams, flags, false),
		newRestartCommand(streams, flags),
		newSetCommand(streams, flags),
		newUndoCommand(streams, flags),
		newStatusCommand(streams, flags),
		newGetCommand(streams, flags),
		newLintCommand(streams),
		newNotificationsCommand(streams, flags),
		newDashboardCommand(streams, flags),
	)
	return root
}
