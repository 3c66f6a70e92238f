package traffic

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

const annotationPath = "/metadata/annotations/rollouts.kubeseed.io~1managed-by"

func op(kind jsonpatch.Kind, path, value string) jsonpatch.Op {
	var v json.RawMessage
	if value != "" {
		v = json.RawMessage(value)
	}
	return jsonpatch.Op{Op: kind, Path: path, Value: v}
}

var rawAsText = cmp.Transformer("json", func(r json.RawMessage) string { return string(r) })

func owned(owner string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: "5", Annotations: map[string]string{"note": "mine"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	if owner != "" {
		s.Annotations[v1alpha1.ManagedByAnnotation] = owner
	}
	return s
}

func TestClaim(t *testing.T) {
	rows := []struct {
		name    string
		owner   string
		want    []jsonpatch.Op
		invalid string
	}{
		{"unclaimed: claimed under a resourceVersion test", "", []jsonpatch.Op{op(jsonpatch.Test, "/metadata/resourceVersion", `"5"`), op(jsonpatch.Add, annotationPath, `"web"`)}, ""},
		{"ours: the claim is tested", "web", []jsonpatch.Op{op(jsonpatch.Test, annotationPath, `"web"`)}, ""},
		{"another Rollout's", "other", nil, `Service "web" is managed by Rollout "other"; a route can belong to one Rollout only`},
	}
	for _, row := range rows {
		got, err := Claim("Service", owned(row.owner), "web")
		switch {
		case row.invalid != "" && (!IsInvalid(err) || err.Error() != row.invalid):
			t.Errorf("%s: got %v, want %q", row.name, err, row.invalid)
		case row.invalid == "" && err != nil:
			t.Errorf("%s: %v", row.name, err)
		}
		if diff := cmp.Diff(row.want, got, rawAsText); diff != "" {
			t.Errorf("%s (-want +got):\n%s", row.name, diff)
		}
		if err := CheckOwner("Service", owned(row.owner), "web"); (err != nil) != (row.invalid != "") {
			t.Errorf("%s: CheckOwner %v", row.name, err)
		}
	}
}

func TestUnclaim(t *testing.T) {
	if diff := cmp.Diff([]jsonpatch.Op{op(jsonpatch.Test, annotationPath, `"web"`), op(jsonpatch.Remove, annotationPath, "")}, Unclaim(owned("web"), "web"), rawAsText); diff != "" {
		t.Errorf("ours (-want +got):\n%s", diff)
	}
	for _, owner := range []string{"", "other"} {
		if got := Unclaim(owned(owner), "web"); got != nil {
			t.Errorf("owner %q: %v, want nothing", owner, got)
		}
	}
}

// TestSpecPatch: no spec change, no write; a change carries the claim, and
// an added value the resourceVersion test; metadata other than the claim is
// never written.
func TestSpecPatch(t *testing.T) {
	before := owned("web")
	if ops, err := SpecPatch("Service", before, before.DeepCopy(), "web"); err != nil || ops != nil {
		t.Errorf("no change: %v %v", ops, err)
	}
	after := before.DeepCopy()
	after.Labels = map[string]string{"not": "ours"}
	after.Spec.Selector["hash"] = "abc"
	ops, err := SpecPatch("Service", before, after, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := []jsonpatch.Op{
		op(jsonpatch.Test, "/metadata/resourceVersion", `"5"`),
		op(jsonpatch.Test, annotationPath, `"web"`),
		op(jsonpatch.Add, "/spec/selector/hash", `"abc"`),
	}
	if diff := cmp.Diff(want, ops, rawAsText); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := SpecPatch("Service", owned("other"), after, "web"); !IsInvalid(err) {
		t.Errorf("another Rollout's object: %v", err)
	}
	rel, err := ReleasePatch(before, before.DeepCopy(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Unclaim(before, "web"), rel, rawAsText); diff != "" {
		t.Errorf("release with no spec change (-want +got):\n%s", diff)
	}
}
