//go:build bench

package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/bench"
	"github.com/kubeseed/rollouts/test/testenv"
)

// patchWindow is how long each variant is patched (and profiled).
const patchWindow = 15 * time.Second

// crdVariant is a change to the Rollout CRD's schema, or to the answer a
// status patch asks for, whose effect on the cost of a status patch the
// benchmark measures.
type crdVariant struct {
	name   string
	change func(spec *apiextensionsv1.JSONSchemaProps)
	// wholeAnswer asks for the whole Rollout in the answer; the controller
	// asks for its metadata only (patchStatus).
	wholeAnswer bool
}

var crdVariants = []crdVariant{
	{"as shipped, whole Rollout in the answer", asShipped, true},
	{"as shipped", asShipped, false},
	{"no CEL rules", dropCEL, false},
	{"open pod template", openTemplate, false},
	{"no CEL rules, open pod template", func(s *apiextensionsv1.JSONSchemaProps) { dropCEL(s); openTemplate(s) }, false},
}

func asShipped(*apiextensionsv1.JSONSchemaProps) {}

// dropCEL removes every x-kubernetes-validations rule.
func dropCEL(s *apiextensionsv1.JSONSchemaProps) {
	s.XValidations = nil
	for k, p := range s.Properties {
		dropCEL(&p)
		s.Properties[k] = p
	}
	if s.Items != nil && s.Items.Schema != nil {
		dropCEL(s.Items.Schema)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		dropCEL(s.AdditionalProperties.Schema)
	}
}

// openTemplate replaces the pod template's schema under spec.template by
// an object whose fields are kept unvalidated.
func openTemplate(s *apiextensionsv1.JSONSchemaProps) {
	spec := s.Properties["spec"]
	spec.Properties["template"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
	s.Properties["spec"] = spec
}

// BenchmarkScaleStatusPatch measures what one status patch of a Rollout
// costs the control plane, as a function of the CRD's schema. The
// controller takes one Rollout of the scale scenario through a create and
// an update; the benchmark records every status it wrote. Then, with the
// controller stopped and two watchers on the namespace (as in the scale
// run: the controller's informer and the load generator's), it sends those
// statuses again, as the controller does (a JSON patch setting /status),
// to 20 Rollouts from 8 writers for 15 s per schema variant, and divides
// kube-apiserver's and etcd's CPU by the patches sent. kube-apiserver's
// CPU profile of each window goes to bin/bench/status-patch-*.pprof (and
// its top functions to a .txt beside it).
func BenchmarkScaleStatusPatch(b *testing.B) {
	ns := benchNamespace(b, "status-patch")
	statuses := recordStatuses(b, ns)
	smallest, largest := sizes(b, statuses)
	if raw, err := json.MarshalIndent(statuses, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(testenv.RepoRoot(), "bin", "bench", "status-patch-statuses.json"), raw, 0o644)
	}
	const rollouts = 20
	ctx := context.Background()
	for i := range rollouts {
		if err := k8s.Create(ctx, scaleRollout(ns, fmt.Sprintf("patch-%02d", i))); err != nil {
			b.Fatal(err)
		}
	}
	watchers := []*eventWatch{watchEvents(b, ns, &v1alpha1.Rollout{}), watchEvents(b, ns, &v1alpha1.Rollout{})}
	plane, err := controlPlane(cl)
	if err != nil {
		b.Fatal(err)
	}
	shipped := getCRD(b)
	defer putSchema(b, shipped.Spec.Versions[0].Schema.OpenAPIV3Schema)

	res := bench.Result{
		Name:    "status patch",
		Columns: []string{"schema", "patches", "kube-apiserver ms/patch", "etcd ms/patch", "patches/s"},
		Note: fmt.Sprintf("One Rollout of the scale scenario's statuses (%d, %d–%d bytes, as the controller wrote them during a create and an update) "+
			"sent again as JSON patches of /status to %d Rollouts by 8 writers for %s per schema, two watchers on the namespace; "+
			"CPU from /proc, divided by the patches sent.", len(statuses), smallest, largest, rollouts, patchWindow),
	}
	for _, v := range crdVariants {
		schema := shipped.Spec.Versions[0].Schema.OpenAPIV3Schema.DeepCopy()
		v.change(schema)
		putSchema(b, schema)
		before, err := cpuByName(plane)
		if err != nil {
			b.Fatal(err)
		}
		profiled := profile(b, "status-patch-"+slug(v.name), patchWindow)
		n := patchFor(b, ns, rollouts, statuses, patchWindow, v.wholeAnswer)
		after, err := cpuByName(plane)
		if err != nil {
			b.Fatal(err)
		}
		api := float64((after["kube-apiserver"] - before["kube-apiserver"]).Milliseconds()) / float64(n)
		etcd := float64((after["etcd"] - before["etcd"]).Milliseconds()) / float64(n)
		res.Rows = append(res.Rows, []string{v.name, fmt.Sprint(n), fmt.Sprintf("%.2f", api), fmt.Sprintf("%.2f", etcd),
			fmt.Sprintf("%.0f", float64(n)/patchWindow.Seconds())})
		res.Metrics = append(res.Metrics, bench.Metric{Unit: "apiserver-ms/patch-" + slug(v.name), Value: api})
		profiled()
	}
	for _, w := range watchers {
		w.stop()
	}
	publish(b, res)
}

