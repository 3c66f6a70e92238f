package kwok

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Dashboard is a running `kubectl rollouts dashboard` (bin/kubectl-rollouts).
type Dashboard struct {
	*Process
	URL string // http://127.0.0.1:<port>/
}

// StartDashboard runs `kubectl rollouts dashboard -n namespace` (and args)
// with the kubeconfig on a free loopback port, its output in LogDir/dashboard-<port>.log,
// and waits until it has said where it serves: it says so once its informers
// have synced.
func (c *Cluster) StartDashboard(kubeconfig, namespace string, args ...string) (*Dashboard, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("dashboard-%d", port)
	args = append([]string{"dashboard", "--kubeconfig", kubeconfig, "-n", namespace, "--port", fmt.Sprint(port)}, args...)
	cmd := exec.Command(c.Bin("kubectl-rollouts"), args...)
	p, err := c.StartProcess("dashboard", name, cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		if err := p.Exited(); err != nil {
			return false, err
		}
		return strings.Contains(p.Log(), "Dashboard of "), nil
	}); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("dashboard %s did not start: %w\nlog (%s):\n%s", name, err, p.LogPath, p.Log())
	}
	return &Dashboard{Process: p, URL: fmt.Sprintf("http://127.0.0.1:%d/", port)}, nil
}
