package cachetransform

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestTrimDropsWhatIsNeverRead(t *testing.T) {
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{
		Name:          "web",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		Annotations:   map[string]string{LastApplied: `{"spec":{}}`, v1alpha1.PromoteAnnotation: "t1"},
	}}
	out, err := Trim(ro)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*v1alpha1.Rollout)
	if len(got.ManagedFields) != 0 {
		t.Errorf("managed fields kept: %v", got.ManagedFields)
	}
	if diff := cmp.Diff(map[string]string{v1alpha1.PromoteAnnotation: "t1"}, got.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}
