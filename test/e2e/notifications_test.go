//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/pkg/notifications"
	"github.com/kubeseed/rollouts/pkg/notifications/notificationstest"
	"github.com/kubeseed/rollouts/test/kwok"
)

// notificationSettings applies the test's entries of the notification
// ConfigMap and Secret in settingsNS with server-side apply as the test's
// own field manager, so that parallel tests share the objects without
// touching each other's keys; the entries go when the test ends.
func notificationSettings(t *testing.T, c *cluster, settingsNS string, data, secret map[string]string) {
	t.Helper()
	manager := "e2e-" + strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	apply := func(data, secret map[string]string) error {
		cm := corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: settingsNS, Name: notifications.ConfigMapName},
			Data:       data,
		}
		s := corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: settingsNS, Name: notifications.SecretName},
			StringData: secret,
		}
		for _, obj := range []any{cm, s} {
			b, err := yaml.Marshal(obj)
			if err != nil {
				return err
			}
			if _, err := c.Kubectl(context.Background(), string(b), "apply", "--server-side", "--force-conflicts", "--field-manager="+manager, "-f", "-"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := apply(data, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := apply(nil, nil); err != nil {
			t.Errorf("removing the test's notification settings: %v", err)
		}
	})
}

// subscribe annotates ns's Rollout web (or, with kind "namespace", the
// namespace ns) with a subscription of each trigger to service.
func subscribe(t *testing.T, c *cluster, ns, kind, service, recipients string, triggers ...string) {
	t.Helper()
	args := []string{"annotate", "--overwrite"}
	if kind == "namespace" {
		args = append(args, "namespace", ns)
	} else {
		args = append(args, "-n", ns, "ro", "web")
	}
	for _, tr := range triggers {
		args = append(args, fmt.Sprintf("%s/subscribe.%s.%s=%s", notifications.AnnotationPrefix, tr, service, recipients))
	}
	c.MustKubectl(t, "", args...)
}

// hashes replaces pod-template hashes in ReplicaSet and AnalysisRun names.
var hashes = regexp.MustCompile(`web-[0-9a-f]{6,10}\b`)

// received waits until got returns n messages, then checks that no more
// come for a few seconds, and returns them with hashes replaced.
func received(t *testing.T, what string, n int, got func() []string) []string {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%d %s", n, what), func(context.Context) (bool, string) {
		g := got()
		return len(g) >= n, fmt.Sprintf("%d so far: %q", len(g), g)
	})
	time.Sleep(3 * time.Second)
	var out []string
	for _, m := range got() {
		out = append(out, hashes.ReplaceAllString(m, "web-HASH"))
	}
	return out
}

func webhookMessages(r *notificationstest.Receiver) func() []string {
	return func() []string {
		var out []string
		for _, req := range r.Requests() {
			out = append(out, req.Method+" "+req.Path+" "+req.Body)
		}
		return out
	}
}

// slackMessages are "channel text", by channel: each channel's in the
// order received (a destination's messages keep their order; two
// destinations' do not interleave in a set order).
func slackMessages(s *notificationstest.Slack) func() []string {
	return func() []string {
		msgs := s.Messages()
		slices.SortStableFunc(msgs, func(a, b notificationstest.SlackMessage) int { return strings.Compare(a.Channel, b.Channel) })
		var out []string
		for _, m := range msgs {
			out = append(out, m.Channel+" "+m.Text)
		}
		return out
	}
}

