package jsonpatch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// o builds an expected Op; value is its operand as JSON ("" for none).
func o(kind Kind, path, value string) Op {
	var v json.RawMessage
	if value != "" {
		v = json.RawMessage(value)
	}
	return Op{Op: kind, Path: path, Value: v}
}

// rawAsText shows operands as JSON text in diffs.
var rawAsText = cmp.Transformer("json", func(r json.RawMessage) string { return string(r) })

// doc is a JSON document of a table row, passed to Diff as it is written.
func doc(t *testing.T, s string) json.RawMessage {
	t.Helper()
	if !json.Valid([]byte(s)) {
		t.Fatalf("bad test document %s", s)
	}
	return json.RawMessage(s)
}

// applies checks that ops, applied to before, give after's value under
// root and leave the rest of before as it was.
func applies(t *testing.T, before, after, root string, ops []Op) {
	t.Helper()
	patch, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := evanphx.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding %s: %v", patch, err)
	}
	got, err := p.Apply([]byte(before))
	if err != nil {
		t.Fatalf("applying %s to %s: %v", patch, before, err)
	}
	path, err := tokens(root)
	if err != nil {
		t.Fatal(err)
	}
	gv, inGot, _ := decodeAt(json.RawMessage(got), path)
	av, inAfter, _ := decodeAt(json.RawMessage(after), path)
	if inGot != inAfter || !reflect.DeepEqual(gv, av) {
		t.Errorf("patch %s gives %s, want %s under %s", patch, got, after, root)
	}
	if rest, want := outside(t, got, path), outside(t, []byte(before), path); !reflect.DeepEqual(rest, want) {
		t.Errorf("patch %s changed more than %s: %v, want %v", patch, root, rest, want)
	}
}

