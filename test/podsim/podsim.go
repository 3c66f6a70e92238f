// Package podsim makes the pods of a kwok cluster answer HTTP. kwok runs no
// containers, but its nodes give pods loopback IPs (test/e2e/cluster.sh), so
// this process can listen on each Running pod's IP and container ports and
// answer as the pod: a proxy that dials the addresses of a Service's
// EndpointSlices reaches the pods of the revision the route chose, and the
// answer says which one it was.
//
// Every answer carries the headers X-Pod, X-Namespace, X-Image and
// X-Pod-Template-Hash (the revision); how it answers comes from the image's
// tag (ParseImage), unless a test set another behaviour for the image
// (SetBehaviour). The answers are counted as an instrumented application
// would count them (Metrics). A pod is served from the moment it is
// Running with an IP until it is deleted or leaves Running — as a real
// process listens before its readiness probe passes, and stops when it is
// sent SIGTERM. Readiness is not consulted: it decides whether proxies send
// traffic, not whether the process listens.
//
// There is no drain period, as a pod without a preStop hook has none: a
// pod being deleted stops listening at once (requests in flight finish),
// while its EndpointSlice entry turns terminating and a proxy still sends
// to it until it has applied that change (kwok removes a deleted pod right
// away, the entry with it). So requests are lost exactly when pods are
// removed before the traffic was taken off them — what the data-plane
// tests are there to catch in the controller's ordering.
//
// Ports are the container ports the pod declares (TCP); a pod that declares
// none is served on DefaultPort of its first container.
//
// It also publishes the Services' EndpointSlices, which the API server
// refuses to take from the kube-controller-manager for loopback pod IPs
// (endpoints.go).
//
// Loopback only: a pod or host IP outside 127.0.0.0/8, or two pods on one
// address, is never served nor published and is reported by Err, which the
// test harness checks, so a cluster that stops handing out loopback
// addresses fails the run instead of sending requests elsewhere.
package podsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/loopback"
)

// The headers of every answer.
const (
	HeaderPod       = "X-Pod"
	HeaderNamespace = "X-Namespace"
	HeaderImage     = "X-Image"
	// HeaderRevision is the pod's rollouts.kubeseed.io/pod-template-hash.
	HeaderRevision = "X-Pod-Template-Hash"
)

// DefaultPort is served for pods whose containers declare no port.
const DefaultPort = 8080

const (
	// syncTimeout bounds the wait for the first list of pods.
	syncTimeout = 30 * time.Second
	// drainTimeout bounds how long a stopped pod finishes requests in
	// flight, as a process does between SIGTERM and exit.
	drainTimeout = 5 * time.Second
)

// Simulator serves the pods of one cluster. Create it with New, then Start.
type Simulator struct {
	factory   informers.SharedInformerFactory
	publisher *publisher
	log       *slog.Logger
	wg        sync.WaitGroup
	metrics   *metrics
	overrides overrides

	mu       sync.Mutex
	pods     map[types.UID]*pod
	addrs    map[netip.AddrPort]types.UID
	problems []error
	// reported keeps an object's problem from being reported on each
	// update.
	reported map[string]string
}

// pod is a served pod.
type pod struct {
	name      types.NamespacedName
	revision  string
	endpoints []endpoint
	servers   []*http.Server
	listeners []net.Listener
	answerer  *answerer
}

// endpoint is an address a pod answers on, as one of its containers.
type endpoint struct {
	addr  netip.AddrPort
	image string
}

// New returns a simulator of the pods cfg can list and watch; it logs to
// w (one JSON line per pod served, stopped or refused).
func New(cfg *rest.Config, w io.Writer) (*Simulator, error) {
	cfg = rest.CopyConfig(cfg)
	// Every write of an FQDN EndpointSlice draws "FQDN endpoints are
	// deprecated"; it is the one type that takes loopback addresses.
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	s := newSimulator(w)
	s.factory = informers.NewSharedInformerFactory(cs, 0)
	s.publisher = &publisher{
		client:   cs,
		log:      s.log,
		services: s.factory.Core().V1().Services().Lister(),
		pods:     s.factory.Core().V1().Pods().Lister(),
		slices:   s.factory.Discovery().V1().EndpointSlices().Lister(),
		queue: workqueue.NewTypedRateLimitingQueue(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](10*time.Millisecond, retryDelay)),
		fail: func(svc types.NamespacedName, err error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.report("service "+svc.String(), err)
		},
	}
	return s, nil
}

// newSimulator is a simulator without its informer, fed by sync alone.
func newSimulator(w io.Writer) *Simulator {
	return &Simulator{
		log:      slog.New(slog.NewJSONHandler(w, nil)),
		metrics:  newMetrics(),
		pods:     map[types.UID]*pod{},
		addrs:    map[netip.AddrPort]types.UID{},
		reported: map[string]string{},
	}
}

