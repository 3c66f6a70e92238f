// Command rollouts is the controller manager: it parses flags, wires the
// Rollout, AnalysisRun and Experiment reconcilers into a controller-runtime
// manager, and runs it until SIGTERM.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	stdlog "log"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubeseed/rollouts/internal/cachetransform"
	"github.com/kubeseed/rollouts/internal/eventrecorder"
	"github.com/kubeseed/rollouts/internal/runnables"
	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/experiments"
	"github.com/kubeseed/rollouts/pkg/notifications"
	"github.com/kubeseed/rollouts/pkg/rollout"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/pkg/traffic/gatewayapi"
	"github.com/kubeseed/rollouts/pkg/traffic/istio"
	"github.com/kubeseed/rollouts/pkg/traffic/nginx"
	"github.com/kubeseed/rollouts/pkg/version"
)

// options are the command-line flags of DESIGN.md §9. --kubeconfig is
// registered by controller-runtime's config package.
type options struct {
	namespace         string
	leaderElect       bool
	leaderElectionNS  string
	metricsAddr       string
	metricsSecure     bool
	metricsCertDir    string
	probeAddr         string
	rolloutWorkers    int
	analysisWorkers   int
	experimentWorkers int
	prometheusAddress string
	// notificationsNamespace holds the notification settings.
	notificationsNamespace string
	analysisEgress         *analysis.EgressPolicy
	gracefulShutdown       time.Duration
	kubeAPIQPS             float64
	kubeAPIBurst           int
	pprofAddr              string
	printVersion           bool
	zap                    zap.Options

	// Fairness and deadlines (docs/security.md): the analysis
	// measurements taken at once, in all and per namespace, and the
	// deadline of every reconcile.
	measurements             int
	measurementsPerNamespace int
	reconcileTimeout         time.Duration
}

func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{zap: zap.Options{Development: false}}
	fs.StringVar(&o.namespace, "namespace", "", "Watch only this namespace (namespaced mode, needs only a Role). Empty watches all namespaces.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader through a Lease so only one replica reconciles.")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader Lease (default: the pod's namespace).")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8090", "Address of the Prometheus /metrics endpoint; 0 disables it.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve /metrics over HTTPS to clients the API server authenticates (TokenReview) and authorizes (SubjectAccessReview: get on the non-resource URL /metrics). false serves plain HTTP to anyone, for local development and tests.")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the HTTPS /metrics endpoint, reloaded when they change; empty, or without those files, uses a self-signed certificate.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8091", "Address of the /healthz and /readyz probes.")
	fs.IntVar(&o.rolloutWorkers, "rollout-workers", 10, "Rollouts reconciled in parallel.")
	fs.IntVar(&o.analysisWorkers, "analysis-workers", 10, "AnalysisRuns reconciled in parallel.")
	fs.IntVar(&o.experimentWorkers, "experiment-workers", 5, "Experiments reconciled in parallel.")
	fs.IntVar(&o.measurements, "analysis-measurements", analysis.DefaultMeasurements, "Analysis measurements taken at once, in all namespaces; they run apart from the --analysis-workers.")
	fs.IntVar(&o.measurementsPerNamespace, "analysis-measurements-per-namespace", analysis.DefaultMeasurementsPerNamespace, "Analysis measurements taken at once in one namespace; the namespaces waiting for a slot take turns.")
	fs.DurationVar(&o.reconcileTimeout, "reconcile-timeout", 30*time.Second, "Deadline of every reconcile (Rollout, AnalysisRun, Experiment); one that runs past it is retried with backoff.")
	fs.StringVar(&o.prometheusAddress, "prometheus-address", "", "Default Prometheus address for metrics that don't set one.")
	fs.StringVar(&o.notificationsNamespace, "notifications-namespace", "", "Namespace of the notification settings (ConfigMap "+notifications.ConfigMapName+", Secret "+notifications.SecretName+"). Default: $POD_NAMESPACE, else the --namespace watched, else "+notifications.DefaultNamespace+".")
	denyCIDRs := fs.String("analysis-deny-cidrs", "", "Comma-separated CIDRs analysis measurements (web, prometheus, judge) may not connect to, in addition to the default "+strings.Join(analysis.DefaultDeniedCIDRs, ", ")+". Checked on the dialled address.")
	allowCIDRs := fs.String("analysis-allow-cidrs", "", "Comma-separated CIDRs exempted from the analysis deny list: an allowed CIDR at least as specific as the most specific denied CIDR containing an address lets measurements connect to it.")
	fs.DurationVar(&o.gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "How long in-flight reconciles may take to finish on shutdown.")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 200, "Requests per second the controller may send to the API server (sustained).")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 300, "Requests the controller may send to the API server in a burst.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of the Go profiler (/debug/pprof); empty disables it.")
	fs.BoolVar(&o.printVersion, "version", false, "Print the version and exit.")
	o.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	deny, err := analysis.ParseCIDRs(*denyCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--analysis-deny-cidrs: %w", err)
	}
	allow, err := analysis.ParseCIDRs(*allowCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--analysis-allow-cidrs: %w", err)
	}
	o.analysisEgress = analysis.NewEgressPolicy(deny, allow)
	if o.notificationsNamespace == "" {
		o.notificationsNamespace = cmp.Or(os.Getenv("POD_NAMESPACE"), o.namespace, notifications.DefaultNamespace)
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		return nil, fmt.Errorf("--kube-api-qps must be above 0 and --kube-api-burst at least 1, got %g and %d", o.kubeAPIQPS, o.kubeAPIBurst)
	}
	if o.reconcileTimeout <= 0 {
		return nil, fmt.Errorf("--reconcile-timeout must be above 0, got %s", o.reconcileTimeout)
	}
	for name, n := range map[string]int{
		"rollout-workers": o.rolloutWorkers, "analysis-workers": o.analysisWorkers, "experiment-workers": o.experimentWorkers,
		"analysis-measurements": o.measurements, "analysis-measurements-per-namespace": o.measurementsPerNamespace,
	} {
		if n < 1 {
			return nil, fmt.Errorf("--%s must be at least 1, got %d", name, n)
		}
	}
	return o, nil
}

