// Package kwok runs a local Kubernetes cluster for tests and benchmarks —
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
// processes, with kwok simulating the nodes (test/e2e/cluster.sh) — and the
// controller binary against it as a process of its own.
package kwok

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is a running local cluster.
type Cluster struct {
	Name       string
	Kubeconfig string // cluster-admin
	Root       string // the repository: binaries are in Root/bin
	LogDir     string
}

// Options shape a cluster.
type Options struct {
	Nodes int
	// DisableQPSLimits lifts the control plane's client rate limits, so
	// the controller under test is the only one that throttles itself.
	DisableQPSLimits bool
	// AuditPolicy is the path of an audit policy (audit.k8s.io/v1) for the
	// kube-apiserver, which then writes AuditLog.
	AuditPolicy string
}

// Up starts the cluster name; its kubeconfig and logs go to logDir.
func Up(root, name, logDir string, o Options) (*Cluster, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Kubeconfig: filepath.Join(logDir, "kubeconfig"), Root: root, LogDir: logDir}
	cmd := exec.Command(c.script(), "up", name, fmt.Sprint(max(o.Nodes, 1)), c.Kubeconfig)
	cmd.Env = append(os.Environ(), fmt.Sprintf("DISABLE_QPS_LIMITS=%t", o.DisableQPSLimits), "AUDIT_POLICY="+o.AuditPolicy)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("starting cluster %s: %w\n%s", name, err, out)
	}
	return c, nil
}

func (c *Cluster) script() string { return filepath.Join(c.Root, "test", "e2e", "cluster.sh") }

// Down stops the cluster and removes its state.
func (c *Cluster) Down() {
	if out, err := exec.Command(c.script(), "down", c.Name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping cluster: %v\n%s", err, out)
	}
}

// WorkDir is where kwokctl keeps the cluster's state: every process of its
// control plane names it on its command line.
func (c *Cluster) WorkDir() string {
	return filepath.Join(c.Root, "bin", "clusters", "clusters", c.Name)
}

// AuditLog is the kube-apiserver's audit log (JSON lines), written when the
// cluster was started with Options.AuditPolicy.
func (c *Cluster) AuditLog() string { return filepath.Join(c.WorkDir(), "logs", "audit.log") }

// Bin is the path of a binary of bin/.
func (c *Cluster) Bin(name string) string { return filepath.Join(c.Root, "bin", name) }

