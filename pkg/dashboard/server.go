// Package dashboard serves the web UI of `kubectl rollouts dashboard`
// (DESIGN.md §17): Rollouts, their steps, traffic, revisions and analysis,
// read from informers with the user's own identity, changes pushed to the
// browser as Server-Sent Events, and the plugin's actions behind a
// per-session token that only pages of the same origin hold.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/internal/cachetransform"
	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/dashboard/web"
)

// TokenHeader carries the session's token on every request that changes
// something.
const TokenHeader = "X-Rollouts-Token"

// Options configure a Server.
type Options struct {
	// Namespace is the one namespace shown; empty shows all.
	Namespace string
	// Hosts are the Host headers the server answers (its address, as
	// "127.0.0.1:3100" and "localhost:3100"): others are refused, so a
	// page of another site cannot reach it through DNS rebinding.
	Hosts []string
	// Actions are the plugin's (pkg/cli): the dashboard's buttons run
	// them through the same code.
	Actions Actions
	Log     logr.Logger
}

// Actions are what the dashboard asks of the plugin's actions.
type Actions struct {
	// Names in the order the buttons show them.
	Names []string
	// Check says why the action named makes no sense for ro now, or "".
	Check func(name string, ro *v1alpha1.Rollout) string
	// Act runs the action named on ro through c and says what it did.
	Act func(ctx context.Context, c client.Client, ro *v1alpha1.Rollout, name string) (string, error)
}

// Server is the dashboard: an http.Handler over informers.
type Server struct {
	opts   Options
	cache  cache.Cache
	client client.Client
	token  string
	hub    *hub
	mux    *http.ServeMux
	index  *template.Template
}

// New makes a Server for the cluster and identity of cfg. Start runs its
// informers.
func New(cfg *rest.Config, opts Options) (*Server, error) {
	scheme := apis.NewScheme()
	managed, err := labels.NewRequirement(v1alpha1.PodTemplateHashLabel, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	onlyManaged := labels.NewSelector().Add(*managed)
	copts := cache.Options{
		Scheme:           scheme,
		DefaultTransform: cachetransform.Trim,
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.ReplicaSet{}: {Label: onlyManaged, Transform: trimReplicaSet},
			&corev1.Pod{}:        {Label: onlyManaged, Transform: trimPod},
		},
	}
	if opts.Namespace != "" {
		copts.DefaultNamespaces = map[string]cache.Config{opts.Namespace: {}}
	}
	c, err := cache.New(cfg, copts)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	index, err := template.ParseFS(web.Files, "index.html")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, cache: c, client: cl, token: hex.EncodeToString(b), hub: newHub(), index: index}
	s.routes()
	return s, nil
}

// Start runs the informers until ctx ends; it returns once they have
// synced, or with the error that kept one from it.
func (s *Server) Start(ctx context.Context) error {
	if err := s.canRead(ctx); err != nil {
		return err
	}
	for _, obj := range []client.Object{&v1alpha1.Rollout{}, &v1alpha1.AnalysisRun{}, &v1alpha1.Experiment{}, &appsv1.ReplicaSet{}, &corev1.Pod{}} {
		inf, err := s.cache.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(s.changes()); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.cache.Start(ctx) }()
	synced := make(chan bool, 1)
	go func() { synced <- s.cache.WaitForCacheSync(ctx) }()
	select {
	case err := <-errc:
		return err
	case ok := <-synced:
		if !ok {
			return errors.New("the informers did not sync")
		}
		return nil
	}
}

// canRead lists one object of each kind the dashboard watches, so that a
// user whose RBAC forbids reading one (or a cluster without the CRDs)
// hears it at once, not from an informer that retries forever.
func (s *Server) canRead(ctx context.Context) error {
	lists := []client.ObjectList{&v1alpha1.RolloutList{}, &v1alpha1.AnalysisRunList{}, &v1alpha1.ExperimentList{}, &appsv1.ReplicaSetList{}, &corev1.PodList{}}
	opts := []client.ListOption{client.Limit(1)}
	if s.opts.Namespace != "" {
		opts = append(opts, client.InNamespace(s.opts.Namespace))
	}
	for _, list := range lists {
		if err := s.client.List(ctx, list, opts...); err != nil {
			return err
		}
	}
	return nil
}

// ServeHTTP answers the dashboard's requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(s.opts.Hosts) > 0 && !slices.Contains(s.opts.Hosts, r.Host) {
		http.Error(w, "unknown host", http.StatusMisdirectedRequest)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// Scripts only from the binary; inline style attributes are allowed
	// (the traffic bar's segments are sized with them).
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, r)
}

