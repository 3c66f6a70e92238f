package v1alpha1

import (
	"sort"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateEphemeralMetadata checks the ephemeral metadata of a Rollout's
// strategy (canaryMetadata, stableMetadata, activeMetadata,
// previewMetadata): label and annotation keys and values must be valid; a
// label may not use a key of the selector, which would take relabelled pods
// out of their ReplicaSet, nor the pod-template-hash label; an annotation
// may not use the controller's record of what it added; and neither may
// use a key the pod template sets, which ephemeral metadata never
// overrides.
//
// The CRD's rules refuse what CEL can afford to check; the controller and
// `kubectl rollouts lint` call this for the rest (syntax, matchExpressions,
// the template, the selector and template of a workloadRef's Deployment,
// which the controller puts into spec first). Errors are sorted, so the
// first one is the same on every call.
func ValidateEphemeralMetadata(spec *RolloutSpec) field.ErrorList {
	reserved := map[string]string{PodTemplateHashLabel: "is the controller's own label"}
	if sel := spec.Selector; sel != nil {
		for k := range sel.MatchLabels {
			reserved[k] = "is a key of the Rollout's selector"
		}
		for _, e := range sel.MatchExpressions {
			reserved[e.Key] = "is a key of the Rollout's selector"
		}
	}
	var tmpl metav1.ObjectMeta
	if spec.Template != nil {
		tmpl = spec.Template.ObjectMeta
	}
	var errs field.ErrorList
	check := func(path *field.Path, m *PodMetadata) {
		if m == nil {
			return
		}
		errs = append(errs, metav1validation.ValidateLabels(m.Labels, path.Child("labels"))...)
		for k := range m.Labels {
			if why, ok := reserved[k]; ok {
				errs = append(errs, field.Forbidden(path.Child("labels").Key(k), why))
			} else if _, ok := tmpl.Labels[k]; ok {
				errs = append(errs, field.Forbidden(path.Child("labels").Key(k), "is set by the pod template"))
			}
		}
		errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, path.Child("annotations"))...)
		for k := range m.Annotations {
			if k == EphemeralMetadataAnnotation {
				errs = append(errs, field.Forbidden(path.Child("annotations").Key(k), "is the controller's record of the ephemeral metadata"))
			} else if _, ok := tmpl.Annotations[k]; ok {
				errs = append(errs, field.Forbidden(path.Child("annotations").Key(k), "is set by the pod template"))
			}
		}
	}
	path := field.NewPath("spec", "strategy")
	if c := spec.Strategy.Canary; c != nil {
		check(path.Child("canary", "canaryMetadata"), c.CanaryMetadata)
		check(path.Child("canary", "stableMetadata"), c.StableMetadata)
	}
	if b := spec.Strategy.BlueGreen; b != nil {
		check(path.Child("blueGreen", "activeMetadata"), b.ActiveMetadata)
		check(path.Child("blueGreen", "previewMetadata"), b.PreviewMetadata)
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}
