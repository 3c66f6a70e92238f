//go:build integration

package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/cli"
	"github.com/kubeseed/rollouts/pkg/dashboard"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// start serves a dashboard of ns, as cfg's user, on a test server.
func start(t *testing.T, cfg *rest.Config, ns string) (*dashboard.Server, *httptest.Server) {
	t.Helper()
	srv, err := dashboard.New(cfg, dashboard.Options{Namespace: ns, Actions: cli.DashboardActions()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs
}

// pausedCanary creates a canary Rollout web paused at its second step of
// an update (status written as the controller would).
func pausedCanary(t *testing.T, ns string) *v1alpha1.Rollout {
	t.Helper()
	ctx := context.Background()
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: v1alpha1.RolloutSpec{
			Replicas: ptr.To[int32](4),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:2"}}},
			},
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](25)}, {Pause: &v1alpha1.RolloutPause{}}, {SetWeight: ptr.To[int32](50)},
			}}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	ro.Status = v1alpha1.RolloutStatus{
		Phase: v1alpha1.RolloutPhasePaused, Message: "Step 2/3: paused until promoted",
		CurrentPodHash: "bbb", StableRS: "aaa", CurrentStepIndex: ptr.To[int32](1),
		PauseConditions: []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: metav1.Now()}},
		Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{
			Canary:   v1alpha1.WeightDestination{Weight: 25, ServiceName: "web-canary"},
			Stable:   v1alpha1.WeightDestination{Weight: 75, ServiceName: "web-stable"},
			Verified: ptr.To(true),
		}},
	}
	if err := env.Client.Status().Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

// The list and the detail, from the informers.
func TestIntegrationDashboardReads(t *testing.T) {
	ns := env.Namespace(t)
	pausedCanary(t, ns)
	_, hs := start(t, env.Config, ns)

	var list dashboard.RolloutList
	getJSON(t, hs.URL+"/api/rollouts", &list)
	if len(list.Items) != 1 {
		t.Fatalf("listed %+v, want web", list.Items)
	}
	row := list.Items[0]
	if row.Name != "web" || row.Strategy != "canary" || row.Phase != "Paused" || row.Step == nil || ptr.Deref(row.Step.Current, 0) != 2 ||
		row.Step.Count != 3 || ptr.Deref(row.CanaryWeight, -1) != 25 || row.Images[0] != "web:2" {
		t.Errorf("row %+v", row)
	}

	var d dashboard.RolloutDetail
	if code := getJSON(t, hs.URL+"/api/rollouts/"+ns+"/web", &d); code != http.StatusOK {
		t.Fatalf("detail: %d", code)
	}
	var states []string
	for _, s := range d.Steps {
		states = append(states, s.Text+":"+s.State)
	}
	if got := strings.Join(states, ", "); got != "setWeight 25:done, pause until promoted:current, setWeight 50:pending" {
		t.Errorf("steps %s", got)
	}
	if d.Traffic == nil || d.Traffic.Canary.Weight != 25 || d.Traffic.Stable.Name != "web-stable" || !ptr.Deref(d.Traffic.Verified, false) {
		t.Errorf("traffic %+v", d.Traffic)
	}
	allowed := map[string]bool{}
	for _, a := range d.Actions {
		allowed[a.Name] = a.Allowed
	}
	if !allowed["promote"] || !allowed["abort"] || allowed["retry"] || allowed["resume"] {
		t.Errorf("actions %+v", d.Actions)
	}
	var missing map[string]string
	if code := getJSON(t, hs.URL+"/api/rollouts/"+ns+"/nope", &missing); code != http.StatusNotFound || missing["error"] == "" {
		t.Errorf("a missing Rollout: %d %v", code, missing)
	}
	if code := getJSON(t, hs.URL+"/api/rollouts/default/web", &missing); code != http.StatusNotFound {
		t.Errorf("a namespace the dashboard does not show: %d %v", code, missing)
	}
}

// A change in the cluster reaches the browser as an event.
func TestIntegrationDashboardPushesChanges(t *testing.T) {
	ns := env.Namespace(t)
	ro := pausedCanary(t, ns)
	_, hs := start(t, env.Config, ns)
	resp, err := http.Get(hs.URL + "/api/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The stream is open once its first comment arrives.
	for l := range lines {
		if strings.HasPrefix(l, ": connected") {
			break
		}
	}
	ro.Status.Phase = v1alpha1.RolloutPhaseProgressing
	if err := env.Client.Status().Update(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`data: {"kind":"Rollout","namespace":%q,"name":"web","rollout":"web"}`, ns)
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %s", want)
		}
	}
}

