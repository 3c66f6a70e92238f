package rollout

import (
	"fmt"
	"hash/fnv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// RolloutLabel marks the AnalysisRuns of a Rollout.
const RolloutLabel = "rollouts.kubeseed.io/rollout"

// templateKey names a referenced template; cluster-scoped ones are apart.
func templateKey(ref v1alpha1.AnalysisTemplateRef) string {
	if ref.ClusterScope {
		return "cluster/" + ref.TemplateName
	}
	return ref.TemplateName
}

// stepRunName names the AnalysisRun of a canary step. A retry gets fresh
// runs: the suffix follows the last retry token.
func stepRunName(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, idx int) string {
	name := fmt.Sprintf("%s-%s-%d", ro.Name, st.CurrentPodHash, idx)
	if t := st.LastHandled.Retry; t != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(t))
		name += fmt.Sprintf("-r%x", h.Sum32()&0xffff)
	}
	return name
}

// newRun builds the AnalysisRun of an analysis from the templates the
// Rollout references, with its args resolved: podTemplateHashValue from the
// stable or current hash, fieldRef from the Rollout's metadata.
func newRun(ro *v1alpha1.Rollout, st *v1alpha1.RolloutStatus, a *v1alpha1.RolloutAnalysis, templates map[string]*v1alpha1.AnalysisTemplateSpec, name string) (*v1alpha1.AnalysisRun, error) {
	var specs []v1alpha1.AnalysisTemplateSpec
	for _, ref := range a.Templates {
		t, ok := templates[templateKey(ref)]
		if !ok || t == nil {
			kind := "AnalysisTemplate"
			if ref.ClusterScope {
				kind = "ClusterAnalysisTemplate"
			}
			return nil, fmt.Errorf("%s %q was not found", kind, ref.TemplateName)
		}
		specs = append(specs, *t)
	}
	spec, err := analysis.BuildRunSpec(specs, a.Args, func(_ string, from *v1alpha1.ArgValueFrom) (string, error) {
		switch {
		case from.PodTemplateHashValue != nil && *from.PodTemplateHashValue == v1alpha1.PodTemplateHashStable:
			return st.StableRS, nil
		case from.PodTemplateHashValue != nil:
			return st.CurrentPodHash, nil
		case from.FieldRef != nil:
			return fieldOf(ro, from.FieldRef.FieldPath)
		}
		return "", fmt.Errorf("unsupported valueFrom")
	})
	if err != nil {
		return nil, err
	}
	return &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       ro.Namespace,
			Labels:          map[string]string{RolloutLabel: ro.Name, v1alpha1.PodTemplateHashLabel: st.CurrentPodHash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: spec,
	}, nil
}

// fieldOf reads metadata.name, metadata.namespace, metadata.labels['k'] or
// metadata.annotations['k'] of the Rollout.
func fieldOf(ro *v1alpha1.Rollout, path string) (string, error) {
	switch path {
	case "metadata.name":
		return ro.Name, nil
	case "metadata.namespace":
		return ro.Namespace, nil
	}
	if key, ok := mapKey(path, "metadata.labels"); ok {
		return ro.Labels[key], nil
	}
	if key, ok := mapKey(path, "metadata.annotations"); ok {
		return ro.Annotations[key], nil
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
