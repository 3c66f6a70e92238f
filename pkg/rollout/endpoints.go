package rollout

import (
	"context"
	"fmt"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// readyEndpointsFunc counts the ready endpoints a query names.
type readyEndpointsFunc func(context.Context, EndpointsQuery) (int32, error)

// planTraffic plans, and when the plan gives the canary traffic the routers
// do not carry yet, plans again knowing how many canary pods the Service's
// EndpointSlices list ready: a pod is available before the endpoints
// follow, and a router sends requests only to what they list, so a weight
// given to pods not listed yet fails requests. The second plan holds the
// weight (and the step) at what the listed pods serve, and looks again
// shortly. One read per raise: EndpointSlices are not watched, the
// controller would cache every one in the cluster for this moment.
func planTraffic(ctx context.Context, in Input, ready readyEndpointsFunc) (Plan, error) {
	p, err := plan(in)
	if err != nil || p.Endpoints == nil {
		return p, err
	}
	n, err := ready(ctx, *p.Endpoints)
	if err != nil {
		return Plan{}, err
	}
	in.CanaryEndpoints = &n
	held, err := plan(in)
	if err != nil {
		return Plan{}, err
	}
	if want, got := ptr.Deref(p.TrafficWeight, 0), ptr.Deref(held.TrafficWeight, 0); got < want {
		log.FromContext(ctx).V(1).Info("Holding the canary weight until its endpoints are ready",
			"service", p.Endpoints.Service, "readyEndpoints", n, "weight", got, "wanted", want)
	}
	return held, nil
}

// endpointsError is a failed read of EndpointSlices: nothing was written.
type endpointsError struct{ error }

func (e endpointsError) Unwrap() error { return e.error }

// readyEndpoints counts the pods of the query's ReplicaSet that the
// Service's EndpointSlices list ready, read from the API server.
func (r *Reconciler) readyEndpoints(namespace string) readyEndpointsFunc {
	return func(ctx context.Context, q EndpointsQuery) (int32, error) {
		var list discoveryv1.EndpointSliceList
		if err := r.APIReader.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: q.Service}); err != nil {
			return 0, endpointsError{fmt.Errorf("listing the endpointslices of service %s: %w", q.Service, err)}
		}
		return countReady(list.Items, q.ReplicaSet), nil
	}
}

// countReady counts the distinct pods of a ReplicaSet (named after it, as
// the ReplicaSet controller names them) that the slices list ready. A pod
// in two slices, as while the EndpointSlice controller moves it, counts
// once; a missing ready condition means ready (the API's rule).
func countReady(slices []discoveryv1.EndpointSlice, replicaSet string) int32 {
	prefix := replicaSet + "-"
	seen := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			ref := e.TargetRef
			if ref == nil || ref.Kind != "Pod" || !strings.HasPrefix(ref.Name, prefix) || !ptr.Deref(e.Conditions.Ready, true) {
				continue
			}
			seen[ref.Name] = true
		}
	}
	return int32(len(seen))
}
