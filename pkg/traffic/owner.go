package traffic

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// One owner (DESIGN §13): a routing object a Rollout writes to names it in
// v1alpha1.ManagedByAnnotation, and another Rollout naming the object is
// refused, so two Rollouts never fight over its weights.

// Owner returns the Rollout obj's annotation names, or "".
func Owner(obj client.Object) string {
	return obj.GetAnnotations()[v1alpha1.ManagedByAnnotation]
}

// OwnedByOther reports whether obj names a Rollout other than rollout.
func OwnedByOther(obj client.Object, rollout string) bool {
	owner := Owner(obj)
	return owner != "" && owner != rollout
}

// CheckOwner returns an *InvalidError when obj (a kind) names a Rollout
// other than rollout.
func CheckOwner(kind string, obj client.Object, rollout string) error {
	if OwnedByOther(obj, rollout) {
		return Invalid("%s %q is managed by Rollout %q; a route can belong to one Rollout only", kind, obj.GetName(), Owner(obj))
	}
	return nil
}

// Claim returns the operations that a patch of obj (as read) carries so that
// it names rollout: a test that it still does, or, unclaimed, the annotation
// with a test of the resourceVersion, so two Rollouts cannot both claim it.
// Another Rollout's object is an *InvalidError.
func Claim(kind string, obj client.Object, rollout string) ([]jsonpatch.Op, error) {
	if err := CheckOwner(kind, obj, rollout); err != nil {
		return nil, err
	}
	if Owner(obj) == rollout {
		return []jsonpatch.Op{jsonpatch.TestAnnotation(obj, v1alpha1.ManagedByAnnotation)}, nil
	}
	return jsonpatch.SetAnnotation(obj, v1alpha1.ManagedByAnnotation, rollout), nil
}

// Unclaim returns the operations that drop rollout's claim on obj (as
// read); none when obj does not name it.
func Unclaim(obj client.Object, rollout string) []jsonpatch.Op {
	if Owner(obj) != rollout {
		return nil
	}
	return jsonpatch.RemoveAnnotation(obj, v1alpha1.ManagedByAnnotation)
}

// SpecPatch returns the patch of a write to a user-owned object: the
// changes from before's spec to after's, the claim of before for rollout,
// and a test of the resourceVersion when something is added. It is empty
// when the spec did not change.
func SpecPatch(kind string, before, after client.Object, rollout string, opts ...jsonpatch.Option) ([]jsonpatch.Op, error) {
	spec, err := jsonpatch.Diff(before, after, "/spec", opts...)
	if err != nil || len(spec) == 0 {
		return nil, err
	}
	claim, err := Claim(kind, before, rollout)
	if err != nil {
		return nil, err
	}
	return jsonpatch.Guard(append(claim, spec...), jsonpatch.TestResourceVersion(before)), nil
}

// ReleasePatch returns the patch that gives a user-owned object back: the
// changes from before's spec to after's and the end of rollout's claim.
func ReleasePatch(before, after client.Object, rollout string, opts ...jsonpatch.Option) ([]jsonpatch.Op, error) {
	spec, err := jsonpatch.Diff(before, after, "/spec", opts...)
	if err != nil {
		return nil, err
	}
	return jsonpatch.Guard(append(Unclaim(before, rollout), spec...), jsonpatch.TestResourceVersion(before)), nil
}