// recordStatuses runs the controller while one Rollout is created and
// updated, and returns each status it wrote, in order.
func recordStatuses(b *testing.B, ns string) []v1alpha1.RolloutStatus {
	b.Helper()
	w := watchEvents(b, ns, &v1alpha1.Rollout{})
	defer w.stop()
	var mu sync.Mutex
	var seen []v1alpha1.RolloutStatus
	w.onEvent(func(obj client.Object, _ time.Time) {
		ro, ok := obj.(*v1alpha1.Rollout)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 || !equality.Semantic.DeepEqual(seen[len(seen)-1], ro.Status) {
			seen = append(seen, *ro.Status.DeepCopy())
		}
	})
	ctl := startController(b, "controller-status-patch")
	ctx := context.Background()
	done := w.track(1, healthyOn("app:1"))
	if err := k8s.Create(ctx, scaleRollout(ns, "app")); err != nil {
		b.Fatal(err)
	}
	done.wait(b, w)
	done = w.track(1, healthyOn("app:2"))
	setRolloutImage(b, ns, "app", 2)
	done.wait(b, w)
	if err := ctl.Stop(30 * time.Second); err != nil {
		b.Errorf("controller did not stop cleanly: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := seen[:0]
	for _, st := range seen {
		if !equality.Semantic.DeepEqual(st, v1alpha1.RolloutStatus{}) {
			out = append(out, st)
		}
	}
	if len(out) < 2 {
		b.Fatalf("only %d statuses recorded", len(out))
	}
	return out
}

// patchFor sends the statuses in turn to the Rollouts patch-NN for d and
// returns how many patches it sent.
func patchFor(b *testing.B, ns string, rollouts int, statuses []v1alpha1.RolloutStatus, d time.Duration, wholeAnswer bool) int {
	b.Helper()
	patches := make([][]byte, len(statuses))
	for i, st := range statuses {
		patches[i] = statusPatch(b, st)
	}
	var sent atomic.Int64
	var failed atomic.Pointer[error]
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for wkr := range 8 {
		wg.Go(func() {
			for i := wkr; time.Now().Before(stop); i += 8 {
				name, patch := fmt.Sprintf("patch-%02d", i%rollouts), patches[(i/rollouts)%len(patches)]
				if err := sendStatusPatch(context.Background(), patchTarget(ns, name, wholeAnswer), patch); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return int(sent.Load())
}

// patchStatus sends a JSON patch of a Rollout's status as the controller
// does: its answer is the Rollout's metadata only.
func patchStatus(ctx context.Context, ns, name string, patch []byte) error {
	return sendStatusPatch(ctx, patchTarget(ns, name, false), patch)
}

// patchTarget is the Rollout a status patch goes to, as the object its
// answer is decoded into: the whole Rollout, or its metadata only.
func patchTarget(ns, name string, whole bool) client.Object {
	meta := metav1.ObjectMeta{Namespace: ns, Name: name}
	if whole {
		return &v1alpha1.Rollout{ObjectMeta: meta}
	}
	ro := &metav1.PartialObjectMetadata{ObjectMeta: meta}
	ro.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Rollout"))
	return ro
}

func sendStatusPatch(ctx context.Context, ro client.Object, patch []byte) error {
	return k8s.Status().Patch(ctx, ro, client.RawPatch(types.JSONPatchType, patch), client.FieldOwner(v1alpha1.FieldManager))
}

// statusPatch is a JSON patch that sets a Rollout's status to st, as the
// controller writes it.
func statusPatch(b *testing.B, st v1alpha1.RolloutStatus) []byte {
	b.Helper()
	raw, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": st}})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// crds reads and writes CustomResourceDefinitions.
func crds(b *testing.B) client.Client {
	b.Helper()
	s := apis.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		b.Fatal(err)
	}
	c, err := client.New(config, client.Options{Scheme: s})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func getCRD(b *testing.B) *apiextensionsv1.CustomResourceDefinition {
	b.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := crds(b).Get(context.Background(), client.ObjectKey{Name: "rollouts.rollouts.kubeseed.io"}, crd); err != nil {
		b.Fatal(err)
	}
	return crd
}

// putSchema makes schema the Rollout CRD's and gives kube-apiserver time
// to serve it (it rebuilds a CRD's handler in the background).
func putSchema(b *testing.B, schema *apiextensionsv1.JSONSchemaProps) {
	b.Helper()
	crd := getCRD(b)
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema = schema
	if err := crds(b).Update(context.Background(), crd); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second)
}

// apiserverProfile is kube-apiserver's CPU profile over d.
func apiserverProfile(b *testing.B, d time.Duration) []byte {
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		b.Error(err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", fmt.Sprint(int(d.Seconds()))).DoRaw(ctx)
	if err != nil {
		b.Errorf("kube-apiserver's profile: %v", err)
		return nil
	}
	return raw
}

// controllerManagerProfile is kube-controller-manager's CPU profile over
// d, read from its secure port as cluster-admin (it delegates the client
// certificate's check to kube-apiserver; its serving certificate is its
// own, self-signed).
func controllerManagerProfile(b *testing.B, d time.Duration) []byte {
	port, err := securePort("kube-controller")
	if err != nil {
		b.Error(err)
		return nil
	}
	c := rest.CopyConfig(config)
	c.Insecure, c.CAFile, c.CAData = true, "", nil
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		b.Error(err)
		return nil
	}
	hc.Timeout = d + 30*time.Second
	return fetchProfile(b, "kube-controller-manager's profile", hc, fmt.Sprintf("https://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(d.Seconds())))
}

// controllerHeap saves the controller's heap profile as <name>-heap, if
// BENCH_CONTROLLER_ARGS has it serve pprof.
func controllerHeap(b *testing.B, name string) {
	b.Helper()
	var addr string
	for _, arg := range strings.Fields(os.Getenv("BENCH_CONTROLLER_ARGS")) {
		if v, ok := strings.CutPrefix(arg, "--pprof-bind-address="); ok {
			addr = v
		}
	}
	if addr == "" {
		return
	}
	saveProfile(b, name+"-heap", fetchProfile(b, "the controller's heap profile", http.DefaultClient, "http://"+addr+"/debug/pprof/heap"))
}

// fetchProfile GETs a pprof endpoint; on failure it reports what (the
// profile's name) failed and returns nil, which saveProfile skips.
func fetchProfile(b *testing.B, what string, hc *http.Client, url string) []byte {
	b.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		b.Errorf("%s: %v", what, err)
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, raw)
	}
	if err != nil {
		b.Errorf("%s: %v", what, err)
		return nil
	}
	return raw
}

// profile starts CPU profiles of kube-apiserver and kube-controller-manager
// over the next d (none if d is 0); the function it returns waits for them
// and writes them, with their top functions, to bin/bench/<name>.pprof and
// .txt (kube-apiserver) and <name>-kcm.pprof and .txt.
func profile(b *testing.B, name string, d time.Duration) (wait func()) {
	if d <= 0 {
		return func() {}
	}
	apiserver, kcm := make(chan []byte, 1), make(chan []byte, 1)
	go func() { apiserver <- apiserverProfile(b, d) }()
	go func() { kcm <- controllerManagerProfile(b, d) }()
	return func() {
		saveProfile(b, name, <-apiserver)
		saveProfile(b, name+"-kcm", <-kcm)
	}
}

// saveProfile writes the profile and its top functions to bin/bench.
func saveProfile(b *testing.B, name string, prof []byte) {
	b.Helper()
	if prof == nil {
		return
	}
	dir := filepath.Join(testenv.RepoRoot(), "bin", "bench")
	path := filepath.Join(dir, name+".pprof")
	if err := os.WriteFile(path, prof, 0o644); err != nil {
		b.Fatal(err)
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", path).CombinedOutput()
	if err != nil {
		b.Errorf("go tool pprof: %v\n%s", err, top)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), top, 0o644); err != nil {
		b.Fatal(err)
	}
}

func slug(s string) string {
	out := []byte{}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		case len(out) > 0 && out[len(out)-1] != '-':
			out = append(out, '-')
		}
	}
	return string(out)
}

// sizes are the statuses' lengths in JSON: the smallest and the largest.
func sizes(b *testing.B, sts []v1alpha1.RolloutStatus) (smallest, largest int) {
	b.Helper()
	var ns []int
	for _, st := range sts {
		raw, err := json.Marshal(st)
		if err != nil {
			b.Fatal(err)
		}
		ns = append(ns, len(raw))
	}
	return slices.Min(ns), slices.Max(ns)
}
