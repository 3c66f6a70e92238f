package kwok

import (
	"context"
	_ "embed" // traefik.yaml
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeseed/rollouts/test/loopback"
)

// traefikObjects are Traefik's namespace, ServiceAccount, RBAC and
// GatewayClass.
//
//go:embed traefik.yaml
var traefikObjects string

const (
	// TraefikGatewayClass is the GatewayClass Traefik implements.
	TraefikGatewayClass = "traefik"
	traefikNamespace    = "traefik"
	traefikSA           = "traefik"
	// TraefikProvidersThrottle is Traefik's providersThrottleDuration, its
	// default, set here so that what it does to a route's time to effect
	// is on record: Traefik applies a provider's configuration at once,
	// then takes the next one no sooner than this after, so a weight
	// written within it of another change (a canary pod's endpoints) waits
	// for its end.
	TraefikProvidersThrottle = 2 * time.Second
)

// Traefik is a running bin/traefik: the Gateway API implementation of the
// cluster, as a process on this machine that dials the pods' loopback IPs
// (test/podsim answers there).
type Traefik struct {
	*Process
	// Port is the port of the entrypoint web, the one the listeners of
	// Gateways of class traefik must name (Traefik ties a listener to the
	// entrypoint of the same port).
	Port int
	// Web is the base URL of the entrypoint web.
	Web string
	// Metrics is the URL of the Prometheus metrics (entrypoint metrics).
	Metrics string
	// API is the base URL of /ping and Traefik's API (/api/http/...).
	API string
	// AccessLog is Traefik's access log, a JSON line per request.
	AccessLog string
}

// TraefikOptions shape StartTraefikWith; the zero value is StartTraefik's.
type TraefikOptions struct {
	// WebPort, MetricsPort and APIPort are the ports of the entrypoints
	// web, metrics and traefik on 127.0.0.1; 0 takes a free port.
	WebPort, MetricsPort, APIPort int
	// AccessLogStatusCodes keeps only the requests answered with these
	// codes in the access log, such as "400-599"; empty keeps every one.
	AccessLogStatusCodes string
}

// StartTraefik installs Traefik's RBAC and GatewayClass, starts bin/traefik
// with the Gateway API provider, authenticated as its ServiceAccount, and
// waits until it answers /ping and has accepted the GatewayClass.
func (c *Cluster) StartTraefik(name string) (*Traefik, error) {
	return c.StartTraefikWith(name, TraefikOptions{})
}

// StartTraefikWith is StartTraefik with options.
func (c *Cluster) StartTraefikWith(name string, o TraefikOptions) (*Traefik, error) {
	if _, err := os.Stat(c.Bin("traefik")); err != nil {
		return nil, fmt.Errorf("%w: build it with make tools (test/tools/install.sh traefik)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.Kubectl(ctx, traefikObjects, "apply", "--server-side", "-f", "-"); err != nil {
		return nil, err
	}
	args, t, err := c.traefikArgs(name, o)
	if err != nil {
		return nil, err
	}
	if t.Process, err = c.StartProcess("traefik", name, exec.Command(c.Bin("traefik"), args...)); err != nil {
		return nil, err
	}
	failed := func(err error) (*Traefik, error) {
		_ = t.Stop(5 * time.Second)
		return nil, fmt.Errorf("traefik %s did not start: %w\nlog (%s):\n%s", name, err, t.LogPath, t.Log())
	}
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := t.Exited(); err != nil {
			return false, err
		}
		code, _, err := HTTPGet(ctx, t.API+"/ping")
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return failed(err)
	}
	if _, err := c.Kubectl(ctx, "", "wait", "--for=condition=Accepted", "gatewayclass/"+TraefikGatewayClass, "--timeout=60s"); err != nil {
		return failed(err)
	}
	return t, nil
}

// traefikArgs are Traefik's static configuration: every entrypoint on a
// free loopback port, the Gateway API provider against the cluster with a
// token of the ServiceAccount traefik and the cluster's CA, Prometheus
// metrics, the API for the tests to read what Traefik applied, an access
// log.
func (c *Cluster) traefikArgs(name string, o TraefikOptions) ([]string, *Traefik, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	server, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, nil, err
	}
	if err := loopback.Check("kube-apiserver "+cfg.Host, server.Hostname()); err != nil {
		return nil, nil, err
	}
	ca := cfg.CAFile
	if ca == "" {
		ca = filepath.Join(c.LogDir, name+"-ca.crt")
		if err := os.WriteFile(ca, cfg.CAData, 0o600); err != nil {
			return nil, nil, err
		}
	}
	token, err := c.Token(traefikNamespace, traefikSA)
	if err != nil {
		return nil, nil, err
	}
	// A file, not the flag's value: a token in a command line is readable
	// by every user of the machine.
	tokenFile := filepath.Join(c.LogDir, name+".token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return nil, nil, err
	}
	ports := [3]int{o.WebPort, o.MetricsPort, o.APIPort}
	for i := range ports {
		if ports[i] != 0 {
			continue
		}
		if ports[i], err = FreePort(); err != nil {
			return nil, nil, err
		}
	}
	web, metrics, api := ports[0], ports[1], ports[2]
	t := &Traefik{
		Port:      web,
		Web:       fmt.Sprintf("http://127.0.0.1:%d", web),
		Metrics:   fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics),
		API:       fmt.Sprintf("http://127.0.0.1:%d", api),
		AccessLog: filepath.Join(c.LogDir, name+"-access.log"),
	}
	args := []string{
		// No calls home from a test machine.
		"--global.checkNewVersion=false",
		"--global.sendAnonymousUsage=false",
		"--log.level=INFO",
		fmt.Sprintf("--entryPoints.web.address=127.0.0.1:%d", web),
		fmt.Sprintf("--entryPoints.metrics.address=127.0.0.1:%d", metrics),
		fmt.Sprintf("--entryPoints.traefik.address=127.0.0.1:%d", api),
		"--providers.providersThrottleDuration=" + TraefikProvidersThrottle.String(),
		"--providers.kubernetesGateway=true",
		"--providers.kubernetesGateway.endpoint=" + cfg.Host,
		"--providers.kubernetesGateway.token=" + tokenFile,
		"--providers.kubernetesGateway.certAuthFilePath=" + ca,
		// The address Gateways of class traefik report in their status.
		"--providers.kubernetesGateway.statusAddress.ip=127.0.0.1",
		"--metrics.prometheus=true",
		"--metrics.prometheus.entryPoint=metrics",
		"--metrics.prometheus.addServicesLabels=true",
		"--metrics.prometheus.addRoutersLabels=true",
		"--ping=true",
		"--api=true",
		"--api.insecure=true",
		"--api.dashboard=false",
		"--accessLog=true",
		"--accessLog.format=json",
		"--accessLog.filePath=" + t.AccessLog,
	}
	if o.AccessLogStatusCodes != "" {
		args = append(args, "--accessLog.filters.statusCodes="+o.AccessLogStatusCodes)
	}
	return args, t, nil
}

// GatewayYAML is a Gateway of class traefik with one HTTP listener, web,
// on Traefik's entrypoint web, for the routes of its own namespace.
func (t *Traefik) GatewayYAML(name string) string {
	return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: %s}
spec:
  gatewayClassName: %s
  listeners:
  - {name: web, protocol: HTTP, port: %d, allowedRoutes: {namespaces: {from: Same}}}
`, name, TraefikGatewayClass, t.Port)
}
