//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeseed/rollouts/test/testenv"
)

// cluster is the local kwok cluster the tests share.
type cluster struct {
	name       string
	kubeconfig string
	root       string
	logDir     string
}

func newCluster() (*cluster, error) {
	root := testenv.RepoRoot()
	name := fmt.Sprintf("e2e-%d", os.Getpid())
	logDir := filepath.Join(root, "bin", "e2e", name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	c := &cluster{name: name, kubeconfig: filepath.Join(logDir, "kubeconfig"), root: root, logDir: logDir}
	if out, err := c.script("up", name, "3", c.kubeconfig); err != nil {
		return nil, fmt.Errorf("starting cluster: %w\n%s", err, out)
	}
	return c, nil
}

func (c *cluster) script(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.root, "test", "e2e", "cluster.sh"), args...)
	return cmd.CombinedOutput()
}

func (c *cluster) down() {
	if out, err := c.script("down", c.name); err != nil {
		fmt.Fprintf(os.Stderr, "stopping cluster: %v\n%s", err, out)
	}
}

func (c *cluster) bin(name string) string { return filepath.Join(c.root, "bin", name) }

// kubectl runs bin/kubectl against the cluster as cluster-admin.
func (c *cluster) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Dir = c.root
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *cluster) mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.kubectl(context.Background(), stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// impersonating writes a kubeconfig that acts as the controller's
// ServiceAccount in namespace, so a process using it has exactly the
// permissions our manifests grant.
func (c *cluster) impersonating(namespace string) (string, error) {
	serviceAccount := controllerSA
	cfg, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		return "", err
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = fmt.Sprintf("system:serviceaccount:%s:%s", namespace, serviceAccount)
	}
	path := filepath.Join(c.logDir, fmt.Sprintf("kubeconfig-%s-%s", namespace, serviceAccount))
	return path, clientcmd.WriteToFile(*cfg, path)
}

// controller is a running bin/rollouts process.
type controller struct {
	cmd     *exec.Cmd
	logPath string
	metrics string
	probes  string
	done    chan error
	once    sync.Once
	exitErr error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startController runs bin/rollouts with the kubeconfig and extra flags, and
// waits until /readyz answers 200 (every informer synced).
func (c *cluster) startController(name, kubeconfig string, args ...string) (*controller, error) {
	mp, err := freePort()
	if err != nil {
		return nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	ctl := &controller{
		logPath: filepath.Join(c.logDir, name+".log"),
		metrics: fmt.Sprintf("http://127.0.0.1:%d", mp),
		probes:  fmt.Sprintf("http://127.0.0.1:%d", pp),
		done:    make(chan error, 1),
	}
	logFile, err := os.Create(ctl.logPath)
	if err != nil {
		return nil, err
	}
	all := append([]string{
		"--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mp),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", pp),
		"--zap-log-level=debug",
	}, args...)
	ctl.cmd = exec.Command(c.bin("rollouts"), all...)
	ctl.cmd.Stdout = logFile
	ctl.cmd.Stderr = logFile
	if err := ctl.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		ctl.done <- ctl.cmd.Wait()
		_ = logFile.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := ctl.waitReady(ctx); err != nil {
		_ = ctl.stop(5 * time.Second)
		return nil, fmt.Errorf("controller %s never became ready: %w\nlog:\n%s", name, err, ctl.log())
	}
	return ctl, nil
}

func (ctl *controller) waitReady(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-ctl.done:
			ctl.done <- err
			return false, fmt.Errorf("controller exited: %w", err)
		default:
		}
		code, _, err := httpGet(ctx, ctl.probes+"/readyz")
		return err == nil && code == http.StatusOK, nil
	})
}

func (ctl *controller) log() string {
	b, _ := os.ReadFile(ctl.logPath)
	return string(b)
}

// stop sends SIGTERM and waits for the process to exit.
func (ctl *controller) stop(timeout time.Duration) error {
	ctl.once.Do(func() {
		_ = ctl.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case ctl.exitErr = <-ctl.done:
		case <-time.After(timeout):
			_ = ctl.cmd.Process.Kill()
			ctl.exitErr = errors.Join(errors.New("did not exit after SIGTERM"), <-ctl.done)
		}
	})
	return ctl.exitErr
}

func httpGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, err = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String(), err
}

// eventually polls cond until it holds or the timeout passes, then fails the
// test with the last reason cond gave.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, why := cond(ctx)
		last = why
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not reached within %s; last: %s", what, timeout, last)
	}
}
