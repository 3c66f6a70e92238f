package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Ephemeral metadata (DESIGN §13): labels and annotations that say which
// role a revision's pods play. They sit in the pod template of the
// ReplicaSet, so new pods are born with them, and on its running pods,
// which are patched in place when the role changes: no pod restarts.
//
// Each template and pod carries, in EphemeralMetadataAnnotation, a record of
// the ephemeral keys the controller put there. A change removes exactly the
// recorded keys the new role lacks, and never touches a key that is there
// without being recorded: the template's own labels win.

// PodRole is the role of a revision's pods, which decides their ephemeral
// metadata.
type PodRole string

// Pod roles: canary and stable for the canary strategy, preview and active
// for blue-green.
const (
	RoleCanary  PodRole = "canary"
	RoleStable  PodRole = "stable"
	RolePreview PodRole = "preview"
	RoleActive  PodRole = "active"
)

// MetadataTarget is what a MetadataChange patches.
type MetadataTarget string

// Targets of a MetadataChange: the pod template of a ReplicaSet, or a pod.
const (
	TargetReplicaSet MetadataTarget = "ReplicaSet"
	TargetPod        MetadataTarget = "Pod"
)

// MetadataChange makes the pod template of a ReplicaSet, or a pod, carry
// the ephemeral metadata of its role, in place: a merge patch of these
// label and annotation keys, where nil removes a key.
type MetadataChange struct {
	Target MetadataTarget
	Name   string
	// Role is why: the metadata is that role's.
	Role                PodRole
	Labels, Annotations map[string]*string
}

// String reads like "pod web-abc-1 stable: role=stable -track".
func (c MetadataChange) String() string {
	parts := []string{strings.ToLower(string(c.Target)), c.Name, string(c.Role) + ":"}
	for _, m := range []map[string]*string{c.Labels, c.Annotations} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			switch {
			case k == v1alpha1.EphemeralMetadataAnnotation:
				// The record follows from the rest.
			case m[k] == nil:
				parts = append(parts, "-"+k)
			default:
				parts = append(parts, k+"="+*m[k])
			}
		}
	}
	return strings.Join(parts, " ")
}

// roleMetadata is the role of a revision's pods and the metadata it wants
// (nil: none, and whatever was recorded goes).
type roleMetadata struct {
	role PodRole
	want *v1alpha1.PodMetadata
}

// podRoles gives the revisions that have a role, by hash, as the plan
// leaves them: for a canary the stable revision and, during an update, the
// current one (also when aborted); for blue-green the revision the active
// Service selects and, when that is another, the current one. Any other
// revision keeps what it has until it is scaled down.
func podRoles(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, current string) map[string]roleMetadata {
	out := map[string]roleMetadata{}
	switch {
	case ro.Spec.Strategy.Canary != nil:
		c := ro.Spec.Strategy.Canary
		out[current] = roleMetadata{RoleCanary, c.CanaryMetadata}
		if st.StableRS != "" {
			out[st.StableRS] = roleMetadata{RoleStable, c.StableMetadata}
		}
	case ro.Spec.Strategy.BlueGreen != nil:
		bg := ro.Spec.Strategy.BlueGreen
		out[current] = roleMetadata{RolePreview, bg.PreviewMetadata}
		active := st.BlueGreen.ActiveSelector
		if active == "" {
			active = st.StableRS
		}
		if active != "" {
			out[active] = roleMetadata{RoleActive, bg.ActiveMetadata}
		}
	}
	return out
}

