package notifications

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/notifications/notificationstest"
)

// settings are a ConfigMap and a Secret with a webhook service "hook"
// pointed at url, its token from the Secret.
func settings(url string, more map[string]string) (*corev1.ConfigMap, *corev1.Secret) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rollouts-system", Name: ConfigMapName},
		Data: map[string]string{
			"service.webhook.hook": "url: " + url + "/hooks\nheaders:\n- name: Authorization\n  value: Bearer $token\n",
			"dashboardURL":         "http://dash.example/",
		},
	}
	for k, v := range more {
		cm.Data[k] = v
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rollouts-system", Name: SecretName},
		Data:       map[string][]byte{"token": []byte("t0ken-s3cret")},
	}
	return cm, secret
}

func pausedRollout(annotations map[string]string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: annotations},
		Spec: v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
			{SetWeight: ptr.To[int32](20)}, {Pause: &v1alpha1.RolloutPause{}}, {SetWeight: ptr.To[int32](60)},
		}}}},
		Status: v1alpha1.RolloutStatus{
			Phase:            v1alpha1.RolloutPhasePaused,
			CurrentStepIndex: ptr.To[int32](1),
			Canary:           v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{Canary: v1alpha1.WeightDestination{Weight: 20}, Stable: v1alpha1.WeightDestination{Weight: 80}}},
		},
	}
}

func newTestNotifier(t *testing.T, opts SenderOptions, url string, more map[string]string) (*Notifier, *Sender, *failures) {
	t.Helper()
	cm, secret := settings(url, more)
	s, f := newTestSender(t, opts)
	n := NewNotifier(s)
	st := ParseSettings(cm, secret)
	if len(st.Problems) > 0 {
		t.Fatalf("problems: %v", st.Problems)
	}
	n.SetSettings(st)
	return n, s, f
}

