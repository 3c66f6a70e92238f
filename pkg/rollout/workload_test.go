package rollout

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func workloadRollout(policy v1alpha1.ScaleDownPolicy) (*v1alpha1.Rollout, *appsv1.Deployment) {
	ro := canaryRollout(4, "25%", "25%", setWeight(50), pause(""))
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](4),
			Selector: ro.Spec.Selector,
			Template: *ro.Spec.Template,
		},
	}
	ro.Spec.Template, ro.Spec.Selector = nil, nil
	ro.Spec.WorkloadRef = &v1alpha1.WorkloadRef{APIVersion: "apps/v1", Kind: "Deployment", Name: "legacy", ScaleDown: policy}
	return ro, d
}

func TestSequenceWorkloadRefScaleDown(t *testing.T) {
	for _, policy := range []v1alpha1.ScaleDownPolicy{v1alpha1.ScaleDownNever, v1alpha1.ScaleDownOnSuccess, v1alpha1.ScaleDownProgressively} {
		t.Run(string(policy), func(t *testing.T) {
			ro, d := workloadRollout(policy)
			s := newSim(t, ro)
			s.workload = d
			for range 10 {
				s.tick()
				// The Deployment never drops below what the Rollout
				// can already serve in its place.
				if got, avail := *s.workload.Spec.Replicas, s.ro.Status.AvailableReplicas; got+avail < 4 {
					t.Fatalf("Deployment scaled to %d with only %d Rollout pods available", got, avail)
				}
			}
			if s.ro.Status.Phase != v1alpha1.RolloutPhaseHealthy {
				t.Fatalf("phase %s, want Healthy", s.ro.Status.Phase)
			}
			s.expectSizes(map[string]int32{"web:1": 4})
			final := *s.workload.Spec.Replicas
			switch policy {
			case v1alpha1.ScaleDownNever:
				if final != 4 {
					t.Errorf("never: Deployment at %d, want 4", final)
				}
			case v1alpha1.ScaleDownOnSuccess, v1alpha1.ScaleDownProgressively:
				if final != 0 {
					t.Errorf("%s: Deployment at %d, want 0", policy, final)
				}
			}
			s.golden()
		})
	}
}

func TestWorkloadRefMissingDeployment(t *testing.T) {
	ro, _ := workloadRollout(v1alpha1.ScaleDownNever)
	p, err := plan(Input{Rollout: ro})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != v1alpha1.RolloutPhaseDegraded || !strings.Contains(p.Status.Message, `Deployment "legacy"`) {
		t.Errorf("missing Deployment: phase %s, message %q", p.Status.Phase, p.Status.Message)
	}
	if p.Create != nil || len(p.Scale) > 0 || p.WorkloadReplicas != nil {
		t.Errorf("an invalid spec changed something: %+v", p)
	}
}