// Start watches the cluster's pods, Services and EndpointSlices and
// returns once it has read them all; it serves and publishes until ctx
// ends. Call Stop after.
func (s *Simulator) Start(ctx context.Context) error {
	inf := s.factory.Core().V1().Pods().Informer()
	svcHandler, podHandler := s.publisher.handlers()
	if _, err := inf.AddEventHandler(podHandler); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	svcInf := s.factory.Core().V1().Services().Informer()
	if _, err := svcInf.AddEventHandler(svcHandler); err != nil {
		return fmt.Errorf("service informer: %w", err)
	}
	sliceInf := s.factory.Discovery().V1().EndpointSlices().Informer()
	if _, err := inf.AddEventHandler(PodHandler(s.sync, func(p *corev1.Pod) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stop(p.UID, "deleted")
	})); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	s.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced, svcInf.HasSynced, sliceInf.HasSynced) {
		return fmt.Errorf("pod, service and endpointslice informers did not sync within %s", syncTimeout)
	}
	s.wg.Go(func() { s.publisher.run(ctx) })
	return nil
}

// PodHandler is a pod informer's handler that passes each pod added or
// updated to sync and each pod deleted to gone, also one whose deletion
// the informer missed.
func PodHandler(sync, gone func(*corev1.Pod)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sync(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { sync(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				gone(p)
			}
		},
	}
}

// Stop stops serving every pod; ctx must have ended (the informer stops
// with it).
func (s *Simulator) Stop() {
	s.factory.Shutdown()
	s.mu.Lock()
	for uid := range s.pods {
		s.stop(uid, "simulator stopped")
	}
	s.mu.Unlock()
	// The servers' goroutines return once their listeners are closed.
	s.wg.Wait()
}

// Err reports every pod the simulator refused to serve — an address
// outside loopback, an address two pods share, a port it could not listen
// on, an image tag it could not read — or nil.
func (s *Simulator) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.problems...)
}

// sync brings one pod's listeners in line with its object.
func (s *Simulator) sync(p *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		s.stop(p.UID, "not running")
		return
	}
	name := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	want, err := endpoints(p)
	if err != nil {
		s.stop(p.UID, "refused")
		s.refuse(name, err)
		return
	}
	revision := p.Labels[v1alpha1.PodTemplateHashLabel]
	if cur := s.pods[p.UID]; cur != nil {
		if cur.revision == revision && slices.Equal(cur.endpoints, want) {
			return
		}
		s.stop(p.UID, "changed")
	}
	s.serve(p.UID, name, revision, want)
}

// refuse records why a pod is not served.
func (s *Simulator) refuse(name types.NamespacedName, err error) {
	s.report("pod "+name.String(), err)
}

// report records a problem of an object, once per object and problem.
// s.mu is held.
func (s *Simulator) report(object string, err error) {
	if s.reported[object] == err.Error() {
		return
	}
	s.reported[object] = err.Error()
	err = fmt.Errorf("%s: %w", object, err)
	s.problems = append(s.problems, err)
	s.log.Error("Refusing to serve", "object", object, "err", err.Error())
}

// Addresses are the addresses the simulator answers on as a Running pod:
// each of its IPs, all loopback, with each TCP port its containers declare
// (DefaultPort if none). A pod outside loopback has none, and the error
// says why.
func Addresses(p *corev1.Pod) ([]netip.AddrPort, error) {
	eps, err := endpoints(p)
	out := make([]netip.AddrPort, len(eps))
	for i, e := range eps {
		out[i] = e.addr
	}
	return out, err
}

// endpoints are the addresses a Running pod answers on, after the
// loopback rule.
func endpoints(p *corev1.Pod) ([]endpoint, error) {
	ips := []string{p.Status.PodIP}
	for _, ip := range p.Status.PodIPs {
		if ip.IP != p.Status.PodIP {
			ips = append(ips, ip.IP)
		}
	}
	var problems []error
	for _, ip := range ips {
		problems = append(problems, loopback.Check("pod IP", ip))
	}
	for _, ip := range p.Status.HostIPs {
		problems = append(problems, loopback.Check("host IP", ip.IP))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if len(p.Spec.Containers) == 0 {
		return nil, errors.New("no containers")
	}
	type port struct {
		number int32
		image  string
	}
	var ports []port
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
				ports = append(ports, port{cp.ContainerPort, c.Image})
			}
		}
	}
	if len(ports) == 0 {
		ports = []port{{DefaultPort, p.Spec.Containers[0].Image}}
	}
	var out []endpoint
	for _, ip := range ips {
		a := netip.MustParseAddr(ip).Unmap() // checked above
		for _, pt := range ports {
			if _, err := ParseImage(pt.image); err != nil {
				return nil, err
			}
			out = append(out, endpoint{netip.AddrPortFrom(a, uint16(pt.number)), pt.image})
		}
	}
	return out, nil
}

