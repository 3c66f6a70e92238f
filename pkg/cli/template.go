package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/rollout"
)

func newSetCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	set := &cobra.Command{Use: "set", Short: "Change a Rollout's template"}
	set.AddCommand(&cobra.Command{
		Use:   "image NAME CONTAINER=IMAGE [CONTAINER=IMAGE...]",
		Short: "Change container images: a new revision, released by the strategy",
		Long: `set image changes the image of one or more containers (init containers
included) of the Rollout's pod template — or of the Deployment its workloadRef
names. The controller releases the new revision through the strategy.`,
		Example: `  kubectl rollouts set image checkout app=registry.example/checkout:1.2.0
  kubectl rollouts set image checkout app=checkout:1.2.0 sidecar=proxy:2.0`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			images := map[string]string{}
			for _, pair := range args[1:] {
				name, image, ok := strings.Cut(pair, "=")
				if !ok || name == "" || image == "" {
					return fmt.Errorf("%q is not CONTAINER=IMAGE", pair)
				}
				images[name] = image
			}
			return setImages(cmd.Context(), streams, flags, args[0], images)
		},
	})
	return set
}

func setImages(ctx context.Context, streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, name string, images map[string]string) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	ro, err := s.rollout(ctx, name)
	if err != nil {
		return err
	}
	var tmpl *corev1.PodTemplateSpec
	var obj client.Object
	target := fmt.Sprintf("rollout %q", name)
	switch {
	case ro.Spec.WorkloadRef != nil:
		var d appsv1.Deployment
		if err := s.client.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: ro.Spec.WorkloadRef.Name}, &d); err != nil {
			return fmt.Errorf("getting the Deployment %s of workloadRef: %w", ro.Spec.WorkloadRef.Name, err)
		}
		tmpl, obj, target = &d.Spec.Template, &d, fmt.Sprintf("deployment %q (workloadRef of rollout %q)", d.Name, name)
	case ro.Spec.Template != nil:
		tmpl, obj = ro.Spec.Template, ro
	default:
		return fmt.Errorf("rollout %q has no template", name)
	}
	orig := obj.DeepCopyObject().(client.Object)
	for container, image := range images {
		if !setImage(tmpl, container, image) {
			var names []string
			for _, c := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
				names = append(names, c.Name)
			}
			return fmt.Errorf("%s has no container %q (containers: %s)", target, container, strings.Join(names, ", "))
		}
	}
	if err := s.client.Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patching %s: %w", target, err)
	}
	var changes []string
	for container, image := range images {
		changes = append(changes, container+"="+image)
	}
	slices.Sort(changes)
	_, err = fmt.Fprintf(streams.Out, "%s image updated: %s\n", target, strings.Join(changes, " "))
	return err
}

func setImage(tmpl *corev1.PodTemplateSpec, container, image string) bool {
	for _, list := range [][]corev1.Container{tmpl.Spec.InitContainers, tmpl.Spec.Containers} {
		for i := range list {
			if list[i].Name == container {
				list[i].Image = image
				return true
			}
		}
	}
	return false
}

func newUndoCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:   "undo NAME",
		Short: "Go back to an earlier revision's template",
		Long: `undo puts the pod template of an earlier revision back into the Rollout:
the previous one by default, or the one --to-revision names (the revisions are
the ReplicaSets the Rollout keeps, see revisionHistoryLimit). Going back to the
stable revision skips the steps.`,
		Example: `  kubectl rollouts undo checkout
  kubectl rollouts undo checkout --to-revision 3`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return undo(cmd.Context(), streams, flags, args[0], toRevision)
		},
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "The revision to go back to (default: the one before the current).")
	return cmd
}

func undo(ctx context.Context, streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags, name string, toRevision int64) error {
	s, err := newSession(flags)
	if err != nil {
		return err
	}
	ro, err := s.rollout(ctx, name)
	if err != nil {
		return err
	}
	if ro.Spec.WorkloadRef != nil {
		return fmt.Errorf("rollout %q takes its template from Deployment %s (workloadRef): undo that Deployment instead", name, ro.Spec.WorkloadRef.Name)
	}
	revisions, err := s.revisions(ctx, ro)
	if err != nil {
		return err
	}
	current := revisionOf(revisions, ro.Status.CurrentPodHash)
	var target *appsv1.ReplicaSet
	switch {
	case toRevision > 0:
		for _, rs := range revisions {
			if revision(rs) == toRevision {
				target = rs
			}
		}
		if target == nil {
			return fmt.Errorf("rollout %q has no revision %d (revisions: %s)", name, toRevision, listRevisions(revisions))
		}
	default:
		for _, rs := range revisions { // newest first
			if revision(rs) < current {
				target = rs
				break
			}
		}
		if target == nil {
			return fmt.Errorf("rollout %q has no revision before the current one (%d) to go back to", name, current)
		}
	}
	if target.Labels[v1alpha1.PodTemplateHashLabel] == ro.Status.CurrentPodHash {
		return fmt.Errorf("rollout %q already runs revision %d", name, revision(target))
	}
	orig := ro.DeepCopy()
	ro.Spec.Template = rollout.RevisionTemplate(&target.Spec.Template)
	if err := s.client.Patch(ctx, ro, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patching rollout %s: %w", name, err)
	}
	_, err = fmt.Fprintf(streams.Out, "rollout %q rolled back to revision %d\n", name, revision(target))
	return err
}

// revisions lists the ReplicaSets a Rollout owns, newest revision first.
func (s *session) revisions(ctx context.Context, ro *v1alpha1.Rollout) ([]*appsv1.ReplicaSet, error) {
	var list appsv1.ReplicaSetList
	if err := s.client.List(ctx, &list, client.InNamespace(ro.Namespace)); err != nil {
		return nil, fmt.Errorf("listing replicasets: %w", err)
	}
	var out []*appsv1.ReplicaSet
	for i := range list.Items {
		if ref := metav1.GetControllerOf(&list.Items[i]); ref != nil && ref.UID == ro.UID {
			out = append(out, &list.Items[i])
		}
	}
	slices.SortFunc(out, func(a, b *appsv1.ReplicaSet) int { return int(revision(b) - revision(a)) })
	return out, nil
}

func revision(rs *appsv1.ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[v1alpha1.RevisionAnnotation], 10, 64)
	return n
}

func revisionOf(rss []*appsv1.ReplicaSet, hash string) int64 {
	for _, rs := range rss {
		if rs.Labels[v1alpha1.PodTemplateHashLabel] == hash {
			return revision(rs)
		}
	}
	return 0
}

func listRevisions(rss []*appsv1.ReplicaSet) string {
	if len(rss) == 0 {
		return "none"
	}
	var out []string
	for _, rs := range rss {
		out = append(out, strconv.FormatInt(revision(rs), 10))
	}
	return strings.Join(out, ", ")
}
