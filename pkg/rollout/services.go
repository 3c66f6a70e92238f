package rollout

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// serviceChanges lists the Services whose selector must change to select the
// pods of the wanted hash (by Service name). The hash label is injected next
// to the user's own selector labels.
func serviceChanges(services map[string]*corev1.Service, want map[string]string) []ServiceChange {
	var out []ServiceChange
	for name, hash := range want {
		if name == "" || hash == "" {
			continue
		}
		if svc := services[name]; svc != nil && svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != hash {
			out = append(out, ServiceChange{Name: name, Hash: hash})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
