package podsim

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/workqueue"
)

func service(targetPort intstr.IntOrString) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-stable", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: targetPort, Protocol: corev1.ProtocolTCP}},
		},
	}
}

// webPod is a pod of app web on node-0 at ip, Ready or not.
func webPod(name, ip string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid"), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-0", Containers: []corev1.Container{{
			Name: "web", Image: "web:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
		},
	}
}

// summary is "name ip ready/serving/terminating" per endpoint and the
// ports of each slice.
func summary(ss []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range ss {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d", *p.Name, *p.Port))
		}
		line := fmt.Sprintf("%s %s [%s]", s.Name, s.AddressType, strings.Join(ports, ","))
		for _, e := range s.Endpoints {
			line += fmt.Sprintf(" %s=%s %t/%t/%t", e.TargetRef.Name, e.Addresses[0], *e.Conditions.Ready, *e.Conditions.Serving, *e.Conditions.Terminating)
		}
		out = append(out, line)
	}
	return out
}

func TestDesiredSlicesFollowTheEndpointSliceController(t *testing.T) {
	deleting := webPod("d", "127.1.0.4", true)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	done := webPod("e", "127.1.0.5", false)
	done.Status.Phase = corev1.PodSucceeded
	otherPort := webPod("f", "127.1.0.6", true)
	otherPort.Spec.Containers[0].Ports[0].ContainerPort = 9090
	pods := []*corev1.Pod{
		webPod("b", "127.1.0.2", false),
		webPod("a", "127.1.0.1", true),
		deleting,
		done,
		webPod("c", "", true),         // no IP yet
		webPod("g", "10.0.0.7", true), // outside loopback: never published
		otherPort,
	}
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want []string
	}{
		{"target port by number", service(intstr.FromInt32(8080)), []string{
			"web-stable-podsim-02a3c15c FQDN [http:8080] a=127.1.0.1 true/true/false b=127.1.0.2 false/false/false d=127.1.0.4 false/true/true f=127.1.0.6 true/true/false",
		}},
		{"target port by name, resolved per pod", service(intstr.FromString("http")), []string{
			"web-stable-podsim-02a3c15c FQDN [http:8080] a=127.1.0.1 true/true/false b=127.1.0.2 false/false/false d=127.1.0.4 false/true/true",
			"web-stable-podsim-c1086de8 FQDN [http:9090] f=127.1.0.6 true/true/false",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := desiredSlices(tc.svc, pods)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summary(got)); diff != "" {
				t.Errorf("slices (-want +got):\n%s", diff)
			}
			for _, s := range got {
				if s.Labels[discoveryv1.LabelServiceName] != "web-stable" || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
					t.Errorf("labels %v", s.Labels)
				}
				if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" {
					t.Errorf("owner %v", s.OwnerReferences)
				}
			}
		})
	}

	notReady := service(intstr.FromInt32(8080))
	notReady.Spec.PublishNotReadyAddresses = true
	got, _ := desiredSlices(notReady, []*corev1.Pod{webPod("b", "127.1.0.2", false)})
	if s := summary(got); len(s) != 1 || !strings.HasSuffix(s[0], "b=127.1.0.2 true/false/false") {
		t.Errorf("publishNotReadyAddresses: %v", s)
	}
}

// TestPublisherCreatesUpdatesAndDeletes drives the publisher against a
// fake clientset as pods come, become ready and go, and as the Service's
// selector moves away from them.
func TestPublisherCreatesUpdatesAndDeletes(t *testing.T) {
	ctx := context.Background()
	svc := service(intstr.FromInt32(8080))
	cs := fake.NewClientset(svc)
	f := informers.NewSharedInformerFactory(cs, 0)
	p := &publisher{
		client:   cs,
		log:      slog.New(slog.DiscardHandler),
		services: f.Core().V1().Services().Lister(),
		pods:     f.Core().V1().Pods().Lister(),
		slices:   f.Discovery().V1().EndpointSlices().Lister(),
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]()),
		fail:     func(_ types.NamespacedName, err error) { t.Error(err) },
	}
	indexers := map[string]func(obj any) error{
		"svc":   f.Core().V1().Services().Informer().GetIndexer().Add,
		"pod":   f.Core().V1().Pods().Informer().GetIndexer().Add,
		"slice": f.Discovery().V1().EndpointSlices().Informer().GetIndexer().Add,
	}
	if err := indexers["svc"](svc); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "ns", Name: "web-stable"}
	// sync publishes, then feeds the publisher's cache what the API
	// server now holds, as the informer would.
	sync := func() []string {
		t.Helper()
		if err := p.sync(ctx, key); err != nil {
			t.Fatal(err)
		}
		list, err := cs.DiscoveryV1().EndpointSlices("ns").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		store := f.Discovery().V1().EndpointSlices().Informer().GetStore()
		var items []any
		var out []*discoveryv1.EndpointSlice
		for i := range list.Items {
			items = append(items, &list.Items[i])
			out = append(out, &list.Items[i])
		}
		if err := store.Replace(items, ""); err != nil {
			t.Fatal(err)
		}
		return summary(out)
	}

	empty := []string{"web-stable-podsim-e3b0c442 FQDN []"}
	if diff := cmp.Diff(empty, sync()); diff != "" {
		t.Fatalf("no pods: want an empty slice (-want +got):\n%s", diff)
	}
	a := webPod("a", "127.1.0.1", false)
	_ = indexers["pod"](a)
	if diff := cmp.Diff([]string{"web-stable-podsim-02a3c15c FQDN [http:8080] a=127.1.0.1 false/false/false"}, sync()); diff != "" {
		t.Errorf("a pod not ready yet (-want +got):\n%s", diff)
	}
	a = webPod("a", "127.1.0.1", true)
	_ = f.Core().V1().Pods().Informer().GetIndexer().Update(a)
	if diff := cmp.Diff([]string{"web-stable-podsim-02a3c15c FQDN [http:8080] a=127.1.0.1 true/true/false"}, sync()); diff != "" {
		t.Errorf("the pod ready (-want +got):\n%s", diff)
	}
	writes := len(cs.Actions())
	sync()
	if n := len(cs.Actions()) - writes; n != 1 { // the List of sync itself
		t.Errorf("an unchanged Service made %d requests, want none but the test's list", n-1)
	}
	moved := svc.DeepCopy()
	moved.Spec.Selector = map[string]string{"app": "web", "rollouts.kubeseed.io/pod-template-hash": "other"}
	_ = f.Core().V1().Services().Informer().GetIndexer().Update(moved)
	if diff := cmp.Diff(empty, sync()); diff != "" {
		t.Errorf("the selector moved away from every pod: want the empty slice alone (-want +got):\n%s", diff)
	}
}
