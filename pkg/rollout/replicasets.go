package rollout

import (
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// rsView is what the planner knows of one ReplicaSet.
type rsView struct {
	name      string
	hash      string
	revision  int64
	spec      int32 // spec.replicas
	current   int32 // status.replicas: pods that exist
	ready     int32
	available int32
	// stale: the status predates the last scale (the ReplicaSet controller
	// has not seen it yet), so the pods it counts may be going.
	stale   bool
	orphan  bool // no controller owner yet: to be adopted
	planned bool // does not exist yet: the plan creates it
	// scaleDownAt is when a ReplicaSet kept after a switch or an abort is
	// scaled down; nil when no delay is running.
	scaleDownAt *time.Time
	// template is the ReplicaSet's pod template (nil while planned).
	template *corev1.PodTemplateSpec
	version  string // resourceVersion
	// stepsDone is the steps hash of the StepsDoneAnnotation (empty: none);
	// annotated: the ReplicaSet has annotations a patch can add to.
	stepsDone string
	annotated bool
}

// serving is how many pods may take traffic or finish a step: the available
// ones up to spec.replicas (those above it are being removed: a scale-down
// the ReplicaSet controller has seen but not carried out yet), and none while
// the status is stale (a scale to 0 and back within the ReplicaSet
// controller's lag leaves it counting pods that are going). Scale arithmetic
// keeps the status as it is: counting pods unavailable would let them be
// removed for free.
func (rs *rsView) serving() int32 {
	if rs.stale {
		return 0
	}
	return min(rs.available, rs.spec)
}

// delayed reports whether the ReplicaSet is waiting out a scale-down delay.
func (rs *rsView) delayed(now time.Time) bool {
	return rs.scaleDownAt != nil && now.Before(*rs.scaleDownAt)
}

func viewOf(rs *appsv1.ReplicaSet, owner metav1.Object) rsView {
	rev, _ := strconv.ParseInt(rs.Annotations[v1alpha1.RevisionAnnotation], 10, 64)
	var scaleDownAt *time.Time
	if v, ok := rs.Annotations[v1alpha1.ScaleDownDeadlineAnnotation]; ok {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			scaleDownAt = &t
		}
	}
	return rsView{
		scaleDownAt: scaleDownAt,
		stepsDone:   rs.Annotations[v1alpha1.StepsDoneAnnotation],
		annotated:   rs.Annotations != nil,
		template:    &rs.Spec.Template,
		version:     rs.ResourceVersion,
		name:        rs.Name,
		hash:        rs.Labels[v1alpha1.PodTemplateHashLabel],
		revision:    rev,
		spec:        ptr.Deref(rs.Spec.Replicas, 1),
		current:     rs.Status.Replicas,
		ready:       rs.Status.ReadyReplicas,
		available:   rs.Status.AvailableReplicas,
		stale:       rs.Status.ObservedGeneration < rs.Generation,
		orphan:      metav1.GetControllerOf(rs) == nil || metav1.GetControllerOf(rs).UID != owner.GetUID(),
	}
}

// replicaSetName is <rollout>-<hash>.
func replicaSetName(rollout, hash string) string { return rollout + "-" + hash }

// newReplicaSet builds the ReplicaSet of the current template: the hash label
// on the ReplicaSet, its selector and its pods, a controller reference to the
// Rollout, the revision annotation, and anti-affinity against the stable pods
// when the strategy asks for it.
func newReplicaSet(ro *v1alpha1.Rollout, hash, stableHash string, replicas int32, revision int64) *appsv1.ReplicaSet {
	tmpl := ro.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[v1alpha1.PodTemplateHashLabel] = hash
	if stableHash != "" && stableHash != hash {
		applyAntiAffinity(antiAffinityOf(ro), stableHash, &tmpl.Spec)
	}

	selector := ro.Spec.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[v1alpha1.PodTemplateHashLabel] = hash

	labels := map[string]string{v1alpha1.PodTemplateHashLabel: hash}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:        replicaSetName(ro.Name, hash),
			Namespace:   ro.Namespace,
			Labels:      labels,
			Annotations: map[string]string{v1alpha1.RevisionAnnotation: strconv.FormatInt(revision, 10)},
			OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout")),
			},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        ptr.To(replicas),
			MinReadySeconds: ro.Spec.MinReadySeconds,
			Selector:        selector,
			Template:        *tmpl,
		},
	}
}

// maxRevision is the highest revision among the ReplicaSets.
func maxRevision(rss []rsView) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, rs.revision)
	}
	return m
}