// Token is the session's token (tests send it as a page would).
func (s *Server) Token() string { return s.token }

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	static, err := fs.Sub(web.Files, ".")
	if err != nil {
		panic(err) // the embedded FS is valid
	}
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("GET /api/rollouts", s.listRollouts)
	s.mux.HandleFunc("GET /api/rollouts/{namespace}/{name}", s.getRollout)
	s.mux.HandleFunc("GET /api/analysisruns/{namespace}/{name}", s.getRun)
	s.mux.HandleFunc("GET /api/experiments/{namespace}/{name}", s.getExperiment)
	s.mux.HandleFunc("GET /api/watch", s.watch)
	s.mux.HandleFunc("POST /api/rollouts/{namespace}/{name}/actions/{action}", s.act)
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.index.Execute(w, map[string]string{"Token": s.token, "Namespace": s.opts.Namespace}); err != nil {
		s.opts.Log.Error(err, "Rendering the page")
	}
}

// inScope reports whether the dashboard shows namespace.
func (s *Server) inScope(namespace string) bool {
	return s.opts.Namespace == "" || namespace == s.opts.Namespace
}

func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !s.inScope(ns) {
		writeError(w, http.StatusNotFound, fmt.Errorf("namespace %q is not shown by this dashboard", ns))
		return
	}
	if ns == "" {
		ns = s.opts.Namespace
	}
	var ros v1alpha1.RolloutList
	var rss appsv1.ReplicaSetList
	for _, l := range []client.ObjectList{&ros, &rss} {
		if err := s.cache.List(r.Context(), l, client.InNamespace(ns), readOnly); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	// The revision of each ReplicaSet of a Rollout, by namespace/rollout/hash.
	revisions := make(map[string]string, len(rss.Items))
	for i := range rss.Items {
		rs := &rss.Items[i]
		if o := rolloutOf(rs.OwnerReferences); o != "" {
			revisions[rs.Namespace+"/"+o+"/"+rs.Labels[v1alpha1.PodTemplateHashLabel]] = rs.Annotations[v1alpha1.RevisionAnnotation]
		}
	}
	list := RolloutList{Items: make([]RolloutSummary, 0, len(ros.Items))}
	for i := range ros.Items {
		ro := &ros.Items[i]
		list.Items = append(list.Items, summary(ro, revisions[ro.Namespace+"/"+ro.Name+"/"+ro.Status.CurrentPodHash]))
	}
	slices.SortFunc(list.Items, func(a, b RolloutSummary) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	writeJSON(w, list)
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ro, ok := s.rollout(w, r)
	if !ok {
		return
	}
	inNS := client.InNamespace(ro.Namespace)
	var rss appsv1.ReplicaSetList
	var pods corev1.PodList
	var runs v1alpha1.AnalysisRunList
	var exps v1alpha1.ExperimentList
	for _, l := range []client.ObjectList{&rss, &pods, &runs, &exps} {
		if err := s.cache.List(ctx, l, inNS, readOnly); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	ownedRS := slices.DeleteFunc(rss.Items, func(rs appsv1.ReplicaSet) bool { return rolloutOf(rs.OwnerReferences) != ro.Name })
	ownedRuns := slices.DeleteFunc(runs.Items, func(run v1alpha1.AnalysisRun) bool { return rolloutOf(run.OwnerReferences) != ro.Name })
	ownedExps := slices.DeleteFunc(exps.Items, func(ex v1alpha1.Experiment) bool { return rolloutOf(ex.OwnerReferences) != ro.Name })
	// Events are read when asked for, not watched: they are many.
	var events corev1.EventList
	err := s.client.List(ctx, &events, inNS, client.MatchingFieldsSelector{Selector: fields.AndSelectors(
		fields.OneTermEqualSelector("involvedObject.kind", "Rollout"),
		fields.OneTermEqualSelector("involvedObject.name", ro.Name),
	)})
	if err != nil && !apierrors.IsForbidden(err) {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, detail(ro, ownedRS, pods.Items, ownedRuns, ownedExps, events.Items, s.opts.Actions))
}

// readOnly lists what the cache holds without copying it, for a reader
// that only reads: the list and the detail only read, and a copy of every
// Rollout, ReplicaSet and pod of a namespace per request is most of what
// they would allocate.
var readOnly = client.UnsafeDisableDeepCopy

// rollout reads the Rollout of the request's path from the cache, or
// answers 404.
func (s *Server) rollout(w http.ResponseWriter, r *http.Request) (*v1alpha1.Rollout, bool) {
	ro := &v1alpha1.Rollout{}
	return ro, s.get(w, r, ro)
}

// get reads the object of the request's path from the cache into obj, or
// answers 404.
func (s *Server) get(w http.ResponseWriter, r *http.Request, obj client.Object) bool {
	key := client.ObjectKey{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if !s.inScope(key.Namespace) {
		writeError(w, http.StatusNotFound, fmt.Errorf("namespace %q is not shown by this dashboard", key.Namespace))
		return false
	}
	if err := s.cache.Get(r.Context(), key, obj); err != nil {
		writeError(w, statusOf(err), err)
		return false
	}
	return true
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	run := &v1alpha1.AnalysisRun{}
	if s.get(w, r, run) {
		writeJSON(w, runDetail(run))
	}
}

func (s *Server) getExperiment(w http.ResponseWriter, r *http.Request) {
	ex := &v1alpha1.Experiment{}
	if s.get(w, r, ex) {
		writeJSON(w, experimentDetail(ex))
	}
}

// act runs one of the plugin's actions, through the plugin's own code
// (Options.Actions), on the Rollout as the API server has it now. It is the one
// request that changes something: it needs the session's token, which
// only the dashboard's own pages hold, and a browser's word that it comes
// from the same origin.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	if err := s.sameOrigin(r); err != nil {
		s.opts.Log.Info("Refused a request", "path", r.URL.Path, "reason", err.Error())
		writeError(w, http.StatusForbidden, err)
		return
	}
	action := r.PathValue("action")
	if !slices.Contains(s.opts.Actions.Names, action) {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown action %q", action))
		return
	}
	key := client.ObjectKey{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if !s.inScope(key.Namespace) {
		writeError(w, http.StatusNotFound, fmt.Errorf("namespace %q is not shown by this dashboard", key.Namespace))
		return
	}
	ro := &v1alpha1.Rollout{}
	if err := s.client.Get(r.Context(), key, ro); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	msg, err := s.opts.Actions.Act(r.Context(), s.client, ro, action)
	if err != nil {
		s.opts.Log.Info("Action refused", "rollout", key.String(), "action", action, "reason", err.Error())
		status := http.StatusConflict // the action makes no sense now
		var apiErr apierrors.APIStatus
		if errors.As(err, &apiErr) {
			status = int(apiErr.Status().Code)
		}
		writeError(w, status, err)
		return
	}
	s.opts.Log.Info("Action", "rollout", key.String(), "action", action)
	writeJSON(w, map[string]string{"message": msg})
}

// sameOrigin checks the token, and what the browser says of where the
// request comes from.
func (s *Server) sameOrigin(r *http.Request) error {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(TokenHeader)), []byte(s.token)) != 1 {
		return errors.New("missing or wrong " + TokenHeader + ": reload the dashboard")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "http://"+r.Host {
		return fmt.Errorf("cross-origin request refused (Origin: %s)", origin)
	}
	return nil
}

// statusOf is the HTTP status for an error from the API server.
func statusOf(err error) int {
	var apiErr apierrors.APIStatus
	if errors.As(err, &apiErr) && apiErr.Status().Code != 0 {
		return int(apiErr.Status().Code)
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// changes turns informer events into change notices for the browsers.
func (s *Server) changes() toolscache.ResourceEventHandler {
	notice := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		o, ok := obj.(client.Object)
		if !ok {
			return
		}
		s.hub.publish(changeOf(o))
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { notice(obj) },
		UpdateFunc: func(_, obj any) { notice(obj) },
		DeleteFunc: notice,
	}
}

// Change is what GET /api/watch sends for each change: the object, and the
// Rollout it belongs to when known.
type Change struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Rollout   string `json:"rollout,omitempty"`
}

func changeOf(o client.Object) Change {
	c := Change{Namespace: o.GetNamespace(), Name: o.GetName()}
	switch o := o.(type) {
	case *v1alpha1.Rollout:
		c.Kind, c.Rollout = "Rollout", o.Name
	case *v1alpha1.AnalysisRun:
		c.Kind, c.Rollout = "AnalysisRun", rolloutOf(o.OwnerReferences)
	case *v1alpha1.Experiment:
		c.Kind, c.Rollout = "Experiment", rolloutOf(o.OwnerReferences)
	case *appsv1.ReplicaSet:
		c.Kind, c.Rollout = "ReplicaSet", rolloutOf(o.OwnerReferences)
	case *corev1.Pod:
		// The ReplicaSet <rollout>-<hash> owns it.
		c.Kind = "Pod"
		for _, ref := range o.OwnerReferences {
			if ref.Kind == "ReplicaSet" {
				c.Rollout = strings.TrimSuffix(ref.Name, "-"+o.Labels[v1alpha1.PodTemplateHashLabel])
			}
		}
	}
	return c
}

// keepAlive is how often an idle event stream gets a comment, so proxies
// and browsers keep it open.
const keepAlive = 15 * time.Second

// watch streams changes as Server-Sent Events until the browser leaves.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	ch, stop := s.hub.subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = fmt.Fprint(w, "retry: 1000\n: connected\n\n")
	flusher.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			_, _ = fmt.Fprint(w, ": keep-alive\n\n")
		case c := <-ch:
			if !s.inScope(c.Namespace) {
				continue
			}
			b, _ := json.Marshal(c)
			_, _ = fmt.Fprintf(w, "event: change\ndata: %s\n\n", b)
		}
		flusher.Flush()
	}
}

// Hosts are the Host headers a server listening on addr answers; nil (any)
// for a server on every address, which is reached by names it cannot know.
func Hosts(addr net.Addr) []string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		return nil
	}
	port := fmt.Sprint(tcp.Port)
	hosts := []string{net.JoinHostPort(tcp.IP.String(), port)}
	if tcp.IP.IsLoopback() {
		hosts = append(hosts, "localhost:"+port)
	}
	return hosts
}
