// Package testenv starts a real kube-apiserver and etcd (envtest) with every
// CRD the controller works with installed: ours from manifests/crds, Istio's
// from the istio.io/api module and Gateway API's standard channel from the
// sigs.k8s.io/gateway-api module. The binaries come from bin/ (make tools).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubeseed/rollouts/internal/cachetransform"
	"github.com/kubeseed/rollouts/pkg/apis"
)

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client client.Client
	env    *envtest.Environment
}

// RepoRoot returns the root of the checkout.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: cannot locate source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CRDPaths returns the CRD files to install: ours, Istio's and Gateway API's.
func CRDPaths() ([]string, error) {
	routers, err := RouterCRDPaths()
	if err != nil {
		return nil, err
	}
	return append([]string{filepath.Join(RepoRoot(), "manifests", "crds")}, routers...), nil
}

// RouterCRDPaths returns the CRD files of the traffic routers' APIs: Istio
// (from the istio.io/api module) and the Gateway API standard channel (from
// the sigs.k8s.io/gateway-api module).
func RouterCRDPaths() ([]string, error) {
	root := RepoRoot()
	var paths []string
	istio, err := moduleDir(root, "istio.io/api")
	if err != nil {
		return nil, err
	}
	paths = append(paths, filepath.Join(istio, "kubernetes", "customresourcedefinitions.gen.yaml"))
	gw, err := moduleDir(root, "sigs.k8s.io/gateway-api")
	if err != nil {
		return nil, err
	}
	// The standard channel also ships a ValidatingAdmissionPolicy; take only
	// the CRDs.
	gwCRDs, err := filepath.Glob(filepath.Join(gw, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, p := range gwCRDs {
		if !strings.Contains(filepath.Base(p), "_vap_") {
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// moduleDir finds the directory of a dependency in the module cache.
func moduleDir(root, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("locating module %s: %w: %s", module, err, ee.Stderr)
		}
		return "", fmt.Errorf("locating module %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("module %s is not downloaded; run go mod download", module)
	}
	return dir, nil
}

// Start starts etcd and kube-apiserver from bin/ and installs the CRDs.
func Start() (*Env, error) {
	root := RepoRoot()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run make tools", b, assets)
		}
	}
	crds, err := CRDPaths()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		Scheme:                apis.NewScheme(),
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              crds,
			ErrorIfPathMissing: true,
		},
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return &Env{Config: cfg, Client: c, env: env}, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.env.Stop() }

// Kubeconfig writes a kubeconfig for the control plane into a temporary
// directory of the test and returns its path, for tools that take one (the
// kubectl plugin).
func (e *Env) Kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, e.env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Namespace creates a namespace with a random name for one test, so tests can
// run in parallel against one control plane, and deletes it afterwards.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("t-%s-%s", sanitize(t.Name()), hex.EncodeToString(b))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), ns) })
	return name
}

// sanitize turns a test name into a short DNS label fragment.
func sanitize(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.Trim(out[:40], "-")
	}
	return out
}

// Main runs a package's tests against one shared control plane, stored in
// *env for the tests to use.
func Main(m *testing.M, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stopping:", err)
	}
	os.Exit(code)
}

// StartManager runs a controller manager against the control plane with the
// reconcilers setup registers (each with name validation off, so tests may
// start several), and stops it with the test.
func (e *Env) StartManager(t testing.TB, setup func(mgr manager.Manager, opts controller.Options) error) {
	t.Helper()
	ctrl.SetLogger(logr.Discard())
	// The production cache transform, so that tests catch a write that
	// would carry a trimmed object back to the API server.
	mgr, err := ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:  apis.NewScheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{DefaultTransform: cachetransform.Trim},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(mgr, controller.Options{SkipNameValidation: ptr.To(true)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}
