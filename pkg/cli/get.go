package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func newGetCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Show a Rollout and what it owns"}
	var watchIt bool
	ro := &cobra.Command{
		Use:     "rollout NAME",
		Aliases: []string{"ro", "rollouts"},
		Short:   "Header and tree of a Rollout: revisions, ReplicaSets, pods, AnalysisRuns, Experiments",
		Long: `get rollout shows a Rollout's state — strategy, step, set and actual weight,
images with their roles, replica counts, phase and message — and a tree of
its revisions: each one's ReplicaSet with its pods, and the AnalysisRuns (with
each metric's phase and last value) and Experiments it ran. With -w it redraws
whenever the Rollout or anything it owns changes.`,
		Example: `  kubectl rollouts get rollout checkout
  kubectl rollouts get ro checkout -w`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getRollout(cmd.Context(), streams.Out, flags, args[0], watchIt, isTerminal(streams.Out))
		},
	}
	ro.Flags().BoolVarP(&watchIt, "watch", "w", false, "Redraw on every change.")
	var watchExp bool
	exp := &cobra.Command{
		Use:     "experiment NAME",
		Aliases: []string{"exp", "experiments"},
		Short:   "An Experiment: its templates with their ReplicaSets and pods, and its AnalysisRuns",
		Example: `  kubectl rollouts get experiment checkout-6f9c7d-2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getExperiment(cmd.Context(), streams.Out, flags, args[0], watchExp, isTerminal(streams.Out))
		},
	}
	exp.Flags().BoolVarP(&watchExp, "watch", "w", false, "Redraw on every change.")
	get.AddCommand(ro, exp)
	return get
}

func getRollout(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name string, follow, tty bool) error {
	return show(ctx, out, flags, follow, tty, func(s *session, b *strings.Builder, st style) error {
		f, err := s.gather(ctx, name)
		if err != nil {
			return err
		}
		return render(b, f, st, humanAge(time.Now()))
	})
}

func getExperiment(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, name string, follow, tty bool) error {
	return show(ctx, out, flags, follow, tty, func(s *session, b *strings.Builder, st style) error {
		ex, f, err := s.gatherExperiment(ctx, name)
		if err != nil {
			return err
		}
		return renderExperiment(b, ex, f, st, humanAge(time.Now()))
	})
}

// show draws once, or — with follow — again on every change in the
// namespace of the kinds the trees show.
func show(ctx context.Context, out io.Writer, flags *genericclioptions.ConfigFlags, follow, tty bool, drawTo func(*session, *strings.Builder, style) error) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	st := style{fancy: tty}
	draw := func() error {
		var b strings.Builder
		if err := drawTo(s, &b, st); err != nil {
			return err
		}
		frame := b.String()
		switch {
		case follow && tty:
			frame = "\033[H\033[2J" + frame // clear the screen, draw from the top
		case follow:
			frame += "\n"
		}
		_, err = io.WriteString(out, frame)
		return err
	}
	if err := draw(); err != nil || !follow {
		return err
	}
	changes, stop, err := s.watchFamily(ctx)
	if err != nil {
		return err
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
			// Let a burst of changes (a scale-up, a status write) settle
			// into one redraw.
			debounce(changes, 100*time.Millisecond)
			if err := draw(); err != nil {
				return err
			}
		}
	}
}

// watchFamily watches the kinds a Rollout's tree shows, in its namespace,
// and signals every change. stop ends the watches.
func (s *session) watchFamily(ctx context.Context) (<-chan struct{}, func(), error) {
	changes := make(chan struct{}, 1)
	var watches []watch.Interface
	stop := func() {
		for _, w := range watches {
			w.Stop()
		}
	}
	lists := []client.ObjectList{&v1alpha1.RolloutList{}, &appsv1.ReplicaSetList{}, &corev1.PodList{}, &v1alpha1.AnalysisRunList{}, &v1alpha1.ExperimentList{}}
	for _, list := range lists {
		w, err := s.client.Watch(ctx, list, client.InNamespace(s.namespace))
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("watching: %w", err)
		}
		watches = append(watches, w)
		go func() {
			for range w.ResultChan() {
				select {
				case changes <- struct{}{}:
				default: // a redraw is already due
				}
			}
		}()
	}
	return changes, stop, nil
}

// debounce waits until no change came for quiet.
func debounce(changes <-chan struct{}, quiet time.Duration) {
	for {
		select {
		case <-changes:
		case <-time.After(quiet):
			return
		}
	}
}
