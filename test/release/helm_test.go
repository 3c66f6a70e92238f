//go:build e2e

package release

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/internal/release"
	"github.com/kubeseed/rollouts/test/kwok"
	"github.com/kubeseed/rollouts/test/testenv"
)

// The chart's tests run bin/helm (./test/tools/install.sh helm) from the
// repository root; the cluster test also needs the control plane, kwok and
// kubectl in bin/ (make tools).

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the chart renders now")

const chart = "charts/rollouts"

// helm runs bin/helm in the repository root with configuration, cache and
// data directories of its own, so no repository or plugin of the user's
// changes what it does. It returns stdout and stderr apart: rendered YAML
// must not pick up a warning.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := testenv.RepoRoot()
	bin := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (./test/tools/install.sh helm builds it)", bin, err)
	}
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), err
}

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// render is `helm template rollouts charts/rollouts -n rollouts-system`: the
// release name and namespace of the kustomize install.
func render(t *testing.T, args ...string) string {
	t.Helper()
	return mustHelm(t, append([]string{"template", "rollouts", chart, "-n", "rollouts-system"}, args...)...)
}

func TestHelmLint(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"cluster mode":    nil,
		"namespaced mode": {"--set", "watchNamespace=team-a"},
		"one replica":     {"--set", "replicas=1", "--set", "leaderElection.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := mustHelm(t, append([]string{"lint", chart, "--strict"}, args...)...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestHelmTemplateGolden pins what the chart renders: with the defaults,
// with every value changed (testdata/values-custom.yaml),
// and with one replica, where the PodDisruptionBudget and leader election
// go away. `go test -tags e2e -run HelmTemplateGolden ./test/release -update`
// rewrites the files.
func TestHelmTemplateGolden(t *testing.T) {
	t.Parallel()
	custom, err := filepath.Abs(filepath.Join("testdata", "values-custom.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"default": nil, // the CRDs are generated files, checked by make verify
		"custom":  {"-f", custom},
		"single":  {"--set", "replicas=1", "--set", "leaderElection.enabled=false", "--set", "metrics.service.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			golden(t, filepath.Join("testdata", "helm-template-"+name+".golden"), render(t, args...))
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s is stale (-golden +rendered); rerun with -update if the change is intended:\n%s", path, diff)
	}
}

// TestHelmDefaultsMatchKustomize: with default values the chart installs
// exactly what `kubectl apply -k manifests` does, but for the Namespace
// (helm install --create-namespace), Helm's own labels and the image, which
// only the release pins.
func TestHelmDefaultsMatchKustomize(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot()
	kubectl := filepath.Join(root, "bin", "kubectl")
	cmd := exec.Command(kubectl, "kustomize", "manifests")
	cmd.Dir = root
	kustomized, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("kubectl kustomize manifests (make tools builds bin/kubectl): %v", err)
	}
	want := mustNormalize(t, kustomized, blankImage)
	got := mustNormalize(t, []byte(render(t, "--include-crds")), blankImage)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart defaults differ from the kustomize install (-kustomize +helm):\n%s", diff)
	}
	// A diff of nothing against nothing would pass too.
	if _, ok := want["apps/v1/Deployment/rollouts-system/rollouts-controller"]; !ok || len(want) < 10 {
		t.Errorf("the kustomize install has no controller Deployment or too few objects: %v", slices.Sorted(maps.Keys(want)))
	}
}

// TestHelmReleaseChartMatchesInstallYAML: the chart that make release
// packages installs, with default values, exactly what the release's
// install.yaml installs, image digest included.
func TestHelmReleaseChartMatchesInstallYAML(t *testing.T) {
	t.Parallel()
	install, err := os.ReadFile(filepath.Join(rel.opts.ReleaseDir, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(rel.opts.ReleaseDir, "rollouts-"+release.ChartVersion(rel.opts.Build)+".tgz")
	want := mustNormalize(t, install, keepImage)
	got := mustNormalize(t, []byte(mustHelm(t, "template", "rollouts", pkg, "-n", "rollouts-system", "--include-crds")), keepImage)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the release's chart differs from its install.yaml (-install.yaml +chart):\n%s", diff)
	}
	d := want["apps/v1/Deployment/rollouts-system/rollouts-controller"]
	if !strings.Contains(fmt.Sprint(d), rel.image.Digest) {
		t.Errorf("install.yaml's Deployment does not run %s: %v", rel.image.Digest, d)
	}
}

// What normalize does with the controller's image.
const (
	keepImage  = false
	blankImage = true
)

func mustNormalize(t *testing.T, manifests []byte, blank bool) map[string]map[string]any {
	t.Helper()
	objs, err := parseObjects(manifests)
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalize(objs, blank)
	if err != nil {
		t.Fatal(err)
	}
	return norm
}

// parseObjects decodes a multi-document YAML stream; empty documents (the
// ones Helm leaves for templates that render nothing) are skipped.
func parseObjects(manifests []byte) ([]map[string]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var objs []map[string]any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		if len(obj) > 0 {
			objs = append(objs, obj)
		}
	}
}

// helmLabels are the labels Helm's installs add to every object (and the
// chart to its pods) that a kustomize install has no equivalent of.
var helmLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// normalize keys objects by apiVersion/kind/namespace/name and removes what
// legitimately differs between the chart and the kustomize (or release)
// install: the Namespace object, Helm's labels on objects and pod templates,
// and, when blank is set, the image of the controller container (which only
// the release pins). It changes objs.
func normalize(objs []map[string]any, blank bool) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for _, obj := range objs {
		apiVersion, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		namespace, _ := meta["namespace"].(string)
		if apiVersion == "" || kind == "" || name == "" {
			return nil, fmt.Errorf("object without apiVersion, kind or name: %v", obj)
		}
		if apiVersion == "v1" && kind == "Namespace" {
			continue
		}
		key := strings.Join([]string{apiVersion, kind, namespace, name}, "/")
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s appears twice", key)
		}
		dropLabels(meta)
		if spec, ok := obj["spec"].(map[string]any); ok {
			if tmpl, ok := spec["template"].(map[string]any); ok {
				tmplMeta, _ := tmpl["metadata"].(map[string]any)
				dropLabels(tmplMeta)
				if blank {
					blankControllerImage(tmpl)
				}
			}
		}
		out[key] = obj
	}
	return out, nil
}

