//go:build e2e

package e2e

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeseed/rollouts/test/load"
	"github.com/kubeseed/rollouts/test/podsim"
	"github.com/kubeseed/rollouts/test/testenv"
)

// Real requests for the analysis tests: every Ready pod of a served
// namespace is sent a steady load straight to its address (test/load), the
// pod simulator answers it as the pod's image — or the behaviour a test set
// for it — says and counts the answers (podsim.RequestsMetric,
// podsim.DurationMetric), and a real Prometheus scrapes the counts.

const (
	// podRate is the requests per second each Ready pod gets: enough for
	// a share or a median over a few seconds, little for the machine.
	podRate = 10
	// maxLoadedPods bounds the pods of a namespace that get load: the
	// tests share two cores with the cluster and the controller.
	maxLoadedPods = 12
)

// podTraffic is the load on the Ready pods of one namespace.
type podTraffic struct {
	t  *testing.T
	ns string
	wg sync.WaitGroup

	mu   sync.Mutex
	gens map[types.UID]*load.Generator
	// done are the requests of generators stopped so far.
	done load.Results
}

// serve sends podRate requests a second to each Ready pod of ns, at its
// loopback address and container port, from the moment it is Ready until
// it is not or the test ends.
func serve(t *testing.T, ns string) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	pt := &podTraffic{t: t, ns: ns, gens: map[types.UID]*load.Generator{}}
	if _, err := inf.AddEventHandler(podsim.PodHandler(pt.sync, func(p *corev1.Pod) { pt.stop(p.UID) })); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
		pt.stopAll()
	})
	factory.Start(ctx.Done())
	syncCtx, cancelSync := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatalf("the pods of %s did not sync", ns)
	}
}

// sync starts or stops the load on a pod as it is Ready or not.
func (pt *podTraffic) sync(p *corev1.Pod) {
	if !podReady(p) {
		pt.stop(p.UID)
		return
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.gens[p.UID] != nil {
		return
	}
	if len(pt.gens) == maxLoadedPods {
		pt.t.Errorf("more than %d Ready pods in %s: pod %s gets no load", maxLoadedPods, pt.ns, p.Name)
		return
	}
	// Loopback only: podsim gives no address outside it, load dials none.
	addrs, err := podsim.Addresses(p)
	if err != nil || len(addrs) == 0 {
		pt.t.Errorf("pod %s: no address to send to: %v", p.Name, err)
		return
	}
	g, err := load.Start(context.Background(), load.Target{URL: "http://" + addrs[0].String() + "/"}, load.Options{Rate: podRate})
	if err != nil {
		pt.t.Errorf("pod %s: %v", p.Name, err)
		return
	}
	pt.gens[p.UID] = g
}

// podReady: a Running, Ready pod not being deleted gets requests.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// stop stops the load on a pod; the requests in flight end on their own.
func (pt *podTraffic) stop(uid types.UID) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	g := pt.gens[uid]
	if g == nil {
		return
	}
	delete(pt.gens, uid)
	pt.wg.Go(func() {
		rs := g.Stop()
		pt.mu.Lock()
		pt.done = append(pt.done, rs...)
		pt.mu.Unlock()
	})
}

// stopAll stops the load on every pod and logs what was sent. Requests to
// a pod deleted while they were sent find nobody listening: that is the
// pod going, as it does for any client, so failures are counted only.
func (pt *podTraffic) stopAll() {
	pt.mu.Lock()
	uids := slices.Collect(maps.Keys(pt.gens))
	pt.mu.Unlock()
	for _, uid := range uids {
		pt.stop(uid)
	}
	pt.wg.Wait()
	answering := map[string]bool{}
	for _, r := range pt.done {
		if r.Pod != "" {
			answering[r.Pod] = true
		}
	}
	pt.t.Logf("sent %d requests to the pods of %s, %d answered them, %d requests failed (answered with 500 or not at all)",
		len(pt.done), pt.ns, len(answering), len(pt.done.Failures()))
}

// setBehaviour makes the pods of image in ns answer as b from their next
// request on, until the test ends.
func setBehaviour(t *testing.T, ns, image string, b podsim.Behaviour) {
	t.Helper()
	if err := pods.SetBehaviour(ns, image, b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pods.ResetBehaviours(ns) })
}

// trafficCase is a subtest that needs the pods' metrics in a Prometheus
// (its address is the second argument).
type trafficCase struct {
	name string
	run  func(t *testing.T, prometheus string)
}

// withTraffic starts one Prometheus scraping the pod simulator for the
// cases and runs them as parallel subtests; series carry each case's
// namespace.
func withTraffic(t *testing.T, cases ...trafficCase) {
	t.Helper()
	prom := testenv.StartPrometheus(t, pods.Metrics)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, prom)
		})
	}
}