// historyToDelete picks the old ReplicaSets beyond revisionHistoryLimit: those
// with no pods and no desired pods, oldest revision first. The stable and the
// current ReplicaSets are never picked.
func historyToDelete(rss []rsView, keep int32, stableHash, currentHash string) []string {
	var idle []rsView
	for _, rs := range rss {
		if rs.hash == stableHash || rs.hash == currentHash || rs.orphan {
			continue
		}
		if rs.spec == 0 && rs.current == 0 {
			idle = append(idle, rs)
		}
	}
	if int32(len(idle)) <= keep {
		return nil
	}
	sort.Slice(idle, func(i, j int) bool {
		if idle[i].revision != idle[j].revision {
			return idle[i].revision < idle[j].revision
		}
		return idle[i].name < idle[j].name
	})
	var names []string
	for _, rs := range idle[:int32(len(idle))-keep] {
		names = append(names, rs.name)
	}
	return names
}

func antiAffinityOf(ro *v1alpha1.Rollout) *v1alpha1.AntiAffinity {
	switch {
	case ro.Spec.Strategy.Canary != nil:
		return ro.Spec.Strategy.Canary.AntiAffinity
	case ro.Spec.Strategy.BlueGreen != nil:
		return ro.Spec.Strategy.BlueGreen.AntiAffinity
	}
	return nil
}

// applyAntiAffinity keeps new pods off the nodes of the stable pods, so a
// node-level problem of the new version shows up on its own nodes.
func applyAntiAffinity(aa *v1alpha1.AntiAffinity, stableHash string, spec *corev1.PodSpec) {
	if aa == nil {
		return
	}
	term := corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.PodTemplateHashLabel: stableHash}},
		TopologyKey:   corev1.LabelHostname,
	}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.PodAntiAffinity == nil {
		spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	paa := spec.Affinity.PodAntiAffinity
	if p := aa.PreferredDuringSchedulingIgnoredDuringExecution; p != nil {
		paa.PreferredDuringSchedulingIgnoredDuringExecution = append(paa.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: p.Weight, PodAffinityTerm: term})
	}
	if aa.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		paa.RequiredDuringSchedulingIgnoredDuringExecution = append(paa.RequiredDuringSchedulingIgnoredDuringExecution, term)
	}
}

// RevisionTemplate is the pod template a Rollout holds for the revision the
// ReplicaSet runs: the ReplicaSet's template without what the controller added
// to it (the pod-template-hash label, the ephemeral metadata and the
// anti-affinity term against the stable pods). The API server's defaults
// stay: a Rollout whose template is exactly this is recognised as running
// that revision, which is how `undo` goes back to a ReplicaSet instead of
// creating a copy of it.
func RevisionTemplate(rs *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	tmpl := rs.DeepCopy()
	delete(tmpl.Labels, v1alpha1.PodTemplateHashLabel)
	withoutEphemeral(tmpl)
	a := tmpl.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return tmpl
	}
	paa := a.PodAntiAffinity
	paa.RequiredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(paa.RequiredDuringSchedulingIgnoredDuringExecution, addedTerm)
	paa.PreferredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(paa.PreferredDuringSchedulingIgnoredDuringExecution,
		func(t corev1.WeightedPodAffinityTerm) bool { return addedTerm(t.PodAffinityTerm) })
	if len(paa.RequiredDuringSchedulingIgnoredDuringExecution) == 0 && len(paa.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		a.PodAntiAffinity = nil
		if a.NodeAffinity == nil && a.PodAffinity == nil {
			tmpl.Spec.Affinity = nil
		}
	}
	return tmpl
}

// addedTerm reports whether an anti-affinity term is the one applyAntiAffinity
// adds.
func addedTerm(t corev1.PodAffinityTerm) bool {
	s := t.LabelSelector
	_, ok := s.MatchLabels[v1alpha1.PodTemplateHashLabel]
	return ok && len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0 && t.TopologyKey == corev1.LabelHostname &&
		len(t.Namespaces) == 0 && t.NamespaceSelector == nil && len(t.MatchLabelKeys) == 0 && len(t.MismatchLabelKeys) == 0
}

// revisionOf finds the ReplicaSet that runs the Rollout's template when none
// carries its hash: one whose RevisionTemplate equals the template.
func revisionOf(rss []rsView, tmpl *corev1.PodTemplateSpec) (string, bool) {
	for _, rs := range rss {
		if rs.template != nil && equality.Semantic.DeepEqual(RevisionTemplate(rs.template), tmpl) {
			return rs.hash, true
		}
	}
	return "", false
}
