//go:build e2e

package release

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeseed/rollouts/internal/release"
	"github.com/kubeseed/rollouts/test/kwok"
)

// TestInstallYAML applies the release's install.yaml to a fresh cluster and
// runs what it describes: the image's binary, from the image's filesystem,
// as the Deployment's user, with the Deployment's arguments and its
// ServiceAccount's permissions. A canary Rollout then goes through an
// update, promoted with the plugin from the release's archive.
func TestInstallYAML(t *testing.T) {
	t.Parallel()
	cl := freshCluster(t, "install")
	install := filepath.Join(rel.opts.ReleaseDir, "install.yaml")
	cl.MustKubectl(t, "", "apply", "--server-side", "-f", install)
	cl.MustKubectl(t, "", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

	var d appsv1.Deployment
	getJSON(t, cl, &d, "-n", "rollouts-system", "get", "deployment", "rollouts-controller")
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != rel.image.Digest {
		t.Errorf("the Deployment runs %s, want the release's image by digest %s", c.Image, rel.image.Digest)
	}
	if u := pod.SecurityContext.RunAsUser; u == nil || *u != release.UID {
		t.Errorf("the pod runs as %v, want %d (the image's user)", u, release.UID)
	}

	rootfs := unpackImage(t)
	kubeconfig := serviceAccountKubeconfig(t, cl, rootfs, d.Namespace, pod.ServiceAccountName)
	args := controllerArgs(t, d)
	ctl, err := cl.StartControllerCommand("controller", func(args []string) *exec.Cmd {
		return inImage(t, rootfs, args...)
	}, kubeconfig, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctl.Stop(40 * time.Second); err != nil {
			t.Errorf("controller did not stop cleanly: %v\n%s", err, ctl.Log())
		}
	})
	if strings.Contains(ctl.Log(), "forbidden") {
		t.Errorf("the controller was refused by the API server with install.yaml's RBAC:\n%s", ctl.Log())
	}

	plugin := unpackPlugin(t)
	ns := "shop"
	cl.MustKubectl(t, "", "create", "namespace", ns)
	cl.MustKubectl(t, kwok.CanaryServices+"---"+kwok.CanaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, cl, ns, "Healthy web:1", 90*time.Second)

	cl.MustKubectl(t, "", "-n", ns, "patch", "rollout", "web", "--type=json",
		"-p", `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"web:2"}]`)
	waitFor(t, cl, ns, "Paused web:1", 90*time.Second)
	if out, err := exec.Command(plugin, "--kubeconfig", cl.Kubeconfig, "-n", ns, "promote", "web").CombinedOutput(); err != nil {
		t.Fatalf("kubectl-rollouts promote: %v\n%s", err, out)
	}
	waitFor(t, cl, ns, "Healthy web:2", 90*time.Second)
	if strings.Contains(ctl.Log(), "forbidden") {
		t.Errorf("the controller was refused by the API server with install.yaml's RBAC:\n%s", ctl.Log())
	}
}

// waitFor waits until the Rollout web shows "<phase> <stable image>".
func waitFor(t *testing.T, cl *kwok.Cluster, ns, want string, timeout time.Duration) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		// A failed read is retried until the timeout; last keeps its message.
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "rollout", "web", "-o", "jsonpath={.status.phase}")
		last = strings.TrimSpace(out) + " " + stableImage(ctx, cl, ns)
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("Rollout web never showed %q; last: %s", want, last)
	}
}

// stableImage is the image of the ReplicaSet the Rollout calls stable.
func stableImage(ctx context.Context, cl *kwok.Cluster, ns string) string {
	hash, err := cl.Kubectl(ctx, "", "-n", ns, "get", "rollout", "web", "-o", "jsonpath={.status.stableRS}")
	if err != nil || strings.TrimSpace(hash) == "" {
		return ""
	}
	img, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "rs", "-l", "rollouts.kubeseed.io/pod-template-hash="+strings.TrimSpace(hash),
		"-o", "jsonpath={.items[0].spec.template.spec.containers[0].image}")
	return strings.TrimSpace(img)
}

// controllerArgs are the controller container's arguments with $(VAR)
// references expanded as the kubelet would. The two listen addresses are
// moved to free loopback ports: tests share the host's network, where a pod
// would have its own.
func controllerArgs(t *testing.T, d appsv1.Deployment) []string {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = d.Namespace
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		default:
			t.Fatalf("env %s: the test cannot resolve %+v", e.Name, e.ValueFrom)
		}
	}
	var args []string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if strings.HasPrefix(a, "--metrics-bind-address=") || strings.HasPrefix(a, "--health-probe-bind-address=") {
			continue // StartControllerCommand sets free loopback ports
		}
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		args = append(args, a)
	}
	if !slices.Contains(args, "--leader-elect") {
		t.Fatalf("the Deployment's args %q lack --leader-elect", c.Args)
	}
	return args
}

// serviceAccountKubeconfig writes, into the image's filesystem, a
// self-contained kubeconfig that acts as the ServiceAccount, readable only by
// the image's user, and returns its path as the process sees it.
func serviceAccountKubeconfig(t *testing.T, cl *kwok.Cluster, rootfs, ns, sa string) string {
	t.Helper()
	path, err := cl.Impersonating(ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		t.Fatal(err)
	}
	inside := "/home/nonroot/kubeconfig"
	file := filepath.Join(rootfs, inside)
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, release.UID, release.UID); err != nil {
		t.Fatal(err)
	}
	return inside
}

// unpackPlugin extracts the plugin from the release's archive for this
// machine, as krew would.
func unpackPlugin(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(rel.opts.ReleaseDir, release.PluginArchiveName(rel.opts.Build.Version, host)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), h.Name)
	w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, tr); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// freshCluster starts a local cluster for one test.
func freshCluster(t *testing.T, name string) *kwok.Cluster {
	t.Helper()
	full := fmt.Sprintf("%s-%d", name, os.Getpid())
	cl, err := kwok.Up(rel.opts.Root, full, filepath.Join(rel.opts.Root, "bin", "e2e", full), kwok.Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Down)
	return cl
}

func getJSON(t *testing.T, cl *kwok.Cluster, into any, args ...string) {
	t.Helper()
	out, err := cl.Kubectl(context.Background(), "", append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