// The built-in templates, rendered by the engine and posted by its webhook
// service, to subscriptions on the Rollout and on its Namespace.
func TestNotifyWebhook(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	n, s, _ := newTestNotifier(t, SenderOptions{}, rcv.URL, nil)
	ro := pausedRollout(map[string]string{AnnotationPrefix + "/subscribe.on-rollout-paused.hook": ""})
	ns := map[string]string{AnnotationPrefix + "/subscribe.on-rollout-completed.hook": ""}

	if err := n.Notify(TriggerRolloutPaused, ro, ns, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the paused message", func() bool { return len(rcv.Messages()) == 1 })
	ro.Status.CurrentStepIndex = ptr.To[int32](3)
	ro.Status.Canary.Weights = nil
	if err := n.Notify(TriggerRolloutCompleted, ro, ns, nil); err != nil {
		t.Fatal(err)
	}
	// Nobody subscribed to this one.
	if err := n.Notify(TriggerRolloutAborted, ro, ns, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the completed message", func() bool { return s.countOf(string(TriggerRolloutCompleted), "hook", ResultSuccess) == 1 })
	want := []string{
		"/hooks Rollout shop/web is paused at step 2 of 3 (canary weight 20%). http://dash.example/rollouts/shop/web",
		"/hooks Rollout shop/web completed: the new revision is stable. http://dash.example/rollouts/shop/web",
	}
	if diff := cmp.Diff(want, rcv.Messages()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if auth := rcv.Requests()[0].Authorization; auth != "Bearer t0ken-s3cret" {
		t.Errorf("Authorization = %q, want the token from the Secret", auth)
	}
}

// Analysis values reach a user's template; a user's trigger with `when`
// sends only when it holds.
func TestNotifyAnalysisValues(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	n, _, _ := newTestNotifier(t, SenderOptions{}, rcv.URL, map[string]string{
		"template.failed-short": "message: '{{.analysis.name}} {{.analysis.metrics.errors.phase}} {{.analysis.metrics.errors.value}} step {{.step.number}}'",
		"trigger.on-analysis-run-failed": "- when: rollout.status.phase == 'Degraded'\n  send: [failed-short]\n" +
			"- send: [analysis-run-failed]\n",
	})
	ro := pausedRollout(map[string]string{AnnotationPrefix + "/subscribe.on-analysis-run-failed.hook": ""})
	ro.Status.Phase = v1alpha1.RolloutPhaseDegraded
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "web-5f7-2"}, Status: v1alpha1.AnalysisRunStatus{
		Phase: v1alpha1.AnalysisPhaseFailed, Message: "errors failed",
		MetricResults: []v1alpha1.MetricResult{{Name: "errors", Phase: v1alpha1.AnalysisPhaseFailed, Measurements: []v1alpha1.Measurement{{Value: "0.2"}, {Value: "0.4"}}}},
	}}
	if err := n.Notify(TriggerAnalysisRunFailed, ro, nil, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two messages", func() bool { return len(rcv.Messages()) == 2 })
	want := []string{
		"/hooks web-5f7-2 Failed 0.4 step 2",
		"/hooks Rollout shop/web: analysis failed. AnalysisRun web-5f7-2: errors failed errors=0.4 http://dash.example/rollouts/shop/web",
	}
	if diff := cmp.Diff(want, rcv.Messages()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	ro.Status.Phase = v1alpha1.RolloutPhaseProgressing
	n2, _, _ := newTestNotifier(t, SenderOptions{}, rcv.URL, map[string]string{
		"trigger.on-analysis-run-failed": "- when: rollout.status.phase == 'Degraded'\n  send: [analysis-run-failed]\n",
	})
	if err := n2.Notify(TriggerAnalysisRunFailed, ro, nil, run); err != nil {
		t.Fatal(err)
	}
	if got := len(n2.sender.lanes); got != 0 {
		t.Errorf("%d deliveries queued for a condition that does not hold", got)
	}
}

// A failing receiver: retried with backoff, each failure reported with the
// Secret's values hidden, then delivered once it answers again.
func TestNotifyRetriesAndRedacts(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	rcv.SetStatus(http.StatusUnauthorized)
	n, s, fails := newTestNotifier(t, SenderOptions{InitialBackoff: 5 * time.Millisecond, MaxAttempts: 10}, rcv.URL, nil)
	ro := pausedRollout(map[string]string{AnnotationPrefix + "/subscribe.on-rollout-paused.hook": ""})
	if err := n.Notify(TriggerRolloutPaused, ro, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two failures", func() bool { return len(fails.get()) >= 2 })
	rcv.SetStatus(0)
	eventually(t, "the delivery", func() bool { return s.countOf(string(TriggerRolloutPaused), "hook", ResultSuccess) == 1 })
	for _, f := range fails.get() {
		msg := f.Err.Error()
		if strings.Contains(msg, "s3cret") || !strings.Contains(msg, "***") || f.Final {
			t.Errorf("failure %q: want the Secret's value hidden, and not final", msg)
		}
	}
	if got := len(rcv.Messages()); got != 1 {
		t.Errorf("received %d messages, want 1", got)
	}
}

// Bad entries are named and left out; the other triggers keep working. A
// subscription to a service that does not exist fails at once.
func TestNotifyBadConfig(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	cm, secret := settings(rcv.URL, map[string]string{
		"template.broken":            "message: '{{.rollout'",
		"template.rollout-completed": "message: '{{if}}'",
		"trigger.on-custom":          "- send: [nowhere]",
		"trigger.on-rollout-aborted": "- when: 'rollout.status.phase ==='\n  send: [rollout-aborted]",
		"subscriptions":              "- recipients: [missing:x]",
		"tempalte.typo":              "message: hi",
		"service.webhook.relative":   "url: /x/$token",
	})
	st := ParseSettings(cm, secret)
	var got []string
	for _, p := range st.Problems {
		got = append(got, p.Error())
	}
	for _, want := range []string{
		`key "template.broken": `,
		`key "template.rollout-completed": `,
		`key "template.rollout-completed": the built-in definition is used instead`,
		`key "trigger.on-custom": condition 0 sends template "nowhere", which is not defined`,
		`key "trigger.on-rollout-aborted": `,
		`key "subscriptions": subscription 0: service "missing" is not defined`,
		`key "tempalte.typo": unknown key`,
		`key "service.webhook.relative": url must be an absolute http(s) URL`,
	} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("no problem containing %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if _, ok := st.Config.Triggers["on-custom"]; ok {
		t.Error("the trigger sending a missing template is kept")
	}

	s, fails := newTestSender(t, SenderOptions{})
	n := NewNotifier(s)
	n.SetSettings(st)
	ro := pausedRollout(map[string]string{
		AnnotationPrefix + "/subscribe.on-rollout-paused.hook":    "",
		AnnotationPrefix + "/subscribe.on-rollout-completed.hook": "",
		AnnotationPrefix + "/subscribe.on-rollout-paused.nothere": "chan",
	})
	for _, tr := range []Trigger{TriggerRolloutPaused, TriggerRolloutCompleted} {
		if err := n.Notify(tr, ro, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both messages", func() bool { return len(rcv.Messages()) == 2 })
	if !strings.Contains(rcv.Messages()[1], "completed: the new revision is stable") {
		t.Errorf("the completed message %q is not the built-in one", rcv.Messages()[1])
	}
	f := fails.get()
	if len(f) != 1 || f[0].Service != "nothere" || !f[0].Final || !strings.Contains(f[0].Err.Error(), `"nothere" is not configured`) {
		t.Errorf("failures = %+v, want one final failure for service nothere", f)
	}
	// The aborted trigger fell back to the built-in one.
	if c := st.Config.Triggers[string(TriggerRolloutAborted)]; len(c) != 1 || c[0].When != "" {
		t.Errorf("on-rollout-aborted = %+v, want the built-in", c)
	}
}

func TestBuiltInSettings(t *testing.T) {
	st := ParseSettings(nil, nil)
	if len(st.Problems) > 0 {
		t.Fatalf("the built-ins have problems: %v", st.Problems)
	}
	for _, tr := range Triggers {
		c := st.Config.Triggers[string(tr)]
		if len(c) != 1 || len(c[0].Send) != 1 {
			t.Errorf("%s = %+v", tr, c)
			continue
		}
		if _, ok := st.Config.Templates[c[0].Send[0]]; !ok {
			t.Errorf("%s sends %q, not a template", tr, c[0].Send[0])
		}
	}
}

// A condition without `when` always fires; one with `when` fires when it
// holds; an unknown trigger is an error.
func TestRunTrigger(t *testing.T) {
	cm, secret := settings("http://127.0.0.1:1", map[string]string{
		"trigger.on-rollout-paused": "- send: [rollout-paused]\n" +
			"- when: rollout.status.phase == 'Degraded'\n  send: [rollout-degraded]\n" +
			"- when: step.number == 2\n  send: [rollout-promoted, rollout-completed]\n",
	})
	st := ParseSettings(cm, secret)
	vars, err := Vars(pausedRollout(nil), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.RunTrigger(string(TriggerRolloutPaused), vars)
	if err != nil {
		t.Fatal(err)
	}
	want := []Condition{
		{Send: []string{"rollout-paused"}, Fires: true},
		{When: "rollout.status.phase == 'Degraded'", Send: []string{"rollout-degraded"}},
		{When: "step.number == 2", Send: []string{"rollout-promoted", "rollout-completed"}, Fires: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}
	if _, err := st.RunTrigger("on-nothing", vars); err == nil || !strings.Contains(err.Error(), `trigger "on-nothing" is not configured`) {
		t.Errorf("unknown trigger: %v", err)
	}
}