// TestNotificationsWebhookAndSlack: a canary update that pauses, is
// promoted and completes, then an update that is aborted, told through the
// engine's webhook service and its Slack service (pointed at a local server
// that speaks Slack's API), with the built-in templates; a subscription on
// the namespace as well as on the Rollout.
func TestNotificationsWebhookAndSlack(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	hook, slack := notificationstest.NewReceiver(t), notificationstest.NewSlack(t)
	// Service names of the test's own: the settings are shared.
	suffix := ns[strings.LastIndex(ns, "-")+1:]
	hookName, slackName := "hook-"+suffix, "slack-"+suffix
	notificationSettings(t, cl, kwok.ControllerNamespace, map[string]string{
		"service.webhook." + hookName: fmt.Sprintf("url: %s/%s\n", hook.URL, hookName),
		"service.slack." + slackName:  fmt.Sprintf("token: $%s-token\napiURL: %s/api/\n", slackName, slack.URL),
	}, map[string]string{slackName + "-token": "xoxb-e2e-" + suffix})

	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, "[{setWeight: 25}, {pause: {}}, {setWeight: 50}, {pause: {duration: 2s}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 4", "web:1 4/4")
	subscribe(t, cl, ns, "rollout", hookName, "", "on-rollout-updated", "on-rollout-step-completed", "on-rollout-paused",
		"on-rollout-promoted", "on-rollout-completed", "on-rollout-aborted")
	subscribe(t, cl, ns, "rollout", slackName, "releases", "on-rollout-paused", "on-rollout-completed", "on-rollout-aborted")
	subscribe(t, cl, ns, "namespace", slackName, "oncall", "on-rollout-aborted")

	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 3/3, web:2 1/1")
	request(t, ns, "promote", "p1")
	waitFor(t, ns, "Healthy 4", "web:2 4/4")
	setImage(t, ns, "web:3")
	waitFor(t, ns, "Paused 1", "web:2 3/3, web:3 1/1")
	request(t, ns, "abort", "a1")
	waitFor(t, ns, "Degraded 1", "web:2 4/4")

	who := "Rollout " + ns + "/web"
	get := "GET /" + hookName + " " + who
	wantHook := []string{
		get + " is updating to a new revision.",
		get + " completed step 1 of 4 (canary weight 25%).",
		get + " is paused at step 2 of 4 (canary weight 25%).",
		get + " was promoted at step 2 of 4.",
		get + " completed step 2 of 4 (canary weight 25%).",
		get + " completed step 3 of 4 (canary weight 50%).",
		get + " is paused at step 4 of 4 (canary weight 50%).",
		get + " completed step 4 of 4 (canary weight 50%).",
		get + " completed: the new revision is stable.",
		get + " is updating to a new revision.",
		get + " completed step 1 of 4 (canary weight 25%).",
		get + " is paused at step 2 of 4 (canary weight 25%).",
		get + " was aborted: Update to web-HASH aborted: all replicas back on the stable revision web-HASH.",
	}
	if diff := cmp.Diff(wantHook, received(t, "webhook messages", len(wantHook), webhookMessages(hook))); diff != "" {
		t.Errorf("webhook messages (-want +got):\n%s", diff)
	}
	wantSlack := []string{
		"oncall " + who + " was aborted: Update to web-HASH aborted: all replicas back on the stable revision web-HASH.",
		"releases " + who + " is paused at step 2 of 4 (canary weight 25%).",
		"releases " + who + " is paused at step 4 of 4 (canary weight 50%).",
		"releases " + who + " completed: the new revision is stable.",
		"releases " + who + " is paused at step 2 of 4 (canary weight 25%).",
		"releases " + who + " was aborted: Update to web-HASH aborted: all replicas back on the stable revision web-HASH.",
	}
	if diff := cmp.Diff(wantSlack, received(t, "Slack messages", len(wantSlack), slackMessages(slack))); diff != "" {
		t.Errorf("Slack messages (-want +got):\n%s", diff)
	}
	for _, m := range slack.Messages() {
		if m.Token != "Bearer xoxb-e2e-"+suffix {
			t.Fatalf("Slack was called with %q, not the Secret's token", m.Token)
		}
	}
	if strings.Contains(ctl.Log(), "xoxb-e2e-"+suffix) {
		t.Error("the Slack token is in the controller's log")
	}
	// Delivered, the records leave the status.
	eventually(t, 30*time.Second, "no notification pending", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.pendingNotifications}")
		return strings.TrimSpace(out) == "", out
	})
}