// outside decodes a document and drops the member at path (an object
// member), leaving what a patch under path must not change.
func outside(t *testing.T, raw []byte, path []string) any {
	t.Helper()
	doc, _, err := decodeAt(json.RawMessage(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(path) == 0 {
		return nil
	}
	parent, ok, _ := decodeAt(json.RawMessage(raw), path[:len(path)-1])
	if m, isMap := parent.(map[string]any); ok && isMap {
		delete(m, path[len(path)-1])
		// parent was decoded apart from doc: put it back.
		doc = replaceAt(doc, path[:len(path)-1], m)
	}
	return doc
}

func replaceAt(doc any, path []string, v any) any {
	if len(path) == 0 {
		return v
	}
	m := doc.(map[string]any)
	m[path[0]] = replaceAt(m[path[0]], path[1:], v)
	return m
}

func TestDiff(t *testing.T) {
	rows := []struct {
		name          string
		before, after string
		root          string
		splice        bool
		want          []Op
	}{
		{
			name:   "no change, no ops",
			before: `{"spec":{"a":{"b":1},"l":[1,2]}}`, after: `{"spec":{"a":{"b":1},"l":[1,2]}}`,
			root: "/spec",
		},
		{
			name:   "nested change: the old leaf is tested, then replaced",
			before: `{"spec":{"a":{"b":{"c":1,"d":"x"}}}}`, after: `{"spec":{"a":{"b":{"c":2,"d":"x"}}}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/a/b/c", `1`), o(Replace, "/spec/a/b/c", `2`)},
		},
		{
			name:   "changes outside the root are not the router's",
			before: `{"metadata":{"labels":{"a":"1"}},"spec":{"w":1}}`, after: `{"metadata":{"labels":{"a":"2"}},"spec":{"w":2}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/w", `1`), o(Replace, "/spec/w", `2`)},
		},
		{
			name:   "equal-length lists are diffed per index",
			before: `{"spec":{"l":[{"w":1},{"w":2}]}}`, after: `{"spec":{"l":[{"w":1},{"w":3}]}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/l/1/w", `2`), o(Replace, "/spec/l/1/w", `3`)},
		},
		{
			name:   "list insert: the list is tested and replaced whole",
			before: `{"spec":{"l":[{"n":"a"},{"n":"b"}]}}`, after: `{"spec":{"l":[{"n":"x"},{"n":"a"},{"n":"b"}]}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/l", `[{"n":"a"},{"n":"b"}]`), o(Replace, "/spec/l", `[{"n":"x"},{"n":"a"},{"n":"b"}]`)},
		},
		{
			name:   "list removal: the list is tested and replaced whole",
			before: `{"spec":{"l":[1,2,3]}}`, after: `{"spec":{"l":[1,3]}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/l", `[1,2,3]`), o(Replace, "/spec/l", `[1,3]`)},
		},
		{
			name:   "map key added and removed",
			before: `{"spec":{"m":{"gone":"x","kept":"y"}}}`, after: `{"spec":{"m":{"kept":"y","new":{"z":true}}}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/m/gone", `"x"`), o(Remove, "/spec/m/gone", ""), o(Add, "/spec/m/new", `{"z":true}`)},
		},
		{
			name:   "keys with / and ~ are escaped",
			before: `{"metadata":{"annotations":{"example.com/a~b":"1"}}}`, after: `{"metadata":{"annotations":{"example.com/a~b":"2"}}}`,
			root: "/metadata/annotations",
			want: []Op{o(Test, "/metadata/annotations/example.com~1a~0b", `"1"`), o(Replace, "/metadata/annotations/example.com~1a~0b", `"2"`)},
		},
		{
			name:   "a root with an escaped key",
			before: `{"m":{"a/b":{"c":1}}}`, after: `{"m":{"a/b":{"c":2}}}`,
			root: "/m/a~1b",
			want: []Op{o(Test, "/m/a~1b/c", `1`), o(Replace, "/m/a~1b/c", `2`)},
		},
		{
			name:   "a change of type is a replacement",
			before: `{"spec":{"v":"text"}}`, after: `{"spec":{"v":{"k":"text"}}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/v", `"text"`), o(Replace, "/spec/v", `{"k":"text"}`)},
		},
		{
			name:   "null is a value like any other",
			before: `{"spec":{"v":null}}`, after: `{"spec":{"v":0}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/v", `null`), o(Replace, "/spec/v", `0`)},
		},
		{
			name:   "numbers keep their form",
			before: `{"spec":{"p":12.50}}`, after: `{"spec":{"p":1e3}}`,
			root: "/spec",
			want: []Op{o(Test, "/spec/p", `12.50`), o(Replace, "/spec/p", `1e3`)},
		},
		{
			name:   "a root only after is added",
			before: `{"metadata":{}}`, after: `{"metadata":{"labels":{"a":"b"}}}`,
			root: "/metadata/labels",
			want: []Op{o(Add, "/metadata/labels", `{"a":"b"}`)},
		},
		{
			name:   "a root only before is tested and removed",
			before: `{"metadata":{"labels":{"a":"b"}}}`, after: `{"metadata":{}}`,
			root: "/metadata/labels",
			want: []Op{o(Test, "/metadata/labels", `{"a":"b"}`), o(Remove, "/metadata/labels", "")},
		},
		{
			name:   "splice: an insertion at the head leaves the rest alone",
			before: `{"spec":{"l":[{"n":"u1"},{"n":"u2"}]}}`, after: `{"spec":{"l":[{"n":"m"},{"n":"u1"},{"n":"u2"}]}}`,
			root: "/spec", splice: true,
			want: []Op{o(Add, "/spec/l/0", `{"n":"m"}`)},
		},
		{
			name:   "splice: a changed element and an append",
			before: `{"spec":{"l":[{"h":"s","w":100}]}}`, after: `{"spec":{"l":[{"h":"s","w":80},{"h":"c","w":20}]}}`,
			root: "/spec", splice: true,
			want: []Op{o(Test, "/spec/l/0/w", `100`), o(Replace, "/spec/l/0/w", `80`), o(Add, "/spec/l/1", `{"h":"c","w":20}`)},
		},
		{
			name:   "splice: removals are tested, from the end",
			before: `{"spec":{"l":["m1","m2","u1"]}}`, after: `{"spec":{"l":["u1"]}}`,
			root: "/spec", splice: true,
			want: []Op{o(Test, "/spec/l/1", `"m2"`), o(Remove, "/spec/l/1", ""), o(Test, "/spec/l/0", `"m1"`), o(Remove, "/spec/l/0", "")},
		},
		{
			name:   "splice: a removal in the middle",
			before: `{"spec":{"l":[{"h":"s","w":80},{"h":"c","w":10},{"h":"e","w":10}]}}`,
			after:  `{"spec":{"l":[{"h":"s","w":90},{"h":"c","w":10}]}}`,
			root:   "/spec", splice: true,
			want: []Op{o(Test, "/spec/l/0/w", `80`), o(Replace, "/spec/l/0/w", `90`), o(Test, "/spec/l/2", `{"h":"e","w":10}`), o(Remove, "/spec/l/2", "")},
		},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var opts []Option
			if row.splice {
				opts = append(opts, Splice())
			}
			got, err := Diff(doc(t, row.before), doc(t, row.after), row.root, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(row.want, got, rawAsText); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			applies(t, row.before, row.after, row.root, got)
		})
	}
}

// TestDiffTypedObjects: typed objects are compared as the API server sees
// them, and nothing outside the root is written.
func TestDiffTypedObjects(t *testing.T) {
	before := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: "7", Annotations: map[string]string{"a": "1"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
	}
	after := before.DeepCopy()
	after.ResourceVersion = "8"
	after.Annotations["a"] = "2"
	after.Spec.Selector["rollouts-pod-template-hash"] = "abc"
	got, err := Diff(before, after, "/spec")
	if err != nil {
		t.Fatal(err)
	}
	want := []Op{o(Add, "/spec/selector/rollouts-pod-template-hash", `"abc"`)}
	if diff := cmp.Diff(want, got, rawAsText); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
}

// FuzzDiff: whatever two documents, the ops turn the first into the second
// (with and without Splice), and pass their own tests.
func FuzzDiff(f *testing.F) {
	f.Add(`{"a":[1,2,3],"b":{"c":"d"}}`, `{"a":[0,1,2,3],"b":{"c":"e","f":null}}`)
	f.Add(`{"l":[{"x":1},{"y":2},{"z":3}]}`, `{"l":[{"x":1},{"z":3}]}`)
	f.Add(`{"a/b":{"~":1}}`, `{"a/b":{"~":[true]}}`)
	f.Add(`{"l":[[1],[2]]}`, `{"l":[[1,2]]}`)
	f.Fuzz(func(t *testing.T, before, after string) {
		var b, a map[string]any
		if json.Unmarshal([]byte(before), &b) != nil || json.Unmarshal([]byte(after), &a) != nil {
			t.Skip()
		}
		// The patch library reads the pointer "/" (the member named "") as
		// the document itself; Kubernetes objects have no empty keys.
		if emptyKey(b) || emptyKey(a) {
			t.Skip()
		}
		bj, _ := json.Marshal(b)
		aj, _ := json.Marshal(a)
		for _, opts := range [][]Option{nil, {Splice()}} {
			ops, err := Diff(json.RawMessage(bj), json.RawMessage(aj), "", opts...)
			if err != nil {
				t.Fatal(err)
			}
			patch, _ := json.Marshal(ops)
			p, err := evanphx.DecodePatch(patch)
			if err != nil {
				t.Fatalf("decoding %s: %v", patch, err)
			}
			got, err := p.Apply(bj)
			if err != nil {
				t.Fatalf("applying %s to %s: %v", patch, bj, err)
			}
			if !evanphx.Equal(got, aj) {
				t.Fatalf("patch %s turns %s into %s, want %s", patch, bj, got, aj)
			}
		}
	})
}

func emptyKey(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k == "" || emptyKey(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if emptyKey(e) {
				return true
			}
		}
	}
	return false
}

func TestGuard(t *testing.T) {
	guard := o(Test, "/metadata/resourceVersion", `"7"`)
	replace := []Op{o(Test, "/spec/w", `1`), o(Replace, "/spec/w", `2`)}
	add := []Op{o(Add, "/spec/l/0", `1`)}
	rows := []struct {
		name string
		ops  []Op
		want []Op
	}{
		{"tested ops need no guard", replace, replace},
		{"an add is guarded", add, append([]Op{guard}, add...)},
		{"once", append([]Op{guard}, add...), append([]Op{guard}, add...)},
		{"no ops", nil, nil},
	}
	for _, row := range rows {
		if diff := cmp.Diff(row.want, Guard(row.ops, guard), rawAsText); diff != "" {
			t.Errorf("%s (-want +got):\n%s", row.name, diff)
		}
	}
}

func TestAnnotations(t *testing.T) {
	const key = "rollouts.kubeseed.io/managed-by"
	const path = "/metadata/annotations/rollouts.kubeseed.io~1managed-by"
	rv := o(Test, "/metadata/resourceVersion", `"7"`)
	obj := func(annotations map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "7", Annotations: annotations}}
	}
	set := []struct {
		name string
		obj  *corev1.Service
		want []Op
	}{
		{"no map: created, and tested absent", obj(nil), []Op{rv, o(Test, "/metadata/annotations", `null`), o(Add, "/metadata/annotations", `{}`), o(Add, path, `"web"`)}},
		{"absent key: added under a resourceVersion test", obj(map[string]string{"a": "b"}), []Op{rv, o(Add, path, `"web"`)}},
		{"an empty map is a map", obj(map[string]string{}), []Op{rv, o(Add, path, `"web"`)}},
		{"another value: tested and replaced", obj(map[string]string{key: "other"}), []Op{o(Test, path, `"other"`), o(Replace, path, `"web"`)}},
		{"the same value: nothing", obj(map[string]string{key: "web"}), nil},
	}
	for _, row := range set {
		if diff := cmp.Diff(row.want, SetAnnotation(row.obj, key, "web"), rawAsText); diff != "" {
			t.Errorf("SetAnnotation, %s (-want +got):\n%s", row.name, diff)
		}
	}
	remove := []struct {
		name string
		obj  *corev1.Service
		want []Op
	}{
		{"present: tested and removed", obj(map[string]string{key: "web", "a": "b"}), []Op{o(Test, path, `"web"`), o(Remove, path, "")}},
		{"the only one: the map stays", obj(map[string]string{key: "web"}), []Op{o(Test, path, `"web"`), o(Remove, path, "")}},
		{"absent: nothing", obj(map[string]string{"a": "b"}), nil},
		{"no map: nothing", obj(nil), nil},
	}
	for _, row := range remove {
		if diff := cmp.Diff(row.want, RemoveAnnotation(row.obj, key), rawAsText); diff != "" {
			t.Errorf("RemoveAnnotation, %s (-want +got):\n%s", row.name, diff)
		}
	}
}

// serverPatchErrors makes the fake client answer a JSON patch that does not
// apply as the API server does (k8s.io/apiserver, patch.go applyJSPatch):
// a 422 that keeps none of the patch library's message.
func serverPatchErrors(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Patch(ctx, obj, patch, opts...)
	var status apierrors.APIStatus
	if err != nil && !errors.As(err, &status) {
		return apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	return err
}

func service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: map[string]string{"a": "1"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
	}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	var sent []client.Patch
	var owners []string
	c := fake.NewClientBuilder().WithObjects(service()).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			sent = append(sent, patch)
			po := &client.PatchOptions{}
			po.ApplyOptions(opts)
			owners = append(owners, po.FieldManager)
			return serverPatchErrors(ctx, c, obj, patch, opts...)
		},
	}).Build()

	if err := Apply(ctx, c, service(), nil); err != nil || len(sent) != 0 {
		t.Fatalf("no ops: err %v, %d patches sent", err, len(sent))
	}

	var read corev1.Service
	if err := c.Get(ctx, client.ObjectKeyFromObject(service()), &read); err != nil {
		t.Fatal(err)
	}
	want := read.DeepCopy()
	want.Spec.Selector["hash"] = "abc"
	ops, err := Diff(&read, want, "/spec")
	if err != nil {
		t.Fatal(err)
	}
	obj := read.DeepCopy()
	if err := Apply(ctx, c, obj, Guard(ops, TestResourceVersion(&read))); err != nil {
		t.Fatal(err)
	}
	if sent[0].Type() != types.JSONPatchType || owners[0] != v1alpha1.FieldManager {
		t.Errorf("sent a %s patch as %q, want a JSON patch as %q", sent[0].Type(), owners[0], v1alpha1.FieldManager)
	}
	if obj.Spec.Selector["hash"] != "abc" || obj.ResourceVersion == read.ResourceVersion {
		t.Errorf("obj not updated from the answer: %v, resourceVersion %s", obj.Spec.Selector, obj.ResourceVersion)
	}

	// The same patch again: its resourceVersion test fails, as it would
	// after a concurrent write.
	err = Apply(ctx, c, read.DeepCopy(), Guard(ops, TestResourceVersion(&read)))
	if !apierrors.IsConflict(err) {
		t.Errorf("stale patch: got %v, want a conflict", err)
	}
	// A replacement whose old value changed meanwhile.
	stale := []Op{o(Test, "/metadata/annotations/a", `"0"`), o(Replace, "/metadata/annotations/a", `"2"`)}
	if err := Apply(ctx, c, read.DeepCopy(), stale); !apierrors.IsConflict(err) {
		t.Errorf("failed test: got %v, want a conflict", err)
	}
}

