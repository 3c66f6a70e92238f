// Package hash names pod templates and specs with short, stable hashes.
//
// A hash must not change when the controller restarts or is upgraded, or
// every Rollout would start a spurious update: it is taken over a canonical
// JSON form in which every empty value (null, false, 0, "", {} and []) is
// dropped, so a field that a newer API version adds with its zero value
// leaves the hash alone.
package hash

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// PodTemplate names a pod template. The hash label itself is ignored; a
// collision count, when set, is mixed in, and so is salt, which keeps the
// pods of one owner from sharing a hash with another's identical template.
func PodTemplate(tmpl *corev1.PodTemplateSpec, collisionCount *int32, salt ...string) (string, error) {
	t := tmpl.DeepCopy()
	delete(t.Labels, v1alpha1.PodTemplateHashLabel)
	canonical, err := canonicalJSON(t)
	if err != nil {
		return "", fmt.Errorf("hashing pod template: %w", err)
	}
	h := fnv.New32a()
	_, _ = h.Write(canonical)
	if collisionCount != nil {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(*collisionCount))
		_, _ = h.Write(b[:])
	}
	for _, s := range salt {
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(s))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32())), nil
}

// Of names any value by its canonical JSON form.
func Of(v any) (string, error) {
	canonical, err := canonicalJSON(v)
	if err != nil {
		return "", fmt.Errorf("hashing: %w", err)
	}
	h := fnv.New32a()
	_, _ = h.Write(canonical)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32())), nil
}

// canonicalJSON marshals v with every empty value removed. encoding/json sorts
// map keys, so the output is deterministic.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	pruned, _ := prune(generic)
	return json.Marshal(pruned)
}

// prune drops empty values and reports whether v itself is empty.
func prune(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, true
	case bool:
		return x, !x
	case float64:
		return x, x == 0
	case string:
		return x, x == ""
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			// Keep list positions: an empty element still occupies a slot.
			p, _ := prune(e)
			out = append(out, p)
		}
		return out, len(out) == 0
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if p, empty := prune(e); !empty {
				out[k] = p
			}
		}
		return out, len(out) == 0
	}
	return v, false
}
