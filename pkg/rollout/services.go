package rollout

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// serviceChanges lists the Services whose selector must change to select the
// pods of the wanted hash (by Service name), or that the Rollout has not
// claimed yet. The hash label is injected next to the user's own selector
// labels.
func serviceChanges(ro *v1alpha1.Rollout, services map[string]*corev1.Service, want map[string]string) []ServiceChange {
	var out []ServiceChange
	for name, hash := range want {
		if name == "" || hash == "" {
			continue
		}
		svc := services[name]
		if svc == nil {
			continue
		}
		claimed := svc.Annotations[v1alpha1.ManagedByAnnotation] == ro.Name
		if svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] == hash && claimed {
			continue
		}
		out = append(out, ServiceChange{Name: name, Hash: hash, Patch: selectHash(ro, svc, hash)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// selectHash returns the JSON patch that points svc (as read) at hash and
// marks it as ro's: a changed selector value is tested and replaced; a key
// or an annotation added has nothing to test, so the patch then tests the
// resourceVersion read, which also makes a first claim safe against
// another Rollout claiming it at the same time.
func selectHash(ro *v1alpha1.Rollout, svc *corev1.Service, hash string) []jsonpatch.Op {
	// The claim goes first: when it adds the annotation, its test of the
	// resourceVersion read heads the patch.
	ops := jsonpatch.SetAnnotation(svc, v1alpha1.ManagedByAnnotation, ro.Name)
	if ops == nil {
		ops = []jsonpatch.Op{jsonpatch.TestAnnotation(svc, v1alpha1.ManagedByAnnotation)}
	}
	path := jsonpatch.Pointer("spec", "selector", v1alpha1.PodTemplateHashLabel)
	switch old, ok := svc.Spec.Selector[v1alpha1.PodTemplateHashLabel]; {
	case ok && old == hash:
	case ok:
		ops = append(ops, jsonpatch.String(jsonpatch.Test, path, old), jsonpatch.String(jsonpatch.Replace, path, hash))
	case svc.Spec.Selector == nil:
		ops = append(ops, jsonpatch.Op{Op: jsonpatch.Add, Path: "/spec/selector", Value: []byte("{}")}, jsonpatch.String(jsonpatch.Add, path, hash))
	default:
		ops = append(ops, jsonpatch.String(jsonpatch.Add, path, hash))
	}
	return jsonpatch.Guard(ops, jsonpatch.TestResourceVersion(svc))
}

// serviceOwner returns the other Rollout that manages svc, or "".
func serviceOwner(ro *v1alpha1.Rollout, svc *corev1.Service) string {
	if owner := svc.Annotations[v1alpha1.ManagedByAnnotation]; owner != ro.Name {
		return owner
	}
	return ""
}
