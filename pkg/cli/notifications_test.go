package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/notifications"
	"github.com/kubeseed/rollouts/pkg/notifications/notificationstest"
)

var notificationsData = filepath.Join("testdata", "notifications")

// runNotifications runs `kubectl rollouts notifications ARGS` and returns
// what it printed: standard error, then standard output, then the error.
// A cluster it might contact by mistake refuses at once.
func runNotifications(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	cmd := NewRootCommand(streams)
	silence(cmd)
	cmd.SetArgs(append([]string{"notifications", "--server", "https://127.0.0.1:1"}, args...))
	err := cmd.Execute()
	got := errOut.String() + out.String()
	if err != nil {
		got += "error: " + err.Error() + "\n"
	}
	return got, err
}

// Offline, from files: what users see, in golden files. The settings have
// a template that does not parse (a warning; the rest works) and a trigger
// of three conditions.
func TestNotificationsOffline(t *testing.T) {
	settings := filepath.Join(notificationsData, "settings.yaml")
	ro := filepath.Join(notificationsData, "rollout.yaml")
	run := filepath.Join(notificationsData, "analysisrun.yaml")
	files := []string{"--config-map", settings, "--secret", settings}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{name: "template-get", args: []string{"template", "get"}},
		{name: "template-get-one", args: []string{"template", "get", "failed-short", "-o", "yaml"}},
		{name: "template-get-unknown", args: []string{"template", "get", "broken"}, wantErr: true},
		{name: "trigger-get", args: []string{"trigger", "get"}},
		{name: "trigger-get-names", args: []string{"trigger", "get", "-o", "name"}},
		{name: "template-notify", args: []string{"template", "notify", "rollout-paused", ro}},
		{name: "template-notify-analysis", args: []string{"template", "notify", "analysis-run-failed", ro, "--analysis-run", run}},
		{name: "template-notify-service-fields", args: []string{"template", "notify", "failed-short", ro, "--analysis-run", run}},
		{name: "trigger-run", args: []string{"trigger", "run", "on-analysis-run-failed", ro, "--analysis-run", run}},
		{name: "trigger-run-builtin", args: []string{"trigger", "run", "on-rollout-paused", ro}},
		{name: "trigger-run-unknown", args: []string{"trigger", "run", "on-nothing", ro}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runNotifications(t, "", append(tc.args, files...)...)
			if (err != nil) != tc.wantErr {
				t.Errorf("error = %v, want one: %t", err, tc.wantErr)
			}
			goldenFile(t, filepath.Join(notificationsData, tc.name+".golden"), out)
		})
	}
}