func dropLabels(meta map[string]any) {
	labels, _ := meta["labels"].(map[string]any)
	for _, l := range helmLabels {
		delete(labels, l)
	}
}

func blankControllerImage(podTemplate map[string]any) {
	spec, _ := podTemplate["spec"].(map[string]any)
	containers, _ := spec["containers"].([]any)
	for _, c := range containers {
		if c, ok := c.(map[string]any); ok && c["name"] == "controller" {
			c["image"] = ""
		}
	}
}

// TestHelmRejectsBadValues: values.schema.json (and the templates' own
// checks) refuse bad values with a message naming the value.
func TestHelmRejectsBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"replicas=-1"}, "at '/replicas': minimum: got -1, want 0"},
		{[]string{"logFormat=xml"}, "at '/logFormat': value must be one of 'json', 'console'"},
		{[]string{"logLevel=verbose"}, "at '/logLevel'"},
		{[]string{"logLevel=0"}, "at '/logLevel'"},
		{[]string{"image.digest=latest"}, "at '/image/digest': 'latest' does not match pattern"},
		{[]string{"image.pullPolicy=always"}, "at '/image/pullPolicy'"},
		{[]string{"replica=3"}, "additional properties 'replica' not allowed"},
		{[]string{"metrics.serviceMonitor.enable=true"}, "at '/metrics/serviceMonitor': additional properties 'enable' not allowed"},
		{[]string{"controller.rolloutWorkers=0"}, "at '/controller/rolloutWorkers': minimum: got 0, want 1"},
		{[]string{"watchNamespace=Team_A"}, "at '/watchNamespace'"},
		{[]string{"extraArgs[0]=namespace=x"}, "at '/extraArgs/0'"},
		{[]string{"leaderElection.enabled=false"}, "replicas above 1 need leaderElection.enabled"},
		{[]string{"metrics.service.enabled=false", "metrics.serviceMonitor.enabled=true"}, "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
		{[]string{"fullnameOverride=a-name-longer-than-forty-four-characters-in-all"}, "at '/fullnameOverride'"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			t.Parallel()
			args := []string{"template", "rollouts", chart}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, stderr, err := helm(t, args...)
			if err == nil {
				t.Fatalf("accepted; rendered:\n%s", out)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("error does not say %q:\n%s", tc.want, stderr)
			}
		})
	}
}

