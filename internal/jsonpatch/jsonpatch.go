// Package jsonpatch writes to objects the controller does not own with
// field-precise JSON patches (RFC 6902): only the values that differ between
// what was read and what is wanted are sent, each after a `test` of the value
// it replaces. A write computed from a stale read, or racing another writer,
// fails as a conflict instead of overwriting what it did not see.
package jsonpatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Kind is the operation of an Op.
type Kind string

// The operations Diff and the helpers emit.
const (
	Test    Kind = "test"
	Add     Kind = "add"
	Replace Kind = "replace"
	Remove  Kind = "remove"
)

// Op is one operation of a JSON patch. Value is the JSON encoding of the
// operand (absent for Remove).
type Op struct {
	Op    Kind            `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Pointer joins tokens into a JSON pointer (RFC 6901), escaping "~" and "/"
// in each.
func Pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escaper.Replace(t))
	}
	return b.String()
}

var (
	escaper   = strings.NewReplacer("~", "~0", "/", "~1")
	unescaper = strings.NewReplacer("~1", "/", "~0", "~")
)

// tokens splits a JSON pointer into its unescaped tokens.
func tokens(pointer string) ([]string, error) {
	if pointer == "" {
		return nil, nil
	}
	if !strings.HasPrefix(pointer, "/") {
		return nil, fmt.Errorf("JSON pointer %q does not start with /", pointer)
	}
	parts := strings.Split(pointer[1:], "/")
	for i, p := range parts {
		parts[i] = unescaper.Replace(p)
	}
	return parts, nil
}

// New builds an Op whose operand is v, encoded.
func New(kind Kind, path string, v any) (Op, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return Op{}, fmt.Errorf("encoding the value at %s: %w", path, err)
	}
	return Op{Op: kind, Path: path, Value: raw}, nil
}

// String builds an Op whose operand is a string, which always encodes.
func String(kind Kind, path, v string) Op {
	raw, _ := json.Marshal(v)
	return Op{Op: kind, Path: path, Value: raw}
}

// An Option changes how Diff treats arrays.
type Option func(*differ)

// Splice makes Diff edit an array whose length changed in place: the
// elements it shares with its old value at the start and at the end stay
// untouched, the elements between are diffed index by index, and the rest
// are removed (each tested first) or inserted. Without it such an array is
// tested and replaced whole, which suits lists the API server treats as
// atomic anyway, but rewrites every element: for a type whose Go value is
// not a faithful image of the stored JSON (protobuf's JSON drops zero values
// and fields it does not know), a whole-array test never passes and a
// replacement would lose what was dropped. An insertion has no old value to
// test: guard the patch (Guard) against a stale read. Elements between the
// shared head and tail are paired by position, so a change that removes
// elements and changes others after them is best sent as two diffs in one
// patch (before to an intermediate value, then to after): the operations of
// a JSON patch apply in order.
func Splice() Option { return func(d *differ) { d.splice = true } }

// Diff returns the operations that turn before into after under the JSON
// pointer root (e.g. "/spec"), nothing outside it: for each changed value a
// test of the old value, then its replacement or removal; for each new
// object member or array element an add. Arrays of equal length are
// compared index by index; an array whose length changed is tested and
// replaced whole (see Splice). No change gives no operations. before and
// after are encoded with encoding/json, so they may be typed objects.
func Diff(before, after any, root string, opts ...Option) ([]Op, error) {
	path, err := tokens(root)
	if err != nil {
		return nil, err
	}
	b, inB, err := decodeAt(before, path)
	if err != nil {
		return nil, err
	}
	a, inA, err := decodeAt(after, path)
	if err != nil {
		return nil, err
	}
	d := &differ{}
	for _, o := range opts {
		o(d)
	}
	switch {
	case inB && inA:
		d.value(root, b, a)
	case inB:
		d.emit(Test, root, b)
		d.ops = append(d.ops, Op{Op: Remove, Path: root})
	case inA:
		d.emit(Add, root, a)
	}
	return d.ops, d.err
}

// decodeAt encodes v and returns the value at path in it, and whether there
// is one. Numbers stay json.Numbers, so a test carries them as they were.
func decodeAt(v any, path []string) (any, bool, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, false, fmt.Errorf("encoding %T: %w", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, false, fmt.Errorf("decoding %T: %w", v, err)
	}
	for _, t := range path {
		switch node := doc.(type) {
		case map[string]any:
			next, ok := node[t]
			if !ok {
				return nil, false, nil
			}
			doc = next
		case []any:
			i, ok := arrayIndex(t, len(node))
			if !ok {
				return nil, false, nil
			}
			doc = node[i]
		default:
			return nil, false, nil
		}
	}
	return doc, true, nil
}

// arrayIndex reads a pointer token as an index into an array of n.
func arrayIndex(token string, n int) (int, bool) {
	i, err := strconv.Atoi(token)
	return i, err == nil && i >= 0 && i < n
}

type differ struct {
	splice bool
	ops    []Op
	err    error
}

func (d *differ) emit(kind Kind, path string, v any) {
	o, err := New(kind, path, v)
	if err != nil {
		d.err = errors.Join(d.err, err)
		return
	}
	d.ops = append(d.ops, o)
}

// value diffs two values at path: objects member by member, arrays element
// by element, anything else (or a change of type) as one replacement.
func (d *differ) value(path string, b, a any) {
	switch bv := b.(type) {
	case map[string]any:
		if av, ok := a.(map[string]any); ok {
			d.object(path, bv, av)
			return
		}
	case []any:
		if av, ok := a.([]any); ok {
			d.array(path, bv, av)
			return
		}
	}
	if !reflect.DeepEqual(b, a) {
		d.emit(Test, path, b)
		d.emit(Replace, path, a)
	}
}

func (d *differ) object(path string, b, a map[string]any) {
	keys := make([]string, 0, len(b)+len(a))
	for k := range b {
		keys = append(keys, k)
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := path + Pointer(k)
		bv, inB := b[k]
		av, inA := a[k]
		switch {
		case inB && inA:
			d.value(p, bv, av)
		case inB:
			d.emit(Test, p, bv)
			d.ops = append(d.ops, Op{Op: Remove, Path: p})
		default:
			d.emit(Add, p, av)
		}
	}
}

func (d *differ) array(path string, b, a []any) {
	if len(b) == len(a) {
		for i := range b {
			d.value(index(path, i), b[i], a[i])
		}
		return
	}
	if !d.splice {
		d.emit(Test, path, b)
		d.emit(Replace, path, a)
		return
	}
	n := min(len(b), len(a))
	head := 0
	for head < n && reflect.DeepEqual(b[head], a[head]) {
		head++
	}
	tail := 0
	for tail < n-head && reflect.DeepEqual(b[len(b)-1-tail], a[len(a)-1-tail]) {
		tail++
	}
	bm, am := b[head:len(b)-tail], a[head:len(a)-tail]
	common := min(len(bm), len(am))
	for i := range common {
		d.value(index(path, head+i), bm[i], am[i])
	}
	// From the end, so that the indices of the ones still to go hold.
	for i := len(bm) - 1; i >= common; i-- {
		d.emit(Test, index(path, head+i), bm[i])
		d.ops = append(d.ops, Op{Op: Remove, Path: index(path, head+i)})
	}
	for i := common; i < len(am); i++ {
		d.emit(Add, index(path, head+i), am[i])
	}
}

func index(path string, i int) string { return path + "/" + strconv.Itoa(i) }

// TestResourceVersion tests that obj is still at the version it was read
// at: the precondition of an operation that has no old value to test.
func TestResourceVersion(obj metav1.Object) Op {
	return String(Test, "/metadata/resourceVersion", obj.GetResourceVersion())
}

// Guard puts guard first in ops when ops add something (an add has no old
// value to test) and do not carry it yet.
func Guard(ops []Op, guard Op) []Op {
	adds := slices.ContainsFunc(ops, func(o Op) bool { return o.Op == Add })
	has := slices.ContainsFunc(ops, func(o Op) bool {
		return o.Op == guard.Op && o.Path == guard.Path && bytes.Equal(o.Value, guard.Value)
	})
	if !adds || has {
		return ops
	}
	return append([]Op{guard}, ops...)
}

// SetAnnotation returns the operations that set annotation key of obj (as
// read) to value: none when it has that value, a test of the old value and
// its replacement when it has another. Adding a key cannot test its absence,
// so the patch then tests the resourceVersion.
//
// When obj has no annotations the map is created. An informer cache may
// have trimmed annotations (kubectl's last-applied copy) from what it holds,
// so a map absent there may exist on the server, and adding it would
// replace it: the patch also tests that the map is null, which the API
// server's JSON patch library (gopkg.in/evanphx/json-patch.v4) treats as
// true of a missing member only.
func SetAnnotation(obj metav1.Object, key, value string) []Op {
	path := Pointer("metadata", "annotations", key)
	annotations := obj.GetAnnotations()
	old, ok := annotations[key]
	switch {
	case ok && old == value:
		return nil
	case ok:
		return []Op{String(Test, path, old), String(Replace, path, value)}
	case annotations == nil:
		return []Op{
			TestResourceVersion(obj),
			{Op: Test, Path: "/metadata/annotations", Value: json.RawMessage("null")},
			{Op: Add, Path: "/metadata/annotations", Value: json.RawMessage("{}")},
			String(Add, path, value),
		}
	}
	return []Op{TestResourceVersion(obj), String(Add, path, value)}
}

// TestAnnotation returns the operation that tests that annotation key of
// obj still has the value read.
func TestAnnotation(obj metav1.Object, key string) Op {
	return String(Test, Pointer("metadata", "annotations", key), obj.GetAnnotations()[key])
}

// RemoveAnnotation returns the operations that remove annotation key of obj
// (as read), after testing its value; none when it has none. The map stays,
// possibly empty: on the server it may hold annotations a cache trimmed.
func RemoveAnnotation(obj metav1.Object, key string) []Op {
	if _, ok := obj.GetAnnotations()[key]; !ok {
		return nil
	}
	return []Op{TestAnnotation(obj, key), {Op: Remove, Path: Pointer("metadata", "annotations", key)}}
}

// notAppliedMessage is all the API server says of a JSON patch that does not
// apply to the object it holds (a failed test, or a path no longer there):
// k8s.io/apiserver's patch handler (applyJSPatch) wraps the patch library's
// error in NewGenericServerResponse(422, ...), which keeps this generic
// message and drops the library's ("testing value /spec/x failed: test
// failed"). A validation error is a 422 too, but names the object and lists
// its causes.
var notAppliedMessage = apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", "", 0, false).ErrStatus.Message

// NotApplied reports whether err is the API server's answer to a JSON patch
// that does not apply to the object as it is now.
func NotApplied(err error) bool {
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	return s.Reason == metav1.StatusReasonInvalid && s.Message == notAppliedMessage &&
		(s.Details == nil || len(s.Details.Causes) == 0)
}

// Apply sends ops as one JSON patch of obj (nothing when there are none),
// under the controller's field manager, and reads the result into obj. A
// patch that no longer applies (a failed test: the object changed since it
// was read) is returned as a Conflict, which callers retry from a fresh
// read; every other error is returned as it is.
func Apply(ctx context.Context, c client.Client, obj client.Object, ops []Op, opts ...client.PatchOption) error {
	if len(ops) == 0 {
		return nil
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encoding JSON patch: %w", err)
	}
	opts = append([]client.PatchOption{client.FieldOwner(v1alpha1.FieldManager)}, opts...)
	err = c.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, data), opts...)
	if NotApplied(err) {
		return apierrors.NewConflict(groupResource(c, obj), obj.GetName(),
			errors.New("it changed since it was read: the patch's tests no longer hold"))
	}
	return err
}

// groupResource names obj's resource for an error message, falling back to
// its kind when the client cannot map it.
func groupResource(c client.Client, obj client.Object) schema.GroupResource {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return schema.GroupResource{Resource: fmt.Sprintf("%T", obj)}
	}
	if m, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
		return m.Resource.GroupResource()
	}
	return schema.GroupResource{Group: gvk.Group, Resource: strings.ToLower(gvk.Kind)}
}