// Files from standard input, and the mistakes a user can make with files.
func TestNotificationsFiles(t *testing.T) {
	settings := filepath.Join(notificationsData, "settings.yaml")
	rollout, err := os.ReadFile(filepath.Join(notificationsData, "rollout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := runNotifications(t, string(rollout), "template", "notify", "rollout-completed", "-", "--config-map", settings, "--secret", ":empty")
	if err != nil || !strings.HasSuffix(out, "message: 'Rollout shop/web completed: the new revision is stable. http://dash.example/rollouts/shop/web'\n") {
		t.Errorf("Rollout from stdin: %v\n%s", err, out)
	}
	// The Secret is empty: the header's $token has no value, which the
	// engine warns about; nothing else fails.
	if !strings.Contains(out, "Warning: "+notifications.ConfigMapName+` key "template.broken"`) {
		t.Errorf("no warning about the broken template:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trigger", "get", "--config-map", "-", "--secret", "-"}, "only one file can be read from standard input"},
		{[]string{"trigger", "run", "on-rollout-paused", "-", "--config-map", "-", "--secret", ":empty"}, "only one file can be read from standard input"},
		{[]string{"trigger", "get", "--config-map", filepath.Join(notificationsData, "rollout.yaml"), "--secret", ":empty"}, "--config-map: testdata/notifications/rollout.yaml holds no ConfigMap " + notifications.ConfigMapName},
		{[]string{"trigger", "run", "on-rollout-paused", settings, "--config-map", settings, "--secret", settings}, settings + " holds no Rollout"},
		{[]string{"trigger", "get", "-o", "table", "--config-map", settings, "--secret", settings}, `unknown output format "table"`},
		// Neither a file nor reachable in the cluster.
		{[]string{"trigger", "run", "on-rollout-paused", "web", "--config-map", settings, "--secret", settings}, "127.0.0.1:1"},
		{[]string{"trigger", "get"}, "--config-map FILE reads a file instead"},
	} {
		out, err := runNotifications(t, "x", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// --recipient sends through the service of the settings, with the Secret's
// value in its header; a failure is an error with that value hidden.
func TestNotificationsSend(t *testing.T) {
	hook := notificationstest.NewReceiver(t)
	data, err := os.ReadFile(filepath.Join(notificationsData, "settings.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	settings := filepath.Join(t.TempDir(), "settings.yaml")
	text := strings.Replace(string(data), "url: http://127.0.0.1:1/hooks", "url: "+hook.URL+"/hooks\n    retryMax: -1", 1)
	if err := os.WriteFile(settings, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", "notify", "failed-short", filepath.Join(notificationsData, "rollout.yaml"),
		"--analysis-run", filepath.Join(notificationsData, "analysisrun.yaml"),
		"--recipient", "hook", "--recipient", "console:stdout",
		"--config-map", settings, "--secret", settings}
	out, err := runNotifications(t, "", args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := "sent failed-short to hook\nmessage: 'web-5f7-2: errors=0.4 at step 2'\n"; !strings.Contains(out, want) {
		t.Errorf("output %q, want it to contain %q", out, want)
	}
	want := []notificationstest.Request{{Method: "POST", Path: "/hooks", Authorization: "Bearer t0ken-s3cret", Body: `{"text": "web-5f7-2 failed"}`}}
	if diff := cmp.Diff(want, hook.Requests()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	hook.SetStatus(http.StatusUnauthorized)
	out, err = runNotifications(t, "", args...)
	if err == nil || !strings.Contains(err.Error(), "sending failed-short to hook: ") || !strings.Contains(err.Error(), "bad token Bearer ***") || strings.Contains(out, "s3cret") {
		t.Errorf("a failing service: got %v, want an error without the Secret's value\n%s", err, out)
	}
}

// From the cluster: the settings from the controller's namespace, the
// Rollout and its AnalysisRun from the Rollout's; without a ConfigMap or
// Secret, the built-ins.
func TestNotificationsFromCluster(t *testing.T) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rollouts", Name: notifications.ConfigMapName},
		Data: map[string]string{
			"service.webhook.hook":   "url: http://127.0.0.1:1/x\nheaders:\n- name: Authorization\n  value: $token\n",
			"template.rollout-short": "message: '{{.rollout.metadata.name}} {{.analysis.phase}} {{.weights.canary}}% {{.recipient}}'",
		},
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rollouts", Name: notifications.SecretName},
		Data:       map[string][]byte{"token": []byte("t0ken-s3cret")},
	}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Status: v1alpha1.RolloutStatus{
			Phase:   v1alpha1.RolloutPhaseDegraded,
			Message: "progress deadline exceeded",
			Canary:  v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 40}, Stable: v1alpha1.WeightDestination{Weight: 60}}},
		},
	}
	run := &v1alpha1.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
		Status:     v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseError},
	}
	options := func(objs ...client.Object) (*notificationsOptions, *strings.Builder, *strings.Builder) {
		var out, errOut strings.Builder
		c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(objs...).Build()
		return &notificationsOptions{
			streams:   genericiooptions.IOStreams{Out: &out, ErrOut: &errOut},
			namespace: "rollouts",
			sess:      &session{client: c, namespace: "shop"},
		}, &out, &errOut
	}
	ctx := context.Background()

	o, out, errOut := options(cm, secret, ro, run)
	if err := o.notify(ctx, "rollout-short", "web", "web-1", []string{"console:stdout"}); err != nil {
		t.Fatal(err)
	}
	if want := "message: web Error 40% stdout\n"; out.String() != want || errOut.Len() > 0 {
		t.Errorf("notify printed %q (stderr %q), want %q", out, errOut, want)
	}
	out.Reset()
	if err := o.runTrigger(ctx, string(notifications.TriggerRolloutDegraded), "web", ""); err != nil {
		t.Fatal(err)
	}
	if want := "CONDITION  FIRES  SENDS\n(always)   true   rollout-degraded\n"; out.String() != want {
		t.Errorf("trigger run printed %q, want %q", out, want)
	}

	o, out, errOut = options(ro)
	if err := o.notify(ctx, "rollout-degraded", "web", "", []string{"console:stdout"}); err != nil {
		t.Fatal(err)
	}
	if want := "message: 'Rollout shop/web is degraded: progress deadline exceeded.'\n"; out.String() != want {
		t.Errorf("notify printed %q, want %q", out, want)
	}
	wantWarnings := "Warning: ConfigMap rollouts/" + notifications.ConfigMapName + " not found: the built-in settings apply\n" +
		"Warning: Secret rollouts/" + notifications.SecretName + " not found: the built-in settings apply\n"
	if diff := cmp.Diff(wantWarnings, errOut.String()); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	if err := o.notify(ctx, "rollout-degraded", "api", "", nil); err == nil || !strings.Contains(err.Error(), `rollout "api" not found in namespace "shop"`) {
		t.Errorf("a missing Rollout: %v", err)
	}
	if err := o.notify(ctx, "rollout-degraded", "web", "web-9", nil); err == nil || !strings.Contains(err.Error(), "--analysis-run: getting AnalysisRun shop/web-9") {
		t.Errorf("a missing AnalysisRun: %v", err)
	}
}
