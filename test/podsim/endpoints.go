package podsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/test/loopback"
)

// The Services' endpoints. kube-apiserver refuses loopback addresses in
// EndpointSlices of type IPv4 and IPv6 (and in Endpoints): "may not be in
// the loopback range". So the kube-controller-manager's EndpointSlice
// controller cannot publish pods whose IPs are loopback addresses, and
// test/e2e/cluster.sh turns it off; the simulator publishes the
// EndpointSlices instead, of address type FQDN, whose addresses are the
// pods' IPs written out (a valid domain name to the API server, an IP to a
// proxy: Traefik dials the address as written, whatever the type).
//
// What it publishes follows the EndpointSlice controller: for every
// Service with a selector, each pod it selects that has an IP and has not
// finished, ready when the pod is Ready and not terminating (or when the
// Service publishes not-ready addresses), serving when Ready, terminating
// once deleted; ports are the Service's target ports, by number or by the
// pod's container port name, with the Service port's name.

const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by of the
	// EndpointSlices the simulator publishes.
	ManagedBy = "podsim.rollouts.kubeseed.io"
	// fieldManager is the field manager of its writes.
	fieldManager = "podsim"
	// maxEndpoints is what the API server allows in one EndpointSlice;
	// test Services stay far below it.
	maxEndpoints = 1000
)

// publisher keeps the EndpointSlices of every Service.
type publisher struct {
	client   kubernetes.Interface
	log      *slog.Logger
	services listerscorev1.ServiceLister
	pods     listerscorev1.PodLister
	slices   listersdiscoveryv1.EndpointSliceLister
	queue    workqueue.TypedRateLimitingInterface[types.NamespacedName]
	// fail reports an EndpointSlice the API server refused.
	fail func(types.NamespacedName, error)
}

// enqueueNamespace queues every Service of a namespace: a pod change may
// concern any of them, and test namespaces hold a handful.
func (p *publisher) enqueueNamespace(ns string) {
	svcs, err := p.services.Services(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		p.queue.Add(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
	}
}

// run publishes until ctx ends, one Service at a time.
func (p *publisher) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	for {
		key, quit := p.queue.Get()
		if quit {
			return
		}
		err := p.sync(ctx, key)
		switch {
		case err == nil || apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			// A namespace being deleted takes its Services' slices along.
			p.queue.Forget(key)
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err):
			// The cache was behind; the next try reads it anew.
			p.queue.AddRateLimited(key)
		case ctx.Err() == nil:
			p.fail(key, err)
			p.queue.AddRateLimited(key)
		}
		p.queue.Done(key)
	}
}

// sync makes the simulator's EndpointSlices of one Service what its pods
// say.
func (p *publisher) sync(ctx context.Context, key types.NamespacedName) error {
	existing, err := p.slices.EndpointSlices(key.Namespace).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: key.Name,
		discoveryv1.LabelManagedBy:   ManagedBy,
	}))
	if err != nil {
		return err
	}
	var want []*discoveryv1.EndpointSlice
	svc, err := p.services.Services(key.Namespace).Get(key.Name)
	switch {
	case apierrors.IsNotFound(err):
		// Garbage collection removes the slices of a deleted Service.
		return nil
	case err != nil:
		return err
	case len(svc.Spec.Selector) > 0:
		pods, err := p.pods.Pods(key.Namespace).List(labels.SelectorFromSet(svc.Spec.Selector))
		if err != nil {
			return err
		}
		if want, err = desiredSlices(svc, pods); err != nil {
			return err
		}
	}
	for _, w := range want {
		i := slices.IndexFunc(existing, func(e *discoveryv1.EndpointSlice) bool { return e.Name == w.Name })
		if i >= 0 && sameSlice(existing[i], w) {
			continue
		}
		if i < 0 {
			_, err = p.client.DiscoveryV1().EndpointSlices(key.Namespace).Create(ctx, w, metav1.CreateOptions{FieldManager: fieldManager})
		} else {
			w.ResourceVersion = existing[i].ResourceVersion
			_, err = p.client.DiscoveryV1().EndpointSlices(key.Namespace).Update(ctx, w, metav1.UpdateOptions{FieldManager: fieldManager})
		}
		if err != nil {
			return fmt.Errorf("EndpointSlice %s/%s: %w", key.Namespace, w.Name, err)
		}
		p.log.Info("Published endpoints", "service", key.String(), "slice", w.Name, "endpoints", endpointsSummary(w))
	}
	for _, e := range existing {
		if slices.ContainsFunc(want, func(w *discoveryv1.EndpointSlice) bool { return w.Name == e.Name }) {
			continue
		}
		err := p.client.DiscoveryV1().EndpointSlices(key.Namespace).Delete(ctx, e.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("EndpointSlice %s/%s: %w", key.Namespace, e.Name, err)
		}
		p.log.Info("Deleted endpoints", "service", key.String(), "slice", e.Name)
	}
	return nil
}

