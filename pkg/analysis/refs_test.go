package analysis

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
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

// refuseReads fails the test on every read.
type refuseReads struct {
	client.Reader
	t *testing.T
}

func (r refuseReads) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.t.Errorf("read %T %s", obj, key)
	return errors.New("no reads")
}

// TestNamespacedControllerReadsNoClusterTemplates: a namespaced controller
// never asks its cache for a ClusterAnalysisTemplate (its Role could not
// fill the cache), and the reference is refused with its field.
func TestNamespacedControllerReadsNoClusterTemplates(t *testing.T) {
	templates := map[string]*v1alpha1.AnalysisTemplateSpec{}
	refs := []v1alpha1.AnalysisTemplateRef{{TemplateName: "shared", ClusterScope: true}}
	if err := FetchTemplates(context.Background(), refuseReads{t: t}, "team-a", "team-a", refs, templates); err != nil {
		t.Fatal(err)
	}
	if len(templates) != 0 {
		t.Errorf("templates %v, want none", templates)
	}
	if _, err := TemplateSpecs(refs, templates); err == nil {
		t.Error("a reference left out was found")
	}
	want := `spec.analyses[0] refers to ClusterAnalysisTemplate "shared", but the controller runs namespaced (--namespace=team-a) and cannot read cluster-scoped templates`
	if got := ClusterScopeRefused("team-a", "spec.analyses[0]", "shared"); got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if got := ClusterScopeRefused("", "spec.analyses[0]", "shared"); got != "" {
		t.Errorf("cluster mode refuses: %q", got)
	}
}
