package notifications

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubeseed/rollouts/pkg/notifications/notificationstest"
)

// The webhook service in the engine's format: a template's section for the
// service sets method, path and body; headers and basic auth carry Secret
// values, and so may the URL, which is never logged and hidden in errors.
func TestWebhookService(t *testing.T) {
	rcv := notificationstest.NewReceiver(t)
	n, s, fails := newTestNotifier(t, SenderOptions{MaxAttempts: 1}, rcv.URL, map[string]string{
		"service.webhook.ops": "url: " + rcv.URL + "/base/$token\nbasicAuth: {username: ops, password: $token}\n",
		"template.rollout-paused": "message: paused\nwebhook:\n  ops:\n    method: POST\n    path: '/{{.rollout.metadata.name}}'\n" +
			"    body: '{\"rollout\": \"{{.rollout.metadata.name}}\"}'\n",
	})
	ro := pausedRollout(map[string]string{
		AnnotationPrefix + "/subscribe.on-rollout-paused.ops":  "",
		AnnotationPrefix + "/subscribe.on-rollout-paused.hook": "",
	})
	if err := n.Notify(TriggerRolloutPaused, ro, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two requests", func() bool { return len(rcv.Requests()) == 2 })
	got := rcv.Requests()
	if got[0].Path == "/hooks" {
		got[0], got[1] = got[1], got[0]
	}
	want := []notificationstest.Request{
		// Basic ops:t0ken-s3cret
		{Method: http.MethodPost, Path: "/base/t0ken-s3cret/web", Authorization: "Basic b3BzOnQwa2VuLXMzY3JldA==", Body: `{"rollout": "web"}`},
		// No section for hook: the message, with GET.
		{Method: http.MethodGet, Path: "/hooks", Authorization: "Bearer t0ken-s3cret", Body: "paused"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// A refusal: the error names the service and the answer, with the
	// Secret's values hidden (the receiver echoes the Authorization header).
	rcv.SetStatus(http.StatusForbidden)
	if err := n.Notify(TriggerRolloutPaused, ro, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two failures", func() bool { return len(fails.get()) == 2 })
	for _, f := range fails.get() {
		msg := f.Err.Error()
		if strings.Contains(msg, "t0ken-s3cret") || !strings.Contains(msg, "answered 403 Forbidden") || !strings.Contains(msg, "webhook "+f.Service+":") {
			t.Errorf("failure message %q: want the service, the status, and no Secret value", msg)
		}
	}
	if s.countOf(string(TriggerRolloutPaused), "ops", ResultFailed) != 1 {
		t.Errorf("the refused delivery to ops is not counted failed")
	}
}
