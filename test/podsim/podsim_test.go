package podsim

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/loopback"
)

// freePort is a port nothing listens on at 127.0.0.1 now.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// runningPod is a Running pod on 127.0.0.1 (the one loopback address every
// OS has) declaring ports.
func runningPod(uid, image string, ports ...int32) *corev1.Pod {
	c := corev1.Container{Name: "web", Image: image}
	for _, p := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: p})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "web-" + uid, UID: types.UID(uid),
			Labels: map[string]string{v1alpha1.PodTemplateHashLabel: "abc123"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}},
		Status: corev1.PodStatus{
			Phase:   corev1.PodRunning,
			PodIP:   "127.0.0.1",
			PodIPs:  []corev1.PodIP{{IP: "127.0.0.1"}},
			HostIPs: []corev1.HostIP{{IP: "127.0.1.1"}},
		},
	}
}

// client opens a connection per request: a stopped pod refuses new
// connections at once, while one kept alive may still carry a request as
// the pod drains.
var client = &http.Client{Transport: &http.Transport{DialContext: loopback.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}

// answer is what a GET got.
type answer struct {
	status int
	header http.Header
	body   string
}

func get(addr string) (answer, error) {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return answer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, err
}

func TestServesARunningPodUntilItGoes(t *testing.T) {
	var log bytes.Buffer
	s := newSimulator(&log)
	port := freePort(t)
	p := runningPod("a", "registry.example/web:2", port)
	s.sync(p)
	addr := net.JoinHostPort("127.0.0.1", itoa(port))

	resp, err := get(addr)
	if err != nil {
		t.Fatalf("GET %s: %v\nlog:\n%s", addr, err, log.String())
	}
	if resp.status != http.StatusOK {
		t.Errorf("status %d, want 200", resp.status)
	}
	for h, want := range map[string]string{
		HeaderPod: "web-a", HeaderNamespace: "ns", HeaderImage: "registry.example/web:2", HeaderRevision: "abc123",
	} {
		if got := resp.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(resp.body, "ns/web-a") {
		t.Errorf("body %q does not name the pod", resp.body)
	}

	// Deleting: the address is free at once, for the pod kwok gives it
	// to next.
	deleting := p.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	s.sync(deleting)
	if _, err := get(addr); err == nil {
		t.Fatalf("GET %s answered after the pod was deleted", addr)
	}
	next := runningPod("b", "web:3", port)
	s.sync(next)
	resp, err = get(addr)
	if err != nil || resp.header.Get(HeaderPod) != "web-b" {
		t.Fatalf("GET %s after its reuse: %v %v", addr, resp, err)
	}
	s.sync(&corev1.Pod{ObjectMeta: next.ObjectMeta, Spec: next.Spec, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}})
	if _, err := get(addr); err == nil {
		t.Fatalf("GET %s answered after the pod left Running", addr)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err: %v", err)
	}
}

func TestErrorShareIsExact(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	s.sync(runningPod("a", "web:bad-30", port))
	defer stopAll(s)
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	failed := 0
	for range 100 {
		resp, err := get(addr)
		if err != nil {
			t.Fatal(err)
		}
		if resp.status == http.StatusInternalServerError {
			failed++
		}
	}
	if failed != 30 {
		t.Errorf("web:bad-30 failed %d of 100 requests, want 30", failed)
	}
}

func TestLatency(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	s.sync(runningPod("a", "web:slow-150ms", port))
	defer stopAll(s)
	start := time.Now()
	if _, err := get(net.JoinHostPort("127.0.0.1", itoa(port))); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered in %s, want at least 150ms", d)
	}
}

func TestRefusesAddressesOutsideLoopback(t *testing.T) {
	for name, mutate := range map[string]func(p *corev1.Pod){
		"pod IP":          func(p *corev1.Pod) { p.Status.PodIP = "10.0.0.1"; p.Status.PodIPs = nil },
		"second pod IP":   func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "fd00::1"}) },
		"host IP":         func(p *corev1.Pod) { p.Status.HostIPs = []corev1.HostIP{{IP: "192.0.2.1"}} },
		"unreadable hint": func(p *corev1.Pod) { p.Spec.Containers[0].Image = "web:bad-200" },
	} {
		t.Run(name, func(t *testing.T) {
			var log bytes.Buffer
			s := newSimulator(&log)
			p := runningPod("a", "web:1", freePort(t))
			mutate(p)
			s.sync(p)
			s.sync(p) // reported once
			if len(s.pods) != 0 {
				t.Errorf("pod served: %v", s.pods)
			}
			err := s.Err()
			if err == nil || strings.Count(err.Error(), "pod ns/web-a") != 1 {
				t.Errorf("Err = %v, want one problem naming the pod", err)
			}
			if !strings.Contains(log.String(), "Refusing to serve") {
				t.Errorf("nothing logged:\n%s", log.String())
			}
		})
	}
}

func TestRefusesAnAddressTwoPodsShare(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	s.sync(runningPod("a", "web:1", port))
	defer stopAll(s)
	s.sync(runningPod("b", "web:1", port))
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "is already pod ns/web-a's") {
		t.Errorf("Err = %v, want the shared address", err)
	}
	if _, ok := s.pods["b"]; ok {
		t.Error("the second pod is served")
	}
}

func TestPorts(t *testing.T) {
	p := runningPod("a", "web:1")
	eps, err := endpoints(p)
	if err != nil || len(eps) != 1 || eps[0].addr.Port() != DefaultPort {
		t.Errorf("no declared port: %v %v, want %d", eps, err, DefaultPort)
	}
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "side:1", Ports: []corev1.ContainerPort{{ContainerPort: 9001}}})
	eps, err = endpoints(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eps {
		got = append(got, e.addr.String()+" "+e.image)
	}
	if want := "127.0.0.1:9000 web:1,127.0.0.1:9001 side:1"; strings.Join(got, ",") != want {
		t.Errorf("endpoints %v, want %s", got, want)
	}
}

func TestStopDrainsRequestsInFlight(t *testing.T) {
	s := newSimulator(io.Discard)
	port := freePort(t)
	s.sync(runningPod("a", "web:slow-300ms", port))
	done := make(chan error, 1)
	go func() {
		resp, err := get(net.JoinHostPort("127.0.0.1", itoa(port)))
		if err == nil && resp.status != http.StatusOK {
			err = errStatus(resp.status)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	stopAll(s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("request in flight when the pod stopped: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("request in flight never finished")
	}
}

type errStatus int

func (e errStatus) Error() string { return "status " + strconv.Itoa(int(e)) }

func itoa(port int32) string { return strconv.Itoa(int(port)) }

// stopAll stops serving, as the end of a test.
func stopAll(s *Simulator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.pods {
		s.stop(uid, "test over")
	}
}

func TestPodHandler(t *testing.T) {
	var synced, gone []string
	h := PodHandler(
		func(p *corev1.Pod) { synced = append(synced, p.Name) },
		func(p *corev1.Pod) { gone = append(gone, p.Name) },
	)
	a, b, c := runningPod("a", "web:1"), runningPod("b", "web:1"), runningPod("c", "web:1")
	h.OnAdd(a, false)
	h.OnUpdate(a, b)
	h.OnDelete(c)
	// A deletion the informer missed comes as the pod's last known state.
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/web-a", Obj: a})
	if got := strings.Join(synced, ","); got != "web-a,web-b" {
		t.Errorf("synced %s, want web-a,web-b", got)
	}
	if got := strings.Join(gone, ","); got != "web-c,web-a" {
		t.Errorf("gone %s, want web-c,web-a", got)
	}
}
