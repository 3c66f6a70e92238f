// Package kwok runs a local Kubernetes cluster for tests and benchmarks —
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
// processes, with kwok simulating the nodes (test/e2e/cluster.sh) — and the
// controller binary against it as a process of its own.
package kwok

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeseed/rollouts/test/loopback"
)

// Cluster is a running local cluster.
type Cluster struct {
	Name       string
	Kubeconfig string // cluster-admin
	Root       string // the repository: binaries are in Root/bin
	LogDir     string
	// Loopback holds every pod IP and node address of the cluster.
	Loopback netip.Prefix
	// block is the claim on Loopback, if any, held until Down: it must
	// stay reachable, or the finalizer of its file would end it.
	block *loopback.Block
}

// defaultBlock is cluster.sh's LOOPBACK_BLOCK default.
var defaultBlock = netip.MustParsePrefix("127.1.0.0/16")

// Options shape a cluster.
type Options struct {
	Nodes int
	// DisableQPSLimits lifts the control plane's client rate limits, so
	// the controller under test is the only one that throttles itself.
	DisableQPSLimits bool
	// AuditPolicy is the path of an audit policy (audit.k8s.io/v1) for the
	// kube-apiserver, which then writes AuditLog.
	AuditPolicy string
	// Loopback is the block the nodes take pod IPs and addresses from,
	// released by Down; nil takes 127.1.0.0/16, which suits clusters whose
	// pods nobody serves. Claim one (loopback.Claim) to serve the pods.
	Loopback *loopback.Block
	// ProfileControllerManager lets anyone read kube-controller-manager's
	// /debug/pprof on its secure port (loopback only), as /metrics.
	ProfileControllerManager bool
}

// Up starts the cluster name; its kubeconfig and logs go to logDir.
func Up(root, name, logDir string, o Options) (*Cluster, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	c := newCluster(root, name, filepath.Join(logDir, "kubeconfig"), logDir, o.Loopback)
	cmd := exec.Command(c.script(), "up", name, fmt.Sprint(max(o.Nodes, 1)), c.Kubeconfig)
	cmd.Env = append(os.Environ(), fmt.Sprintf("DISABLE_QPS_LIMITS=%t", o.DisableQPSLimits), "AUDIT_POLICY="+o.AuditPolicy,
		fmt.Sprintf("PROFILE_CONTROLLER_MANAGER=%t", o.ProfileControllerManager),
		fmt.Sprintf("LOOPBACK_BLOCK=%d", c.Loopback.Addr().As4()[1]))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("starting cluster %s: %w\n%s", name, err, out)
	}
	if err := c.checkLoopbackNodes(); err != nil {
		c.Down()
		return nil, err
	}
	return c, nil
}

// Attach is a cluster started elsewhere on a claimed loopback block (make
// demo runs test/e2e/cluster.sh with the block as LOOPBACK_BLOCK), reached
// as cluster-admin through kubeconfig; the processes started for it log to
// logDir. It fails unless every node hands out addresses of the block only.
func Attach(root, name, kubeconfig, logDir string, block *loopback.Block) (*Cluster, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	c := newCluster(root, name, kubeconfig, logDir, block)
	if err := c.checkLoopbackNodes(); err != nil {
		return nil, err
	}
	return c, nil
}

// Claimed reports whether the cluster's loopback block is this process's
// (Options.Loopback, Attach): only then may it serve the pods' addresses.
func (c *Cluster) Claimed() bool { return c.block != nil }

// newCluster is the cluster on block, or on 127.1.0.0/16 when block is nil.
func newCluster(root, name, kubeconfig, logDir string, block *loopback.Block) *Cluster {
	c := &Cluster{Name: name, Kubeconfig: kubeconfig, Root: root, LogDir: logDir, Loopback: defaultBlock}
	if block != nil {
		c.Loopback, c.block = block.Prefix(), block
	}
	return c
}

// inBlock checks that cidr is inside the cluster's loopback block.
func (c *Cluster) inBlock(what, cidr string) error {
	if err := loopback.CheckPrefix(what, cidr); err != nil {
		return err
	}
	if p := netip.MustParsePrefix(cidr); p.Bits() < c.Loopback.Bits() || !c.Loopback.Contains(p.Addr()) {
		return fmt.Errorf("%s: %s is outside the cluster's block %s", what, cidr, c.Loopback)
	}
	return nil
}

// checkLoopbackNodes fails unless every node hands out loopback addresses
// only: its podCIDRs, from which kwok takes pod IPs, and its addresses,
// which host-network pods get (cluster.sh sets both).
func (c *Cluster) checkLoopbackNodes() error {
	out, err := c.Kubectl(context.Background(), "", "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.podCIDRs}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	if err != nil {
		return err
	}
	var problems []error
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			problems = append(problems, fmt.Errorf("node without a podCIDR or an InternalIP: %q", line))
			continue
		}
		var cidrs []string
		if err := json.Unmarshal([]byte(f[1]), &cidrs); err != nil {
			problems = append(problems, fmt.Errorf("node %s: podCIDRs %s: %w", f[0], f[1], err))
		}
		for _, cidr := range cidrs {
			problems = append(problems, c.inBlock("node "+f[0]+" podCIDR", cidr))
		}
		problems = append(problems, c.inBlock("node "+f[0]+" InternalIP", f[2]+"/32"))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	return nil
}

func (c *Cluster) script() string { return filepath.Join(c.Root, "test", "e2e", "cluster.sh") }

// Down stops the cluster, removes its state and releases its loopback
// block.
func (c *Cluster) Down() {
	if out, err := exec.Command(c.script(), "down", c.Name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping cluster: %v\n%s", err, out)
	}
	if c.block != nil {
		c.block.Release()
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
	*Process
	Metrics string // base URL of /metrics: https unless --metrics-secure=false
	Probes  string // base URL of /healthz and /readyz
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
// (debug logging with nanosecond timestamps unless they set
// --zap-log-level or --zap-time-encoding: a test lines the controller's
// writes up with the requests they affected), and waits until /readyz
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
		Metrics: fmt.Sprintf("%s://127.0.0.1:%d", scheme, mp),
		Probes:  fmt.Sprintf("http://127.0.0.1:%d", pp),
	}
	all := []string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mp),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", pp),
	}
	if !hasFlag(args, "--zap-log-level") {
		all = append(all, "--zap-log-level=debug")
	}
	if !hasFlag(args, "--zap-time-encoding") {
		all = append(all, "--zap-time-encoding=rfc3339nano")
	}
	if ctl.Process, err = c.StartProcess("controller", name, command(append(all, args...))); err != nil {
		return nil, err
	}
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

// HTTPGet returns the status code and body of a GET.
func HTTPGet(ctx context.Context, url string) (int, string, error) {
	return HTTPGetWithToken(ctx, url, "")
}

// loopbackTLS trusts any certificate, which is safe only because tests dial
// loopback addresses alone: the controller's /metrics certificate is
// self-signed.
var loopbackTLS = &http.Client{Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback only, self-signed
	DialContext:     loopback.DialContext,
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
