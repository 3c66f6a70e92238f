package rollout

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// invalidSpec checks what admission cannot: objects the spec names and rules
// too costly for CEL. A non-empty message stops the plan before it changes
// anything.
func invalidSpec(in Input) string {
	ro := in.Rollout
	// Admission refuses such names; a Rollout stored before it did must not
	// create objects whose derived names are too long.
	if errs := v1alpha1.ValidateRolloutName(ro.Name); len(errs) > 0 {
		return errs[0].Error()
	}
	if ro.Spec.Template == nil {
		return "spec.template is missing"
	}
	sel, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
	if err != nil {
		return fmt.Sprintf("spec.selector is invalid: %v", err)
	}
	if sel.Empty() {
		return "spec.selector must not be empty"
	}
	if !sel.Matches(labels.Set(ro.Spec.Template.Labels)) {
		return fmt.Sprintf("spec.selector %q does not match the labels of spec.template", sel.String())
	}
	if errs := v1alpha1.ValidateEphemeralMetadata(&ro.Spec); len(errs) > 0 {
		return errs[0].Error()
	}
	for _, ref := range templateRefs(ro) {
		if ref.clusterScope {
			if msg := analysis.ClusterScopeRefused(in.WatchNamespace, ref.field, ref.name); msg != "" {
				return msg
			}
		}
	}
	for _, ref := range serviceRefs(ro) {
		svc, ok := in.Services[ref.name]
		if !ok {
			return fmt.Sprintf("Service %q named in %s was not found in namespace %s", ref.name, ref.field, ro.Namespace)
		}
		if other := serviceOwner(ro, svc); other != "" {
			return fmt.Sprintf("Service %q named in %s is managed by Rollout %q; a Service can belong to one Rollout only", ref.name, ref.field, other)
		}
	}
	return ""
}

type templateRef struct {
	field, name  string
	clusterScope bool
}

// templateRefs lists the analysis templates the strategy names, with the
// field of each: analyses the Rollout runs and those of its experiments.
func templateRefs(ro *v1alpha1.Rollout) []templateRef {
	var refs []templateRef
	for _, a := range analysesOf(ro) {
		for i, t := range a.analysis.Templates {
			refs = append(refs, templateRef{fmt.Sprintf("%s.templates[%d]", a.field, i), t.TemplateName, t.ClusterScope})
		}
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		for i, step := range c.Steps {
			if step.Experiment == nil {
				continue
			}
			for j, a := range step.Experiment.Analyses {
				refs = append(refs, templateRef{fmt.Sprintf("spec.strategy.canary.steps[%d].experiment.analyses[%d]", i, j), a.TemplateName, a.ClusterScope})
			}
		}
	}
	return refs
}

type serviceRef struct{ field, name string }

// serviceRefs lists the Services the strategy names.
func serviceRefs(ro *v1alpha1.Rollout) []serviceRef {
	var refs []serviceRef
	add := func(field, name string) {
		if name != "" {
			refs = append(refs, serviceRef{field, name})
		}
	}
	if c := ro.Spec.Strategy.Canary; c != nil {
		add("spec.strategy.canary.canaryService", c.CanaryService)
		add("spec.strategy.canary.stableService", c.StableService)
	}
	if b := ro.Spec.Strategy.BlueGreen; b != nil {
		add("spec.strategy.blueGreen.activeService", b.ActiveService)
		add("spec.strategy.blueGreen.previewService", b.PreviewService)
	}
	return refs
}
