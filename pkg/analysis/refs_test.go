package analysis

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFieldOf(t *testing.T) {
	obj := &metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "shop"}}
	for path, want := range map[string]string{
		"metadata.name": "web", "metadata.namespace": "default",
		"metadata.labels['app']": "web", "metadata.annotations['team']": "shop",
	} {
		if got, err := FieldOf(obj, path); err != nil || got != want {
			t.Errorf("FieldOf(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	for _, bad := range []string{"spec.replicas", "metadata.labels[app]", "metadata.labels['app'"} {
		if _, err := FieldOf(obj, bad); err == nil {
			t.Errorf("FieldOf(%q) accepted", bad)
		}
	}
}
