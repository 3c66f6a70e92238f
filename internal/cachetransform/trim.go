// Package cachetransform holds the transform the controller's informer cache
// applies to every object it stores. It is shared by the controller and the
// test managers, so tests run with what production caches.
package cachetransform

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LastApplied is kubectl's copy of what was applied: as large as the spec,
// and never read by the controller.
const LastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Trim drops from every cached object what the controller never reads:
// managed fields and kubectl's last-applied copy, so the cache holds roughly
// the objects' specs and statuses. This is safe because no cached object is
// ever written back whole: every write is a patch of the fields the
// controller owns (DESIGN §13), which neither carries nor clears what was
// trimmed.
func Trim(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[LastApplied]; ok {
				delete(a, LastApplied)
				o.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}