func main() {
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if o.printVersion {
		fmt.Println(version.Get())
		return
	}
	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.Error(err, "Controller stopped")
		os.Exit(1)
	}
}

// gcPercent is the controller's GOGC unless the environment sets one. Its
// heap is mostly the informer caches, which live as long as the process,
// so the garbage GOGC lets pile up on top of them is what a lower target
// saves: the heap grows to 1.25 times what is live instead of twice (Go's
// 100), for a little more GC work (at 5000 Rollouts, 23 MB less settled
// RSS than at 50; docs/development.md).
const gcPercent = 25

func run(ctx context.Context, o *options) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	// Go's standard logger (an HTTP server's TLS handshake errors, say)
	// writes through the structured one, so every line is JSON.
	stdlog.SetFlags(0)
	stdlog.SetOutput(logWriter{ctrl.Log.WithName("http")})
	// The notification engine's services log through logrus: its lines
	// too become messages of the structured log.
	logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
	logrus.SetOutput(logWriter{ctrl.Log.WithName("notifications-engine")})
	log := ctrl.Log.WithName("setup")
	log.Info("Starting rollouts controller", "version", version.Get().Version, "commit", version.Get().Commit, "namespace", o.namespace)

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst
	mgr, err := ctrl.NewManager(cfg, managerOptions(o))
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := setupReconcilers(mgr, o); err != nil {
		return err
	}
	if err := setupProbes(mgr); err != nil {
		return err
	}
	log.Info("Starting manager")
	return mgr.Start(ctx)
}

// logWriter logs each write of Go's standard logger as one message.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

func managerOptions(o *options) manager.Options {
	// The ReplicaSet and Pod caches hold only objects carrying our hash label,
	// so memory stays bounded on clusters with many Deployments.
	managed, err := labels.NewRequirement(v1alpha1.PodTemplateHashLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // constant input
	}
	onlyManaged := labels.NewSelector().Add(*managed)
	// Likewise the Job cache holds only the Jobs of AnalysisRuns.
	ofRuns, err := labels.NewRequirement(analysis.AnalysisRunLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // constant input
	}
	cacheOpts := cache.Options{
		DefaultTransform: cachetransform.Trim,
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.ReplicaSet{}: {Label: onlyManaged},
			&corev1.Pod{}:        {Label: onlyManaged},
			&batchv1.Job{}:       {Label: labels.NewSelector().Add(*ofRuns)},
		},
	}
	var newCache cache.NewCacheFunc
	if o.namespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{o.namespace: {}}
		newCache = newNamespacedCache(o.namespace)
	}
	return manager.Options{
		Scheme:                        apis.NewScheme(),
		Cache:                         cacheOpts,
		NewCache:                      newCache,
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "rollouts-controller.rollouts.kubeseed.io",
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &o.gracefulShutdown,
		Client: client.Options{
			FieldOwner: v1alpha1.FieldManager,
		},
	}
}

// metricsOptions serves /metrics over HTTPS with authentication and
// authorization delegated to the API server, unless --metrics-secure=false.
func metricsOptions(o *options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
		m.CertDir = o.metricsCertDir
		// HTTP/1.1 only: HTTP/2's stream reset and rapid-reset attacks
		// (CVE-2023-44487) cost a server more than a scrape endpoint needs.
		m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	return m
}