// serve starts a pod's listeners. s.mu is held.
func (s *Simulator) serve(uid types.UID, name types.NamespacedName, revision string, eps []endpoint) {
	// One answerer per pod: its error share holds over all its ports.
	ans := &answerer{pod: name, revision: revision, overrides: &s.overrides, metrics: s.metrics}
	p := &pod{name: name, revision: revision, endpoints: eps, answerer: ans}
	s.pods[uid] = p
	for _, e := range eps {
		if other, taken := s.addrs[e.addr]; taken {
			s.stop(uid, "refused")
			s.refuse(name, fmt.Errorf("%s is already pod %s's", e.addr, s.pods[other].name))
			return
		}
		b, _ := ParseImage(e.image) // checked by endpoints
		l, err := net.Listen("tcp", e.addr.String())
		if err != nil {
			s.stop(uid, "refused")
			s.refuse(name, fmt.Errorf("listening on %s: %w", e.addr, err))
			return
		}
		srv := &http.Server{
			Handler:           ans.handler(e.image, b),
			ReadHeaderTimeout: 10 * time.Second,
		}
		s.addrs[e.addr] = uid
		p.servers = append(p.servers, srv)
		p.listeners = append(p.listeners, l)
		s.wg.Go(func() { _ = srv.Serve(l) })
		// As it answers now: a behaviour set for the image wins over the tag.
		now := s.overrides.get(name.Namespace, e.image, b)
		s.log.Info("Serving pod", "pod", name.String(), "addr", e.addr.String(), "image", e.image,
			"revision", revision, "errorShare", now.ErrorShare, "latency", now.Latency.String())
	}
}

// stop closes a pod's listeners at once, so its address is free for the
// next pod kwok gives it to, and lets requests in flight finish. s.mu is
// held.
func (s *Simulator) stop(uid types.UID, why string) {
	p := s.pods[uid]
	if p == nil {
		return
	}
	delete(s.pods, uid)
	for _, e := range p.endpoints {
		if s.addrs[e.addr] == uid {
			delete(s.addrs, e.addr)
		}
	}
	// A process that exits takes its metrics along.
	p.answerer.stop()
	for i, srv := range p.servers {
		_ = p.listeners[i].Close()
		s.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		})
	}
	s.log.Info("Stopped serving pod", "pod", p.name.String(), "reason", why)
}

// answerer answers the requests of one pod.
type answerer struct {
	pod       types.NamespacedName
	revision  string
	overrides *overrides
	metrics   *metrics

	mu sync.Mutex
	// owed carries the fractions of failures over to the next requests, so
	// a pod of web:bad-30 fails exactly 3 of every 10 in a row, not about
	// 30 % at random: a share measured over a few hundred requests holds.
	owed float64
	// counted are the images (ports) whose series exist; stopped, once
	// the pod is gone, keeps a request still in flight from bringing them
	// back.
	counted map[string]bool
	stopped bool
}

func (a *answerer) fail(share float64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.owed += share
	// The epsilon keeps 0.3×10 = 2.9999… from failing 2.
	if a.owed >= 1-1e-9 {
		a.owed--
		return true
	}
	return false
}

// count records an answered request in the pod's series.
func (a *answerer) count(image string, code int, took time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	if a.counted == nil {
		a.counted = map[string]bool{}
	}
	a.metrics.count(a.pod, a.revision, image, !a.counted[image], code, took)
	a.counted[image] = true
}

// stop removes the pod's series.
func (a *answerer) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	a.metrics.forget(a.pod)
}

// handler answers as the pod's container of image, whose tag says tag.
func (a *answerer) handler(image string, tag Behaviour) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		b := a.overrides.get(a.pod.Namespace, image, tag)
		if b.Latency > 0 {
			t := time.NewTimer(b.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		h := w.Header()
		h.Set(HeaderPod, a.pod.Name)
		h.Set(HeaderNamespace, a.pod.Namespace)
		h.Set(HeaderImage, image)
		h.Set(HeaderRevision, a.revision)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		code := http.StatusOK
		if a.fail(b.ErrorShare) {
			code = http.StatusInternalServerError
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, strconv.Itoa(code)+" from "+a.pod.String()+" ("+image+")\n")
		a.count(image, code, time.Since(start))
	})
}