func post(t *testing.T, url string, header map[string]string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]string
	_ = json.Unmarshal(body, &out)
	return resp.StatusCode, out
}

// Actions need the session's token and the same origin; they write what
// the plugin writes, and a refusal says why.
func TestIntegrationDashboardActions(t *testing.T) {
	ns := env.Namespace(t)
	pausedCanary(t, ns)
	srv, hs := start(t, env.Config, ns)
	url := hs.URL + "/api/rollouts/" + ns + "/web/actions/promote"

	for name, header := range map[string]map[string]string{
		"no token":       {},
		"a wrong token":  {dashboard.TokenHeader: "guess"},
		"another site":   {dashboard.TokenHeader: srv.Token(), "Sec-Fetch-Site": "cross-site"},
		"another origin": {dashboard.TokenHeader: srv.Token(), "Origin": "http://evil.example"},
	} {
		if code, body := post(t, url, header); code != http.StatusForbidden || body["error"] == "" {
			t.Errorf("%s: %d %v, want 403 with an error", name, code, body)
		}
	}
	ro := &v1alpha1.Rollout{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, ro); err != nil {
		t.Fatal(err)
	}
	if v := ro.Annotations[v1alpha1.PromoteAnnotation]; v != "" {
		t.Fatalf("a refused request promoted: %q", v)
	}

	same := map[string]string{dashboard.TokenHeader: srv.Token(), "Origin": hs.URL, "Sec-Fetch-Site": "same-origin"}
	code, body := post(t, url, same)
	if code != http.StatusOK || body["message"] != `rollout "web" promoted` {
		t.Fatalf("promote: %d %v", code, body)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web"}, ro); err != nil {
		t.Fatal(err)
	}
	if ro.Annotations[v1alpha1.PromoteAnnotation] == "" {
		t.Error("promote wrote no request token")
	}
	code, body = post(t, hs.URL+"/api/rollouts/"+ns+"/web/actions/retry", same)
	if code != http.StatusConflict || body["error"] != `rollout "web": the update is not aborted: nothing to retry` {
		t.Errorf("retry: %d %v", code, body)
	}
}

// A user whose RBAC lets them read Rollouts but not patch them gets the
// as grants user, in ns, the rules (a Role and its binding) and returns a
// config that impersonates them.
func as(t *testing.T, ns, user string, rules ...rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return cfg
}

// read is a rule that lets a user get, list and watch resources.
func read(group string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: resources, Verbs: []string{"get", "list", "watch"}}
}

// A user whose RBAC lets them read Rollouts but not patch them gets the
// API server's answer.
func TestIntegrationDashboardForbidden(t *testing.T) {
	ns := env.Namespace(t)
	pausedCanary(t, ns)
	cfg := as(t, ns, "viewer",
		read(v1alpha1.GroupVersion.Group, "rollouts", "analysisruns", "experiments"),
		read("apps", "replicasets"),
		read("", "pods", "events"))
	srv, hs := start(t, cfg, ns)
	code, body := post(t, hs.URL+"/api/rollouts/"+ns+"/web/actions/abort", map[string]string{dashboard.TokenHeader: srv.Token()})
	if code != http.StatusForbidden || !strings.Contains(body["error"], `is forbidden: User "viewer" cannot patch resource "rollouts"`) {
		t.Errorf("abort as viewer: %d %v", code, body)
	}
}

// A user who may read Rollouts but not their AnalysisRuns hears so when
// the dashboard starts, instead of waiting on an informer that retries.
func TestIntegrationDashboardCannotRead(t *testing.T) {
	ns := env.Namespace(t)
	cfg := as(t, ns, "reader", read(v1alpha1.GroupVersion.Group, "rollouts"))
	srv, err := dashboard.New(cfg, dashboard.Options{Namespace: ns, Actions: cli.DashboardActions()})
	if err != nil {
		t.Fatal(err)
	}
	start, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Start(start)
	if err == nil || !strings.Contains(err.Error(), `User "reader" cannot list resource "analysisruns"`) {
		t.Fatalf("Start as a user who cannot list AnalysisRuns: %v", err)
	}
	if start.Err() != nil {
		t.Errorf("Start waited for its deadline: %v", err)
	}
}
