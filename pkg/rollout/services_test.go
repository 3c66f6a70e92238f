package rollout

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func service(hash, owner, version string) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", ResourceVersion: version}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	if hash != "" {
		svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] = hash
	}
	if owner != "" {
		svc.Annotations = map[string]string{v1alpha1.ManagedByAnnotation: owner}
	}
	return svc
}

// TestServiceChangesClaimAndSwitch: the patch of a Service changes the
// hash selector key and the managed-by annotation only, tests every value it
// replaces, and tests the resourceVersion read whenever it adds a member.
func TestServiceChangesClaimAndSwitch(t *testing.T) {
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
	const (
		key = `/spec/selector/rollouts.kubeseed.io~1pod-template-hash`
		by  = `/metadata/annotations/rollouts.kubeseed.io~1managed-by`
	)
	noSelector := service("", "", "5")
	noSelector.Spec.Selector = nil
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want string // the patch, or "" for no change
	}{
		{"claimed and selecting the hash: nothing", service("h1", "web", "7"), ""},
		{"claimed, other hash: switch only, while still ours", service("h0", "web", "7"),
			`[{"op":"test","path":"` + by + `","value":"web"},{"op":"test","path":"` + key + `","value":"h0"},{"op":"replace","path":"` + key + `","value":"h1"}]`},
		{"claimed, no hash yet: the key is added on the version seen", service("", "web", "8"),
			`[{"op":"test","path":"/metadata/resourceVersion","value":"8"},{"op":"test","path":"` + by + `","value":"web"},{"op":"add","path":"` + key + `","value":"h1"}]`},
		{"unclaimed, right hash: claim on the version seen", service("h1", "", "7"),
			`[{"op":"test","path":"/metadata/resourceVersion","value":"7"},{"op":"test","path":"/metadata/annotations","value":null},{"op":"add","path":"/metadata/annotations","value":{}},{"op":"add","path":"` + by + `","value":"web"}]`},
		{"unclaimed, no hash yet: switch and claim on the version seen", service("", "", "3"),
			`[{"op":"test","path":"/metadata/resourceVersion","value":"3"},{"op":"test","path":"/metadata/annotations","value":null},{"op":"add","path":"/metadata/annotations","value":{}},{"op":"add","path":"` + by + `","value":"web"},{"op":"add","path":"` + key + `","value":"h1"}]`},
		{"no selector at all: the map is added", noSelector,
			`[{"op":"test","path":"/metadata/resourceVersion","value":"5"},{"op":"test","path":"/metadata/annotations","value":null},{"op":"add","path":"/metadata/annotations","value":{}},{"op":"add","path":"` + by + `","value":"web"},{"op":"add","path":"/spec/selector","value":{}},{"op":"add","path":"` + key + `","value":"h1"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serviceChanges(ro, map[string]*corev1.Service{"s": tc.svc}, map[string]string{"s": "h1"})
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("service changes = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Name != "s" || got[0].Hash != "h1" {
				t.Fatalf("service changes = %+v, want one for s to h1", got)
			}
			patch, err := json.Marshal(got[0].Patch)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(patch)); diff != "" {
				t.Errorf("patch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestServiceOfAnotherRolloutIsInvalidAndUntouched: a second Rollout naming
// a Service the first one manages is InvalidSpec, and its plan writes
// nothing at all.
func TestServiceOfAnotherRolloutIsInvalidAndUntouched(t *testing.T) {
	s := newSim(t, canaryRollout(3, "1", "0", setWeight(50), pause("")))
	s.services["web-stable"].Annotations = map[string]string{v1alpha1.ManagedByAnnotation: "first"}
	p, err := plan(s.input())
	if err != nil {
		t.Fatal(err)
	}
	want := `Service "web-stable" named in spec.strategy.canary.stableService is managed by Rollout "first"; a Service can belong to one Rollout only`
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled); c == nil || c.Reason != v1alpha1.ReasonInvalidSpec || c.Message != want {
		t.Fatalf("Stalled condition = %+v, want InvalidSpec %q", c, want)
	}
	if p.Create != nil || len(p.Services) > 0 || len(p.Scale) > 0 || p.TrafficWeight != nil || p.Finalize {
		t.Errorf("plan of an invalid Rollout writes: %+v", p)
	}
}