// TestNotificationsDeliveredOnceAcrossRestart: two replicas of a
// controller, the leader and a standby. Only the leader sends; it dies
// after a transition, while its notification is being retried, and the
// standby, leader in turn, delivers it once. The controllers are
// namespaced, on a cluster of their own: the shared cluster's controller
// would reconcile the namespace too.
func TestNotificationsDeliveredOnceAcrossRestart(t *testing.T) {
	t.Parallel()
	const ns = "team-n"
	own := ownCluster(t, "notifications", ns)
	first := startNamespacedOn(t, own, ns)
	hook := notificationstest.NewReceiver(t)
	hook.SetStatus(http.StatusInternalServerError)
	notificationSettings(t, own, ns, map[string]string{
		"service.webhook.hook": fmt.Sprintf("url: %s/hook\n", hook.URL),
	}, nil)
	status := func(ctx context.Context) string {
		out, _ := own.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.phase} {.status.currentStepIndex} {.status.updatedReplicas}/{.status.availableReplicas}")
		return out
	}
	waitStatus := func(want string) {
		t.Helper()
		eventually(t, 90*time.Second, want, func(ctx context.Context) (bool, string) {
			got := status(ctx)
			return got == want, got
		})
	}
	pending := func(ctx context.Context) string {
		out, _ := own.Kubectl(ctx, "", "-n", ns, "get", "ro", "web", "-o", "jsonpath={.status.pendingNotifications[*].trigger}")
		return strings.TrimSpace(out)
	}
	own.MustKubectl(t, kwok.CanaryServices+"---"+kwok.CanaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitStatus("Healthy 2 2/2")
	subscribe(t, own, ns, "rollout", "hook", "", "on-rollout-paused")
	// The first reconciled: it leads. The standby waits for the Lease.
	kc, err := own.ServiceAccountKubeconfig(ns, controllerSA)
	if err != nil {
		t.Fatal(err)
	}
	standby, err := own.StartController("namespaced-"+ns+"-standby", kc, "--namespace="+ns, "--leader-elect", "--leader-election-namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Stop(40 * time.Second) })

	own.MustKubectl(t, "", "-n", ns, "patch", "ro", "web", "--type=merge", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:2"}]}}}}`)
	waitStatus("Paused 1 1/2")
	eventually(t, 30*time.Second, "a retried delivery", func(context.Context) (bool, string) {
		return hook.Refused() >= 2, fmt.Sprintf("%d attempts refused", hook.Refused())
	})
	if strings.Contains(standby.Log(), `"logger":"notifications","msg":"Notification failed"`) {
		t.Fatalf("the standby sent notifications:\n%s", standby.Log())
	}
	// SIGKILL: no graceful shutdown, as when a node dies.
	_ = first.Kill()
	if got := pending(context.Background()); got != "on-rollout-paused" {
		t.Fatalf("pending notifications after the crash: %q, want on-rollout-paused", got)
	}
	if got := hook.Requests(); len(got) != 0 {
		t.Fatalf("delivered before the crash: %v", got)
	}
	hook.SetStatus(0)

	// The standby takes the Lease once the dead leader's expires, then
	// delivers what the status lists.
	want := []string{"GET /hook Rollout " + ns + "/web is paused at step 2 of 2 (canary weight 50%)."}
	if diff := cmp.Diff(want, received(t, "message after the restart", 1, webhookMessages(hook))); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	eventually(t, 30*time.Second, "no notification pending", func(ctx context.Context) (bool, string) {
		got := pending(ctx)
		return got == "", got
	})
	if got := webhookMessages(hook)(); len(got) != 1 {
		t.Errorf("delivered %d times: %q", len(got), got)
	}
	events := own.MustKubectl(t, "", "-n", ns, "get", "events", "--field-selector", "reason=NotificationFailed", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "on-rollout-paused to hook failed (attempt 1, retrying)") || !strings.Contains(events, "500") {
		t.Errorf("NotificationFailed events: %q", events)
	}
}

// TestNotificationsFailingReceiverKeepsThePace: two Rollouts update side
// by side, one notifying a receiver that fails; the failing one completes
// while none of its notifications has been delivered (their times are
// printed).
// The failing deliveries are retried, each failure is a NotificationFailed
// event and counted in notification_deliveries_total, and they succeed
// once the receiver does.
func TestNotificationsFailingReceiverKeepsThePace(t *testing.T) {
	t.Parallel()
	good, failing := namespace(t), namespace(t)
	goodHook, failingHook := notificationstest.NewReceiver(t), notificationstest.NewReceiver(t)
	failingHook.SetStatus(http.StatusInternalServerError)
	suffix := good[strings.LastIndex(good, "-")+1:]
	goodName, failingName := "good-"+suffix, "failing-"+suffix
	notificationSettings(t, cl, kwok.ControllerNamespace, map[string]string{
		"service.webhook." + goodName:    fmt.Sprintf("url: %s/\n", goodHook.URL),
		"service.webhook." + failingName: fmt.Sprintf("url: %s/\n", failingHook.URL),
	}, nil)
	steps := "[{setWeight: 25}, {pause: {duration: 2s}}, {setWeight: 50}, {pause: {duration: 2s}}, {setWeight: 75}, {pause: {duration: 2s}}]"
	triggers := []string{"on-rollout-updated", "on-rollout-step-completed", "on-rollout-paused", "on-rollout-completed"}
	for ns, service := range map[string]string{good: goodName, failing: failingName} {
		cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(4, steps), "-n", ns, "apply", "-f", "-")
		waitFor(t, ns, "Healthy 6", "web:1 4/4")
		subscribe(t, cl, ns, "rollout", service, "", triggers...)
	}

	start := map[string]time.Time{}
	took := map[string]time.Duration{}
	for _, ns := range []string{good, failing} {
		start[ns] = time.Now()
		setImage(t, ns, "web:2")
	}
	eventually(t, 120*time.Second, "both updates done", func(ctx context.Context) (bool, string) {
		for _, ns := range []string{good, failing} {
			if _, done := took[ns]; !done {
				rss, _ := replicaSets(ctx, ns)
				if rolloutStatus(ctx, ns) == "Healthy 6" && rss == "web:2 4/4" {
					took[ns] = time.Since(start[ns])
				}
			}
		}
		return len(took) == 2, fmt.Sprint(took)
	})
	// The pace, measured: printed, not asserted (no timed assertions in
	// tests). What is asserted is that the update ran to its end while
	// every delivery to the failing receiver failed: sending is off the
	// reconcile path.
	t.Logf("update with a good receiver: %s; with a failing one: %s", took[good].Round(time.Millisecond), took[failing].Round(time.Millisecond))
	if got := failingHook.Requests(); len(got) != 0 {
		t.Fatalf("the failing receiver accepted %d requests", len(got))
	}
	// 1 update + 6 steps + 3 pauses + completed.
	const messages = 11
	if got := received(t, "messages to the good receiver", messages, webhookMessages(goodHook)); len(got) != messages {
		t.Errorf("the good receiver got %d messages, want %d: %q", len(got), messages, got)
	}
	if failingHook.Refused() < 2 {
		t.Errorf("the failing receiver saw %d attempts", failingHook.Refused())
	}
	events := cl.MustKubectl(t, "", "-n", failing, "get", "events", "--field-selector", "reason=NotificationFailed", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "on-rollout-updated to "+failingName+" failed (attempt 1, retrying)") {
		t.Errorf("NotificationFailed events of the failing Rollout: %q", events)
	}
	if events := cl.MustKubectl(t, "", "-n", good, "get", "events", "--field-selector", "reason=NotificationFailed", "-o", "name"); strings.TrimSpace(events) != "" {
		t.Errorf("NotificationFailed events of the good Rollout: %s", events)
	}

	// The receiver recovers: what was retried arrives, the oldest first.
	failingHook.SetStatus(0)
	eventually(t, 90*time.Second, "deliveries to the recovered receiver", func(context.Context) (bool, string) {
		got := webhookMessages(failingHook)()
		return len(got) > 0 && strings.Contains(got[0], "is updating to a new revision"), fmt.Sprintf("%q", got)
	})
	_, metrics, err := scrape(context.Background(), ctl)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`notification_deliveries_total{result="retry",service=%q,trigger="on-rollout-updated"}`, failingName),
		fmt.Sprintf(`notification_deliveries_total{result="success",service=%q,trigger="on-rollout-updated"} 1`, failingName),
		fmt.Sprintf(`notification_deliveries_total{result="success",service=%q,trigger="on-rollout-completed"} 1`, goodName),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestNotificationsBadConfig: a template that does not parse, a trigger
// sending a template that does not exist and a subscription to a service
// that does not exist are each told in an event and the log; the
// controller keeps running and the rest of the settings work.
func TestNotificationsBadConfig(t *testing.T) {
	t.Parallel()
	ns := namespace(t)
	hook := notificationstest.NewReceiver(t)
	suffix := ns[strings.LastIndex(ns, "-")+1:]
	broken, missing, hookName, nowhere := "template.broken-"+suffix, "trigger.on-missing-"+suffix, "hook-"+suffix, "nowhere-"+suffix
	notificationSettings(t, cl, kwok.ControllerNamespace, map[string]string{
		broken:                        "message: '{{.rollout.metadata.name'",
		missing:                       "- send: [no-such-template-" + suffix + "]",
		"service.webhook." + hookName: fmt.Sprintf("url: %s/\n", hook.URL),
	}, nil)
	eventually(t, 30*time.Second, "an event about the ConfigMap", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", kwok.ControllerNamespace, "get", "events", "--field-selector",
			"reason=NotificationConfigInvalid,involvedObject.name="+notifications.ConfigMapName, "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, fmt.Sprintf("key %q", broken)) && strings.Contains(out, fmt.Sprintf("key %q", missing)) &&
			strings.Contains(out, "no-such-template-"+suffix), out
	})
	for _, key := range []string{broken, missing} {
		if !strings.Contains(ctl.Log(), key) {
			t.Errorf("the controller's log does not name %s", key)
		}
	}

	cl.MustKubectl(t, canaryServices+"---"+canaryRolloutYAML(2, "[{setWeight: 50}, {pause: {}}]"), "-n", ns, "apply", "-f", "-")
	waitFor(t, ns, "Healthy 2", "web:1 2/2")
	subscribe(t, cl, ns, "rollout", hookName, "", "on-rollout-paused")
	subscribe(t, cl, ns, "rollout", nowhere, "", "on-rollout-paused")
	setImage(t, ns, "web:2")
	waitFor(t, ns, "Paused 1", "web:1 1/1, web:2 1/1")
	want := []string{"GET / Rollout " + ns + "/web is paused at step 2 of 2 (canary weight 50%)."}
	if diff := cmp.Diff(want, received(t, "the paused message", 1, webhookMessages(hook))); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	eventually(t, 30*time.Second, "an event about the missing service", func(ctx context.Context) (bool, string) {
		out, _ := cl.Kubectl(ctx, "", "-n", ns, "get", "events", "--field-selector", "reason=NotificationFailed", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, fmt.Sprintf("on-rollout-paused to %s failed (not sent, given up): notification service %q is not configured", nowhere, nowhere)), out
	})
	if err := ctl.Exited(); err != nil {
		t.Fatalf("the controller exited: %v", err)
	}
}
