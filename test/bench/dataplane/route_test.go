//go:build bench

package dataplane

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// write is a change of the canary's weight in the HTTPRoute, stamped with
// the arrival of the watch event that carried it.
type write struct {
	at     time.Time
	weight int
}

// routeWatch follows the canary weight of one HTTPRoute through a watch of
// its own, as Traefik's provider follows it.
type routeWatch struct {
	backend string
	mu      sync.Mutex
	writes  []write
	err     error
	// seen is how many writes await has handed out.
	seen int
}

// watchRoute watches the HTTPRoute name of ns for the weight of backend; a
// route without it gives it none, weight 0.
func watchRoute(b *testing.B, c client.WithWatch, ns, name, backend string) *routeWatch {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.Watch(ctx, &gatewayv1.HTTPRouteList{}, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	rw := &routeWatch{backend: backend, writes: []write{{weight: 0}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			at := time.Now()
			route, ok := ev.Object.(*gatewayv1.HTTPRoute)
			if ev.Type == watch.Error || !ok {
				rw.fail(fmt.Errorf("watch of httproute %s/%s: %s event %v", ns, name, ev.Type, ev.Object))
				return
			}
			rw.observe(at, rw.weight(route))
		}
		rw.fail(fmt.Errorf("watch of httproute %s/%s ended", ns, name))
	}()
	b.Cleanup(func() { w.Stop(); cancel(); <-done })
	return rw
}

// weight is the backend's weight in the route's rules (Gateway API's
// default 1 where a reference names no weight), 0 where none names it.
func (rw *routeWatch) weight(route *gatewayv1.HTTPRoute) int {
	for _, rule := range route.Spec.Rules {
		for _, ref := range rule.BackendRefs {
			if string(ref.Name) != rw.backend {
				continue
			}
			if ref.Weight == nil {
				return 1
			}
			return int(*ref.Weight)
		}
	}
	return 0
}

func (rw *routeWatch) observe(at time.Time, weight int) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.writes[len(rw.writes)-1].weight != weight {
		rw.writes = append(rw.writes, write{at: at, weight: weight})
	}
}

func (rw *routeWatch) fail(err error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.err == nil {
		rw.err = err
	}
}

// await waits for a write of weight and returns it, with the writes of
// other weights before it since the last await or skip: the controller
// may pass through another weight on its way (0 while a canary ReplicaSet
// it has just scaled up reports a stale status).
func (rw *routeWatch) await(b *testing.B, weight int, timeout time.Duration) (write, []write) {
	b.Helper()
	var got write
	var before []write
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		rw.mu.Lock()
		defer rw.mu.Unlock()
		for rw.seen+1 < len(rw.writes) {
			rw.seen++
			if w := rw.writes[rw.seen]; w.weight != weight {
				before = append(before, w)
				continue
			}
			got = rw.writes[rw.seen]
			return true, nil
		}
		return false, rw.err
	})
	if err != nil {
		b.Fatalf("waiting for the canary weight %d in the route: %v; writes so far %v", weight, err, rw.history())
	}
	return got, before
}

// skip passes over the writes so far.
func (rw *routeWatch) skip() {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.seen = len(rw.writes) - 1
}

func (rw *routeWatch) history() []string {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	var out []string
	for _, w := range rw.writes[1:] {
		out = append(out, fmt.Sprintf("%s %d", w.at.Format("15:04:05.000"), w.weight))
	}
	return out
}
