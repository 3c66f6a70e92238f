package analysis

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// FieldOf reads the field of an arg's valueFrom.fieldRef from the object
// that starts the run: metadata.name, metadata.namespace,
// metadata.labels['k'] or metadata.annotations['k'].
func FieldOf(obj metav1.Object, path string) (string, error) {
	switch path {
	case "metadata.name":
		return obj.GetName(), nil
	case "metadata.namespace":
		return obj.GetNamespace(), nil
	}
	if key, ok := mapKey(path, "metadata.labels"); ok {
		return obj.GetLabels()[key], nil
	}
	if key, ok := mapKey(path, "metadata.annotations"); ok {
		return obj.GetAnnotations()[key], nil
	}
	return "", fmt.Errorf("fieldRef %q: only metadata.name, metadata.namespace, metadata.labels['k'] and metadata.annotations['k'] are supported", path)
}

// mapKey extracts k from field['k'].
func mapKey(path, field string) (string, bool) {
	rest, ok := strings.CutPrefix(path, field+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

// TemplateKey names a referenced template in a map of templates;
// cluster-scoped ones are apart.
func TemplateKey(ref v1alpha1.AnalysisTemplateRef) string {
	if ref.ClusterScope {
		return "cluster/" + ref.TemplateName
	}
	return ref.TemplateName
}

// ClusterScopeRefused is the user-facing problem of a clusterScope
// reference, at field, to the ClusterAnalysisTemplate name, when the
// controller watches only watchNamespace (namespaced mode): its Role cannot
// read cluster-scoped objects. Empty in cluster mode (watchNamespace "").
func ClusterScopeRefused(watchNamespace, field, name string) string {
	if watchNamespace == "" {
		return ""
	}
	return fmt.Sprintf("%s refers to ClusterAnalysisTemplate %q, but the controller runs namespaced (--namespace=%s) and cannot read cluster-scoped templates", field, name, watchNamespace)
}

// FetchTemplates reads the templates refs name into templates, by
// TemplateKey; a missing template is left out. A controller that watches
// only watchNamespace leaves out clusterScope references without reading:
// they are refused (ClusterScopeRefused), and a read would wait for a
// cluster-wide cache that its Role cannot fill.
func FetchTemplates(ctx context.Context, c client.Reader, watchNamespace, namespace string, refs []v1alpha1.AnalysisTemplateRef, templates map[string]*v1alpha1.AnalysisTemplateSpec) error {
	for _, ref := range refs {
		key := TemplateKey(ref)
		if _, done := templates[key]; done || (ref.ClusterScope && watchNamespace != "") {
			continue
		}
		var err error
		if ref.ClusterScope {
			var t v1alpha1.ClusterAnalysisTemplate
			if err = c.Get(ctx, types.NamespacedName{Name: ref.TemplateName}, &t); err == nil {
				templates[key] = &t.Spec
			}
		} else {
			var t v1alpha1.AnalysisTemplate
			if err = c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.TemplateName}, &t); err == nil {
				templates[key] = &t.Spec
			}
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("getting analysis template %s: %w", ref.TemplateName, err)
		}
	}
	return nil
}

// TemplateSpecs looks up the templates refs name, in order.
func TemplateSpecs(refs []v1alpha1.AnalysisTemplateRef, templates map[string]*v1alpha1.AnalysisTemplateSpec) ([]v1alpha1.AnalysisTemplateSpec, error) {
	specs := make([]v1alpha1.AnalysisTemplateSpec, 0, len(refs))
	for _, ref := range refs {
		t, ok := templates[TemplateKey(ref)]
		if !ok || t == nil {
			kind := "AnalysisTemplate"
			if ref.ClusterScope {
				kind = "ClusterAnalysisTemplate"
			}
			return nil, fmt.Errorf("%s %q was not found", kind, ref.TemplateName)
		}
		specs = append(specs, *t)
	}
	return specs, nil
}