// TestHelmInstallUpgradeUninstall installs the chart on a local cluster,
// upgrades it with changed values, uninstalls it, and installs it again in
// namespaced mode. Nothing runs the controller: kwok only makes its pods
// Running, which shows the API server admits them (the release namespace
// enforces the restricted Pod Security Standard, as namespace.yaml does).
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot()
	name := fmt.Sprintf("helm-%d", os.Getpid())
	cl, err := kwok.Up(root, name, filepath.Join(root, "bin", "e2e", name), kwok.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Down)
	h := func(t *testing.T, args ...string) string {
		t.Helper()
		return mustHelm(t, append(args, "--kubeconfig", cl.Kubeconfig)...)
	}
	restricted := func(t *testing.T, ns string) {
		t.Helper()
		cl.MustKubectl(t, "", "create", "namespace", ns)
		cl.MustKubectl(t, "", "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
	}

	t.Run("cluster mode", func(t *testing.T) {
		const ns = "rollouts-system"
		restricted(t, ns)
		// hookOnly: return once the objects exist; the test waits itself.
		h(t, "install", "rollouts", chart, "-n", ns, "--create-namespace", "--wait=hookOnly")

		if got := objectNames(t, cl, "", "crd", "app.kubernetes.io/part-of=rollouts"); len(got) != 5 {
			t.Errorf("CRDs labelled part-of=rollouts: %v, want 5", got)
		}
		want := []string{
			"clusterrole.rbac.authorization.k8s.io/rollouts-controller",
			"clusterrole.rbac.authorization.k8s.io/rollouts-metrics-reader",
			"clusterrolebinding.rbac.authorization.k8s.io/rollouts-controller",
		}
		if diff := cmp.Diff(want, objectNames(t, cl, "", "clusterrole,clusterrolebinding", "app.kubernetes.io/instance=rollouts")); diff != "" {
			t.Errorf("cluster RBAC (-want +got):\n%s", diff)
		}
		want = []string{
			"serviceaccount/rollouts-controller",
			"service/rollouts-controller-metrics",
			"deployment.apps/rollouts-controller",
			"poddisruptionbudget.policy/rollouts-controller",
			"role.rbac.authorization.k8s.io/rollouts-leader-election",
			"role.rbac.authorization.k8s.io/rollouts-notifications",
			"rolebinding.rbac.authorization.k8s.io/rollouts-leader-election",
			"rolebinding.rbac.authorization.k8s.io/rollouts-notifications",
		}
		if diff := cmp.Diff(want, objectNames(t, cl, ns, "serviceaccount,service,deployment,poddisruptionbudget,role,rolebinding", "app.kubernetes.io/instance=rollouts")); diff != "" {
			t.Errorf("objects in %s (-want +got):\n%s", ns, diff)
		}
		canI(t, cl, "system:serviceaccount:rollouts-system:rollouts-controller", "list", "clusteranalysistemplates.rollouts.kubeseed.io", "", true)
		canI(t, cl, "system:serviceaccount:rollouts-system:rollouts-controller", "patch", "rollouts.rollouts.kubeseed.io", "default", true)
		rolledOut(t, cl, ns, "rollouts-controller")

		h(t, "upgrade", "rollouts", chart, "-n", ns, "--wait=hookOnly", "--set", "logLevel=debug", "--set", "controller.rolloutWorkers=20")
		args := liveControllerArgs(t, cl, ns, "rollouts-controller")
		for _, a := range []string{"--zap-log-level=debug", "--rollout-workers=20", "--leader-elect"} {
			if !slices.Contains(args, a) {
				t.Errorf("after the upgrade, args %v lack %s", args, a)
			}
		}
		rolledOut(t, cl, ns, "rollouts-controller")

		h(t, "uninstall", "rollouts", "-n", ns, "--wait")
		if got := objectNames(t, cl, ns, "deployment,serviceaccount,role", "app.kubernetes.io/instance=rollouts"); len(got) != 0 {
			t.Errorf("left after uninstall: %v", got)
		}
		if got := objectNames(t, cl, "", "clusterrole,clusterrolebinding", "app.kubernetes.io/instance=rollouts"); len(got) != 0 {
			t.Errorf("left after uninstall: %v", got)
		}
		if got := objectNames(t, cl, "", "crd", "app.kubernetes.io/part-of=rollouts"); len(got) != 5 {
			t.Errorf("CRDs after uninstall: %v; Helm keeps the CRDs of crds/", got)
		}
	})

	t.Run("namespaced mode", func(t *testing.T) {
		const ns, watched = "tenant-system", "team-a"
		restricted(t, ns)
		cl.MustKubectl(t, "", "create", "namespace", watched)
		h(t, "install", "tenant", chart, "-n", ns, "--wait=hookOnly", "--set", "watchNamespace="+watched)

		if got := objectNames(t, cl, "", "clusterrole,clusterrolebinding", "app.kubernetes.io/instance=tenant"); len(got) != 0 {
			t.Errorf("namespaced mode created %v", got)
		}
		want := []string{
			"role.rbac.authorization.k8s.io/tenant-controller",
			"rolebinding.rbac.authorization.k8s.io/tenant-controller",
		}
		if diff := cmp.Diff(want, objectNames(t, cl, watched, "role,rolebinding", "app.kubernetes.io/instance=tenant")); diff != "" {
			t.Errorf("RBAC in %s (-want +got):\n%s", watched, diff)
		}
		sa := "system:serviceaccount:" + ns + ":tenant-controller"
		canI(t, cl, sa, "patch", "rollouts.rollouts.kubeseed.io", watched, true)
		canI(t, cl, sa, "patch", "rollouts.rollouts.kubeseed.io", "default", false)
		canI(t, cl, sa, "list", "clusteranalysistemplates.rollouts.kubeseed.io", "", false)
		canI(t, cl, sa, "update", "leases.coordination.k8s.io", ns, true)
		// The notification settings are in the release namespace.
		canI(t, cl, sa, "watch", "configmaps/rollouts-notification-configmap", ns, true)
		canI(t, cl, sa, "watch", "configmaps/other", ns, false)
		if args := liveControllerArgs(t, cl, ns, "tenant-controller"); !slices.Contains(args, "--namespace="+watched) {
			t.Errorf("args %v do not restrict the controller to %s", args, watched)
		}
		rolledOut(t, cl, ns, "tenant-controller")
	})
}