func setupReconcilers(mgr manager.Manager, o *options) error {
	c := mgr.GetClient()
	metrics, err := rollout.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("registering rollout metrics: %w", err)
	}
	routers := traffic.Registry{"gatewayAPI": gatewayapi.New, "istio": istio.New, "nginx": nginx.New}
	// One sender for all the reconcilers' events, with bounded memory
	// (package eventrecorder says why not controller-runtime's).
	sender, err := eventrecorder.ForConfig(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("setting up events: %w", err)
	}
	if err := mgr.Add(sender); err != nil {
		return fmt.Errorf("setting up events: %w", err)
	}
	recorder := sender.NewRecorder(mgr.GetScheme(), "rollouts-controller")
	notify, err := setupNotifications(mgr, o, recorder)
	if err != nil {
		return err
	}
	if err := (&rollout.Reconciler{Client: c, Recorder: recorder, Metrics: metrics, Routers: routers, WatchNamespace: o.namespace, Notifications: notify}).SetupWithManager(mgr, o.controllerOptions(o.rolloutWorkers)); err != nil {
		return fmt.Errorf("setting up rollout reconciler: %w", err)
	}
	analysisMetrics, err := analysis.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("registering analysis metrics: %w", err)
	}
	ar := &analysis.Reconciler{
		Client: c, PrometheusAddress: o.prometheusAddress, Egress: o.analysisEgress, Metrics: analysisMetrics,
		Measurements: o.measurements, MeasurementsPerNamespace: o.measurementsPerNamespace,
	}
	if err := ar.SetupWithManager(mgr, o.controllerOptions(o.analysisWorkers)); err != nil {
		return fmt.Errorf("setting up analysis reconciler: %w", err)
	}
	if err := (&experiments.Reconciler{Client: c, Recorder: recorder, WatchNamespace: o.namespace}).SetupWithManager(mgr, o.controllerOptions(o.experimentWorkers)); err != nil {
		return fmt.Errorf("setting up experiment reconciler: %w", err)
	}
	return nil
}

// setupNotifications makes the notification Dispatcher (DESIGN.md §16):
// settings watched in --notifications-namespace, subscriptions on
// Namespaces read from a cache of their metadata (cluster mode only: a
// namespaced controller's Role cannot read Namespaces), deliveries that
// end with the process.
func setupNotifications(mgr manager.Manager, o *options, recorder events.EventRecorder) (*notifications.Dispatcher, error) {
	opts := notifications.DispatcherOptions{
		Runs:     mgr.GetClient(),
		Recorder: recorder,
		Log:      ctrl.Log.WithName("notifications"),
	}
	if o.namespace == "" {
		namespaces := &metav1.PartialObjectMetadata{}
		namespaces.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if _, err := mgr.GetCache().GetInformer(context.Background(), namespaces); err != nil {
			return nil, fmt.Errorf("namespace informer: %w", err)
		}
		opts.NamespaceAnnotations = func(ctx context.Context, name string) (map[string]string, error) {
			ns := &metav1.PartialObjectMetadata{}
			ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
			if err := mgr.GetClient().Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
				return nil, err
			}
			return ns.Annotations, nil
		}
	}
	d, err := notifications.NewDispatcher(ctrlmetrics.Registry, opts)
	if err != nil {
		return nil, fmt.Errorf("registering notification metrics: %w", err)
	}
	if err := d.WatchSettings(mgr, o.notificationsNamespace); err != nil {
		return nil, err
	}
	// Deliveries in flight get the shutdown's grace; those still queued
	// stay in the Rollouts' status for the next leader.
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		stopped := make(chan struct{})
		time.AfterFunc(o.gracefulShutdown/2, func() { close(stopped) })
		d.Stop(stopped)
		return nil
	}))
	return d, err
}

// controllerOptions are a controller's: its workers, the deadline of each
// reconcile (a reconcile that runs past it is retried: deadline.Retry), and
// a first-in first-out queue. controller-runtime's default priority queue
// puts what the informers listed at start-up behind every later event, and
// a retry keeps that low priority: with other Rollouts busy, a Rollout
// listed at start-up waited minutes for its abort (found by the chaos soak,
// where the leader changes every minute). Every Rollout gets its turn.
func (o *options) controllerOptions(workers int) controller.Options {
	return controller.Options{MaxConcurrentReconciles: workers, ReconciliationTimeout: o.reconcileTimeout, UsePriorityQueue: new(false)}
}

// setupProbes serves /healthz (the process is alive) and /readyz (every
// informer has synced, so reconciles see a complete cache).
func setupProbes(mgr manager.Manager) error {
	var synced atomic.Bool
	// On every replica, the standbys too: their caches sync as well, and a
	// standby that never became ready would hold up the Deployment's
	// rolling updates.
	if err := mgr.Add(runnables.EveryReplica(func(ctx context.Context) error {
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
		}
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("informers", func(*http.Request) error {
		if !synced.Load() {
			return errors.New("informers have not synced yet")
		}
		return nil
	})
}
