package kwok

import (
	"context"
	"fmt"
)

// Where manifests/ installs the controller, and the flags the e2e suite
// (and the soak, which runs the same controller) starts it with.
const (
	ControllerNamespace      = "rollouts-system"
	ControllerServiceAccount = "rollouts-controller"
	// DeniedLoopback is the address of lo that ControllerArgs' analysis
	// egress policy denies, so a test of the policy needs nothing outside
	// 127.0.0.0/8.
	DeniedLoopback = "127.0.0.77"
)

// ControllerArgs are the flags of the e2e controller: leader election in
// its namespace, and an egress policy denying DeniedLoopback.
func ControllerArgs() []string {
	return []string{"--leader-elect", "--leader-election-namespace=" + ControllerNamespace, "--analysis-deny-cidrs=" + DeniedLoopback + "/32"}
}

// Install applies manifests/ (CRDs, RBAC, the controller's namespace and
// ServiceAccount) and the given CRD files — the routers' CRDs, as a mesh or
// gateway install would provide them — and waits until every CRD is
// established.
func (c *Cluster) Install(ctx context.Context, crds ...string) error {
	if _, err := c.Kubectl(ctx, "", "apply", "--server-side", "-k", "manifests"); err != nil {
		return fmt.Errorf("installing manifests: %w", err)
	}
	for _, p := range crds {
		if _, err := c.Kubectl(ctx, "", "apply", "--server-side", "-f", p); err != nil {
			return fmt.Errorf("installing CRDs: %w", err)
		}
	}
	_, err := c.Kubectl(ctx, "", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	return err
}