// endpointsSummary is "ip(ready)" per endpoint, for the log: with the
// controller's log and the load's records it shows when each pod started
// or stopped getting traffic.
func endpointsSummary(s *discoveryv1.EndpointSlice) string {
	var parts []string
	for _, e := range s.Endpoints {
		state := "ready"
		switch {
		case ptr.Deref(e.Conditions.Terminating, false):
			state = "terminating"
		case !ptr.Deref(e.Conditions.Ready, false):
			state = "not ready"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", e.TargetRef.Name, e.Addresses[0], state))
	}
	return strings.Join(parts, ", ")
}

func sameSlice(a, b *discoveryv1.EndpointSlice) bool {
	return a.AddressType == b.AddressType &&
		equality.Semantic.DeepEqual(a.Endpoints, b.Endpoints) &&
		equality.Semantic.DeepEqual(a.Ports, b.Ports) &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels)
}

// desiredSlices are a Service's EndpointSlices: one per distinct set of
// ports its pods resolve the target ports to (one, unless named target
// ports resolve differently), named after the Service and that set.
func desiredSlices(svc *corev1.Service, pods []*corev1.Pod) ([]*discoveryv1.EndpointSlice, error) {
	byPorts := map[string]*discoveryv1.EndpointSlice{}
	var order []string
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for _, pod := range pods {
		ep, ok := endpointOf(svc, pod)
		if !ok {
			continue
		}
		ports := portsOf(svc, pod)
		key := portsKey(ports)
		s := byPorts[key]
		if s == nil {
			s = newSlice(svc, key, ports)
			byPorts[key] = s
			order = append(order, key)
		}
		if len(s.Endpoints) == maxEndpoints {
			return nil, fmt.Errorf("service %s/%s selects more than %d pods", svc.Namespace, svc.Name, maxEndpoints)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	if len(order) == 0 {
		// As the EndpointSlice controller does, a Service that selects no
		// pod keeps an empty slice: a proxy then knows the Service has no
		// endpoint, rather than not knowing the Service.
		return []*discoveryv1.EndpointSlice{newSlice(svc, "", nil)}, nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(order))
	for _, k := range order {
		out = append(out, byPorts[k])
	}
	return out, nil
}

// endpointOf is a pod as an endpoint of svc, if it is one: it has a
// loopback IP (others are refused by the serving side and reported there)
// and has not finished.
func endpointOf(svc *corev1.Service, pod *corev1.Pod) (discoveryv1.Endpoint, bool) {
	if pod.Status.PodIP == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return discoveryv1.Endpoint{}, false
	}
	if loopback.Check("pod IP", pod.Status.PodIP) != nil {
		return discoveryv1.Endpoint{}, false
	}
	podReady := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			podReady = c.Status == corev1.ConditionTrue
		}
	}
	terminating := pod.DeletionTimestamp != nil
	ep := discoveryv1.Endpoint{
		Addresses: []string{pod.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{
			Ready:       ptr.To(svc.Spec.PublishNotReadyAddresses || (podReady && !terminating)),
			Serving:     ptr.To(podReady),
			Terminating: ptr.To(terminating),
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = ptr.To(pod.Spec.NodeName)
	}
	return ep, true
}

// portsOf resolves the Service's target ports on a pod: a number as is, a
// name by the pod's container port of that name (a port the pod does not
// name is left out, as the EndpointSlice controller does).
func portsOf(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port := int32(0)
		switch sp.TargetPort.Type {
		case intstr.Int:
			port = sp.TargetPort.IntVal
			if port == 0 {
				port = sp.Port
			}
		case intstr.String:
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
						port = cp.ContainerPort
					}
				}
			}
		}
		if port == 0 {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{
			Name:        ptr.To(sp.Name),
			Port:        ptr.To(port),
			Protocol:    ptr.To(sp.Protocol),
			AppProtocol: sp.AppProtocol,
		})
	}
	return out
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var parts []string
	for _, p := range ports {
		parts = append(parts, fmt.Sprintf("%s/%d/%s", *p.Name, *p.Port, *p.Protocol))
	}
	return strings.Join(parts, ",")
}

func newSlice(svc *corev1.Service, portsKey string, ports []discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	sum := sha256.Sum256([]byte(portsKey))
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s-podsim-%s", svc.Name, hex.EncodeToString(sum[:])[:8]),
			Namespace: svc.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeFQDN,
		Ports:       ports,
	}
}

// handlers are the informer handlers that queue the Services to publish.
func (p *publisher) handlers() (services, pods cache.ResourceEventHandler) {
	svc := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			ns, name, _ := cache.SplitMetaNamespaceKey(key)
			p.queue.Add(types.NamespacedName{Namespace: ns, Name: name})
		}
	}
	pod := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			p.enqueueNamespace(pod.Namespace)
		}
	}
	return cache.ResourceEventHandlerFuncs{
			AddFunc: svc, UpdateFunc: func(_, obj any) { svc(obj) }, DeleteFunc: svc,
		}, cache.ResourceEventHandlerFuncs{
			AddFunc: pod, UpdateFunc: func(_, obj any) { pod(obj) }, DeleteFunc: pod,
		}
}

// retryDelay bounds the rate limiter's backoff: an EndpointSlice that
// fails to publish is retried at least this often.
const retryDelay = 2 * time.Second