// usesEphemeralMetadata says whether the controller must read the pods of
// a Rollout for their metadata: when the strategy asks for some, or when a
// ReplicaSet with pods still carries some that may have to go.
func usesEphemeralMetadata(ro *v1alpha1.Rollout, rss []*appsv1.ReplicaSet) bool {
	if c := ro.Spec.Strategy.Canary; c != nil && (c.CanaryMetadata != nil || c.StableMetadata != nil) {
		return true
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil && (bg.ActiveMetadata != nil || bg.PreviewMetadata != nil) {
		return true
	}
	for _, rs := range rss {
		if _, ok := rs.Spec.Template.Annotations[v1alpha1.EphemeralMetadataAnnotation]; ok && (rs.Status.Replicas > 0 || ptr.Deref(rs.Spec.Replicas, 1) > 0) {
			return true
		}
	}
	return false
}

// planMetadata decides which ReplicaSet templates and pods need their
// ephemeral metadata changed. The ReplicaSet the plan creates gets its
// metadata in its template right away.
func planMetadata(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, w *world, pods []*corev1.Pod, create *appsv1.ReplicaSet) []MetadataChange {
	roles := podRoles(ro, st, w.hash)
	var out []MetadataChange
	for _, rs := range w.all {
		r, ok := roles[rs.hash]
		if !ok {
			continue
		}
		if rs.planned {
			if create != nil && create.Name == rs.name {
				tmpl := &create.Spec.Template.ObjectMeta
				l, a := metadataPatch(tmpl.Labels, tmpl.Annotations, r.want)
				tmpl.Labels, tmpl.Annotations = patched(tmpl.Labels, l), patched(tmpl.Annotations, a)
			}
			continue
		}
		if rs.template != nil {
			if l, a := metadataPatch(rs.template.Labels, rs.template.Annotations, r.want); l != nil || a != nil {
				out = append(out, MetadataChange{Target: TargetReplicaSet, Name: rs.name, Role: r.role, Labels: l, Annotations: a})
			}
		}
	}
	sorted := slices.Clone(pods)
	slices.SortFunc(sorted, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for _, pod := range sorted {
		r, ok := roles[pod.Labels[v1alpha1.PodTemplateHashLabel]]
		if !ok || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		if l, a := metadataPatch(pod.Labels, pod.Annotations, r.want); l != nil || a != nil {
			out = append(out, MetadataChange{Target: TargetPod, Name: pod.Name, Role: r.role, Labels: l, Annotations: a})
		}
	}
	return out
}

// metadataPatch returns the label and annotation changes (nil when none)
// that make an object with these labels and annotations carry want instead
// of the ephemeral metadata it has on record.
func metadataPatch(labels, annotations map[string]string, want *v1alpha1.PodMetadata) (l, a map[string]*string) {
	if want == nil {
		want = &v1alpha1.PodMetadata{}
	}
	rec := recorded(annotations)
	var applied v1alpha1.PodMetadata
	l, applied.Labels = keyPatch(labels, rec.Labels, want.Labels)
	a, applied.Annotations = keyPatch(annotations, rec.Annotations, want.Annotations)
	if record := encodeRecord(applied); annotations[v1alpha1.EphemeralMetadataAnnotation] != record {
		if a == nil {
			a = map[string]*string{}
		}
		a[v1alpha1.EphemeralMetadataAnnotation] = nil
		if record != "" {
			a[v1alpha1.EphemeralMetadataAnnotation] = &record
		}
	}
	return l, a
}

// keyPatch: the wanted keys are set, except one the object has without a
// record of it (the template's own); recorded keys no longer wanted go.
// It also returns the keys that are ephemeral afterwards.
func keyPatch(have, rec, want map[string]string) (patch map[string]*string, applied map[string]string) {
	set := func(k string, v *string) {
		if patch == nil {
			patch = map[string]*string{}
		}
		patch[k] = v
	}
	for k, v := range want {
		cur, present := have[k]
		if _, ours := rec[k]; present && !ours {
			continue
		}
		if applied == nil {
			applied = map[string]string{}
		}
		applied[k] = v
		if !present || cur != v {
			set(k, &v)
		}
	}
	for k := range rec {
		if _, keep := applied[k]; keep {
			continue
		}
		if _, present := have[k]; present {
			set(k, nil)
		}
	}
	return patch, applied
}

// recorded reads the record of the ephemeral metadata an object carries; an
// unreadable one counts as none.
func recorded(annotations map[string]string) v1alpha1.PodMetadata {
	var m v1alpha1.PodMetadata
	if v, ok := annotations[v1alpha1.EphemeralMetadataAnnotation]; ok {
		_ = json.Unmarshal([]byte(v), &m)
	}
	return m
}

// encodeRecord is the record of m: JSON with sorted keys, "" when empty.
func encodeRecord(m v1alpha1.PodMetadata) string {
	if len(m.Labels) == 0 && len(m.Annotations) == 0 {
		return ""
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // maps of strings always encode
	}
	return string(b)
}

// patched is m with the changes of a merge patch applied (a copy; m may be
// shared with a cached object).
func patched(m map[string]string, patch map[string]*string) map[string]string {
	if patch == nil {
		return m
	}
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}

// withoutEphemeral removes from a ReplicaSet's pod template the ephemeral
// metadata on record, leaving the template the revision was made from.
func withoutEphemeral(tmpl *corev1.PodTemplateSpec) {
	if _, ok := tmpl.Annotations[v1alpha1.EphemeralMetadataAnnotation]; !ok {
		return
	}
	rec := recorded(tmpl.Annotations)
	for k := range rec.Labels {
		delete(tmpl.Labels, k)
	}
	for k := range rec.Annotations {
		delete(tmpl.Annotations, k)
	}
	delete(tmpl.Annotations, v1alpha1.EphemeralMetadataAnnotation)
	if len(tmpl.Annotations) == 0 {
		tmpl.Annotations = nil
	}
}

// relabel carries out the plan's metadata changes of one target kind, each
// a merge patch of exactly the keys it changes. ReplicaSet templates go
// before scaling, so new pods are born right; pods go last, so that a
// failing pod patch holds up nothing else. A pod gone meanwhile is skipped.
func (r *Reconciler) relabel(ctx context.Context, ro *v1alpha1.Rollout, changes []MetadataChange, target MetadataTarget) error {
	for _, c := range changes {
		if c.Target != target {
			continue
		}
		meta := map[string]any{}
		if c.Labels != nil {
			meta["labels"] = c.Labels
		}
		if c.Annotations != nil {
			meta["annotations"] = c.Annotations
		}
		var obj client.Object
		var body map[string]any
		om := metav1.ObjectMeta{Namespace: ro.Namespace, Name: c.Name}
		switch c.Target {
		case TargetReplicaSet:
			obj, body = &appsv1.ReplicaSet{ObjectMeta: om}, map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": meta}}}
		case TargetPod:
			obj, body = &corev1.Pod{ObjectMeta: om}, map[string]any{"metadata": meta}
		default:
			return fmt.Errorf("metadata change of %s %s: unknown target", c.Target, c.Name)
		}
		patch, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding metadata patch of %s %s: %w", c.Target, c.Name, err)
		}
		log.FromContext(ctx).Info("Setting ephemeral metadata", "kind", c.Target, "name", c.Name, "role", c.Role, "change", c.String())
		err = r.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(v1alpha1.FieldManager))
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("setting ephemeral metadata of %s %s: %w", strings.ToLower(string(c.Target)), c.Name, err)
		}
	}
	return nil
}