// Kubectl runs bin/kubectl against the cluster as cluster-admin.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Bin("kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Dir = c.Root
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustKubectl is Kubectl that fails the test on error.
func (c *Cluster) MustKubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(context.Background(), stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Impersonating writes a kubeconfig that acts as a ServiceAccount, so a
// process using it has exactly the permissions granted to it.
func (c *Cluster) Impersonating(namespace, serviceAccount string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = fmt.Sprintf("system:serviceaccount:%s:%s", namespace, serviceAccount)
	}
	path := filepath.Join(c.LogDir, fmt.Sprintf("kubeconfig-%s-%s", namespace, serviceAccount))
	return path, clientcmd.WriteToFile(*cfg, path)
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as a
// ServiceAccount with a token from the TokenRequest API, so a process using
// it has exactly the permissions granted to it, and the API server (and its
// audit log) sees the ServiceAccount itself, not an impersonating admin.
func (c *Cluster) ServiceAccountKubeconfig(namespace, serviceAccount string) (string, error) {
	token, err := c.Token(namespace, serviceAccount)
	if err != nil {
		return "", err
	}
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, ai := range cfg.AuthInfos {
		*ai = clientcmdapi.AuthInfo{Token: token}
	}
	path := filepath.Join(c.LogDir, fmt.Sprintf("kubeconfig-token-%s-%s", namespace, serviceAccount))
	return path, clientcmd.WriteToFile(*cfg, path)
}

// Token is a token of the ServiceAccount, valid for a day.
func (c *Cluster) Token(namespace, serviceAccount string) (string, error) {
	out, err := exec.Command(c.Bin("kubectl"), "--kubeconfig", c.Kubeconfig, "-n", namespace, "create", "token", serviceAccount, "--duration=24h").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("token of %s/%s: %w", namespace, serviceAccount, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Controller is a running bin/rollouts process.
type Controller struct {
	Cmd     *exec.Cmd
	LogPath string
	Metrics string // base URL of /metrics: https unless --metrics-secure=false
	Probes  string // base URL of /healthz and /readyz
	done    chan error
	once    sync.Once
	exitErr error
}

// FreePort is a TCP port nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartController runs bin/rollouts with the kubeconfig and extra flags
// (debug logging unless they set --zap-log-level), and waits until /readyz
// answers 200 (every informer synced).
func (c *Cluster) StartController(name, kubeconfig string, args ...string) (*Controller, error) {
	return c.StartControllerCommand(name, func(args []string) *exec.Cmd {
		return exec.Command(c.Bin("rollouts"), args...)
	}, kubeconfig, args...)
}

// StartControllerCommand is StartController with the process made by
// command from the full argument list: the release tests run the binary
// of the image, in the image's filesystem, as its user.
func (c *Cluster) StartControllerCommand(name string, command func(args []string) *exec.Cmd, kubeconfig string, args ...string) (*Controller, error) {
	mp, err := FreePort()
	if err != nil {
		return nil, err
	}
	pp, err := FreePort()
	if err != nil {
		return nil, err
	}
	scheme := "https"
	if slices.Contains(args, "--metrics-secure=false") {
		scheme = "http"
	}
	ctl := &Controller{
		LogPath: filepath.Join(c.LogDir, name+".log"),
		Metrics: fmt.Sprintf("%s://127.0.0.1:%d", scheme, mp),
		Probes:  fmt.Sprintf("http://127.0.0.1:%d", pp),
		done:    make(chan error, 1),
	}
	logFile, err := os.Create(ctl.LogPath)
	if err != nil {
		return nil, err
	}
	all := []string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mp),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", pp),
	}
	if !hasFlag(args, "--zap-log-level") {
		all = append(all, "--zap-log-level=debug")
	}
	ctl.Cmd = command(append(all, args...))
	ctl.Cmd.Stdout = logFile
	ctl.Cmd.Stderr = logFile
	if err := ctl.Cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		ctl.done <- ctl.Cmd.Wait()
		_ = logFile.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := ctl.WaitReady(ctx); err != nil {
		_ = ctl.Stop(5 * time.Second)
		return nil, fmt.Errorf("controller %s never became ready: %w\nlog:\n%s", name, err, ctl.Log())
	}
	return ctl, nil
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// WaitReady waits until /readyz answers 200 and the metrics endpoint
// accepts connections (it starts apart from the probes), or the process exits.
func (ctl *Controller) WaitReady(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := ctl.Exited(); err != nil {
			return false, err
		}
		code, _, err := HTTPGet(ctx, ctl.Probes+"/readyz")
		if ready := err == nil && code == http.StatusOK; !ready {
			return false, nil
		}
		// Any answer will do (401 without a token).
		_, _, err = HTTPGet(ctx, ctl.Metrics+"/metrics")
		return err == nil, nil
	})
}

// Exited returns an error when the process has exited, nil while it runs.
func (ctl *Controller) Exited() error {
	select {
	case err := <-ctl.done:
		ctl.done <- err
		return fmt.Errorf("controller exited: %w", err)
	default:
		return nil
	}
}

// Log is what the process has written so far.
func (ctl *Controller) Log() string {
	b, _ := os.ReadFile(ctl.LogPath)
	return string(b)
}

// Stop sends SIGTERM and waits for the process to exit.
func (ctl *Controller) Stop(timeout time.Duration) error {
	ctl.once.Do(func() {
		_ = ctl.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case ctl.exitErr = <-ctl.done:
		case <-time.After(timeout):
			_ = ctl.Cmd.Process.Kill()
			ctl.exitErr = errors.Join(errors.New("did not exit after SIGTERM"), <-ctl.done)
		}
	})
	return ctl.exitErr
}

// HTTPGet returns the status code and body of a GET.
func HTTPGet(ctx context.Context, url string) (int, string, error) {
	return HTTPGetWithToken(ctx, url, "")
}

// loopbackTLS trusts any certificate, which is safe only because tests dial
// loopback addresses alone: the controller's /metrics certificate is
// self-signed.
var loopbackTLS = &http.Client{Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback only, self-signed
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("refusing to dial %s: tests dial loopback only", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	},
}}

// HTTPGetWithToken is HTTPGet with a bearer token, if not empty.
func HTTPGetWithToken(ctx context.Context, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := loopbackTLS.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, err = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String(), err
}

// Kill kills the process (no graceful shutdown) and returns how it exited.
func (ctl *Controller) Kill() error {
	ctl.once.Do(func() {
		_ = ctl.Cmd.Process.Kill()
		ctl.exitErr = <-ctl.done
	})
	return ctl.exitErr
}