// objectNames lists the objects of kinds with the label selector, as kind/name,
// in the order of kinds.
func objectNames(t *testing.T, cl *kwok.Cluster, ns, kinds, selector string) []string {
	t.Helper()
	args := []string{"get", kinds, "-l", selector, "-o", "name"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	return strings.Fields(cl.MustKubectl(t, "", args...))
}

func canI(t *testing.T, cl *kwok.Cluster, user, verb, resource, ns string, want bool) {
	t.Helper()
	args := []string{"auth", "can-i", verb, resource, "--as", user}
	if ns != "" {
		args = append(args, "-n", ns)
	} else {
		args = append(args, "--all-namespaces")
	}
	// can-i exits 1 when the answer is no, and the answer is the last line:
	// warnings come first.
	out, _ := cl.Kubectl(context.Background(), "", args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if answer := lines[len(lines)-1]; (answer == "yes") != want || (answer != "yes" && answer != "no") {
		t.Errorf("%s can %s %s in %q: %q, want %t (%s)", user, verb, resource, ns, answer, want, strings.TrimSpace(out))
	}
}

func liveControllerArgs(t *testing.T, cl *kwok.Cluster, ns, name string) []string {
	t.Helper()
	out := cl.MustKubectl(t, "", "get", "deployment", name, "-n", ns, "-o", `jsonpath={.spec.template.spec.containers[?(@.name=="controller")].args}`)
	var args []string
	if err := yaml.Unmarshal([]byte(out), &args); err != nil {
		t.Fatalf("args of %s/%s: %v: %s", ns, name, err, out)
	}
	return args
}

// rolledOut waits until every replica of the Deployment runs its current
// template (kwok marks the pods Running and Ready).
func rolledOut(t *testing.T, cl *kwok.Cluster, ns, name string) {
	t.Helper()
	cl.MustKubectl(t, "", "rollout", "status", "deployment/"+name, "-n", ns, "--timeout=120s")
}
