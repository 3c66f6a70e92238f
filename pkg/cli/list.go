package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func newListCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	list := &cobra.Command{Use: "list", Short: "List Rollouts"}
	var all, watchIt bool
	rollouts := &cobra.Command{
		Use:     "rollouts",
		Aliases: []string{"rollout", "ro"},
		Short:   "A table of Rollouts: strategy, phase, step, weight, availability",
		Example: `  kubectl rollouts list rollouts
  kubectl rollouts list rollouts -A
  kubectl rollouts list rollouts -w`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listRollouts(cmd.Context(), streams.Out, flags, all, watchIt)
		},
	}
	rollouts.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the Rollouts of every namespace.")
	rollouts.Flags().BoolVarP(&watchIt, "watch", "w", false, "Print a new table on every change.")
	list.AddCommand(rollouts)
	return list
}

func listRollouts(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, all, follow bool) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(s.namespace))
	}
	var list v1alpha1.RolloutList
	if err := s.client.List(ctx, &list, opts...); err != nil {
		return fmt.Errorf("listing rollouts: %w", err)
	}
	items := map[string]v1alpha1.Rollout{}
	for _, ro := range list.Items {
		items[ro.Namespace+"/"+ro.Name] = ro
	}
	if err := printRollouts(out, items, all, s.namespace); err != nil || !follow {
		return err
	}
	w, err := s.client.Watch(ctx, &v1alpha1.RolloutList{}, append(opts, &client.ListOptions{Raw: rawFrom(list.ResourceVersion)})...)
	if err != nil {
		return fmt.Errorf("watching rollouts: %w", err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		ro, ok := ev.Object.(*v1alpha1.Rollout)
		if !ok {
			continue
		}
		key := ro.Namespace + "/" + ro.Name
		if ev.Type == watch.Deleted {
			delete(items, key)
		} else {
			items[key] = *ro
		}
		if _, err := fmt.Fprintln(out); err != nil {
			return err
		}
		if err := printRollouts(out, items, all, s.namespace); err != nil {
			return err
		}
	}
	return nil
}

func printRollouts(out io.Writer, items map[string]v1alpha1.Rollout, all bool, namespace string) error {
	if len(items) == 0 {
		where := "namespace " + namespace
		if all {
			where = "any namespace"
		}
		_, err := fmt.Fprintf(out, "No rollouts found in %s.\n", where)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := "NAME\tSTRATEGY\tPHASE\tSTEP\tSET-WEIGHT\tACTUAL-WEIGHT\tDESIRED\tCURRENT\tUP-TO-DATE\tAVAILABLE"
	if all {
		header = "NAMESPACE\t" + header
	}
	_, _ = fmt.Fprintln(tw, header)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range items {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		ro := items[k]
		row := []string{ro.Name, strategyOf(&ro), phaseOf(&ro), stepOf(&ro), setWeightOf(&ro), actualWeightOf(&ro),
			fmt.Sprint(ptr.Deref(ro.Spec.Replicas, 1)), fmt.Sprint(ro.Status.Replicas), fmt.Sprint(ro.Status.UpdatedReplicas), fmt.Sprint(ro.Status.AvailableReplicas)}
		if all {
			row = append([]string{ro.Namespace}, row...)
		}
		_, _ = fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func strategyOf(ro *v1alpha1.Rollout) string {
	if ro.Spec.Strategy.BlueGreen != nil {
		return "BlueGreen"
	}
	return "Canary"
}

func phaseOf(ro *v1alpha1.Rollout) string {
	if ro.Status.Phase == "" || ro.Status.ObservedGeneration < ro.Generation {
		return "Progressing"
	}
	return string(ro.Status.Phase)
}

func stepOf(ro *v1alpha1.Rollout) string {
	c := ro.Spec.Strategy.Canary
	if c == nil || len(c.Steps) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", ptr.Deref(ro.Status.CurrentStepIndex, 0), len(c.Steps))
}

// setWeightOf is the weight the steps reached (0 once the update is
// aborted); actualWeightOf the weight the canary gets now.
func setWeightOf(ro *v1alpha1.Rollout) string {
	c := ro.Spec.Strategy.Canary
	if c == nil {
		return "-"
	}
	if !updating(ro) {
		return "100"
	}
	if ro.Status.Abort {
		return "0"
	}
	idx := int(ptr.Deref(ro.Status.CurrentStepIndex, 0))
	for i := min(idx, len(c.Steps)) - 1; i >= 0; i-- {
		if w := c.Steps[i].SetWeight; w != nil {
			return fmt.Sprint(*w)
		}
	}
	return "0"
}

func actualWeightOf(ro *v1alpha1.Rollout) string {
	if ro.Spec.Strategy.Canary == nil || ro.Status.Canary.Weights == nil {
		return "-"
	}
	if !updating(ro) {
		return "100"
	}
	return fmt.Sprint(ro.Status.Canary.Weights.Canary.Weight)
}

// completeRollouts completes Rollout names in the selected namespace.
func completeRollouts(flags *genericclioptions.ConfigFlags) func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := newSession(flags)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var list v1alpha1.RolloutList
		if err := s.client.List(cmd.Context(), &list, client.InNamespace(s.namespace)); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, ro := range list.Items {
			if strings.HasPrefix(ro.Name, prefix) {
				names = append(names, ro.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
