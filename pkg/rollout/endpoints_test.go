package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestCountReady(t *testing.T) {
	pod := func(name string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{name + ".invalid"},
			Conditions: discoveryv1.EndpointConditions{Ready: ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: name},
		}
	}
	slices := []discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{
			pod("web-abc-1", ptr.To(true)),
			pod("web-abc-2", nil), // no condition: ready
			pod("web-abc-3", ptr.To(false)),
			pod("web-old-1", ptr.To(true)),  // another ReplicaSet
			pod("web-abcd-1", ptr.To(true)), // a longer name sharing the prefix
			{Addresses: []string{"no-pod.invalid"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}, // no pod
			{Addresses: []string{"x.invalid"}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "web-abc-9"}},
		}},
		// The same pod in a second slice, as while the controller moves it.
		{Endpoints: []discoveryv1.Endpoint{pod("web-abc-1", ptr.To(true)), pod("web-abc-4", ptr.To(true))}},
	}
	if got := countReady(slices, "web-abc"); got != 3 {
		t.Errorf("countReady = %d, want 3 (web-abc-1, -2, -4)", got)
	}
	if got := countReady(nil, "web-abc"); got != 0 {
		t.Errorf("countReady of no slices = %d, want 0", got)
	}
}

// TestPlanTrafficWhenEndpointsCannotBeRead: a raise whose EndpointSlices
// cannot be read (RBAC of an older install) plans nothing, and the error is
// a read error that says what, classified as needing a person.
func TestPlanTrafficWhenEndpointsCannotBeRead(t *testing.T) {
	s := newSim(t, routedRollout(4, setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.endpointsLag = 1000 // never listed: the weight waits
	s.setImage("web:2")
	s.until("waiting for endpoints", 10, func(st v1alpha1.RolloutStatus) bool {
		return strings.Contains(st.Message, "waits for the canary's endpoints")
	})
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("no rule"))
	r, _, _ := applier(t, s.ro, nil)
	r.APIReader = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return forbidden
		},
	})
	p, err := planTraffic(t.Context(), s.input(), r.readyEndpoints(s.ro.Namespace))
	var reading endpointsError
	if !errors.As(err, &reading) || !apierrors.IsForbidden(err) {
		t.Fatalf("planTraffic = %+v, %v; want the forbidden read", p, err)
	}
	if want := "listing the endpointslices of service web-canary"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if classify(err) != permanent {
		t.Errorf("classify(%v) = %v, want permanent", err, classify(err))
	}
}
