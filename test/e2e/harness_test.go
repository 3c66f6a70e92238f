//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/loopback"
	"github.com/kubeseed/rollouts/test/testenv"
)

// The local kwok cluster the tests share, and the controller processes.
type (
	cluster    = kwok.Cluster
	controller = kwok.Controller
)

func newCluster() (*cluster, error) {
	root := testenv.RepoRoot()
	name := fmt.Sprintf("e2e-%d", os.Getpid())
	// The pod simulator serves this cluster's pods: their addresses are
	// this process's until it exits.
	block, err := loopback.ClaimFree()
	if err != nil {
		return nil, err
	}
	return kwok.Up(root, name, filepath.Join(root, "bin", "e2e", name), kwok.Options{
		Nodes:       3,
		AuditPolicy: filepath.Join(root, "test", "e2e", "testdata", "audit-policy.yaml"),
		Loopback:    block,
	})
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
		if ctx.Err() == nil || last == "" {
			// A poll the timeout cut short says only that.
			last = why
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not reached within %s; last: %s", what, timeout, last)
	}
}