// TestApplyPassesOtherErrors: only a patch that does not apply becomes a
// conflict; validation errors, forbidden writes and others come back as
// they are.
func TestApplyPassesOtherErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	rows := []struct {
		name     string
		err      error
		conflict bool
		is       func(error) bool
	}{
		{"patch does not apply", apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", "testing value /spec/x failed: test failed", 0, false), true, apierrors.IsConflict},
		{"validation", apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", field.ErrorList{field.Invalid(field.NewPath("spec", "ports"), 0, "bad")}), false, apierrors.IsInvalid},
		{"invalid without causes but a message of its own", apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", nil), false, apierrors.IsInvalid},
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("no")), false, apierrors.IsForbidden},
		{"not found", apierrors.NewNotFound(gr, "web"), false, apierrors.IsNotFound},
	}
	for _, row := range rows {
		c := fake.NewClientBuilder().WithObjects(service()).WithInterceptorFuncs(interceptor.Funcs{
			Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
				return row.err
			},
		}).Build()
		err := Apply(context.Background(), c, service(), []Op{o(Test, "/spec/x", `1`)})
		if apierrors.IsConflict(err) != row.conflict || !row.is(err) {
			t.Errorf("%s: got %v (conflict %v)", row.name, err, apierrors.IsConflict(err))
		}
	}
}
