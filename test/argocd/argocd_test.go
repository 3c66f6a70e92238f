package argocd

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func load(t *testing.T) *Config {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunHealthOfAnalysisRunsAndExperiments(t *testing.T) {
	c := load(t)
	for _, kind := range []string{"AnalysisRun", "Experiment"} {
		for phase, want := range map[string]string{
			"":             "Progressing",
			"Pending":      "Progressing",
			"Running":      "Progressing",
			"Successful":   "Healthy",
			"Failed":       "Degraded",
			"Error":        "Degraded",
			"Inconclusive": "Suspended",
		} {
			obj := map[string]any{"metadata": map[string]any{"name": "x"}, "status": map[string]any{"phase": phase, "message": "m"}}
			if phase == "" {
				delete(obj, "status")
			}
			got, _, err := c.Health(kind, obj)
			if err != nil {
				t.Fatalf("%s %q: %v", kind, phase, err)
			}
			if got != want {
				t.Errorf("%s in phase %q: Argo CD health %s, want %s", kind, phase, got, want)
			}
		}
	}
}

// rollout is a Rollout as Argo CD hands it to the scripts.
func rollout(status map[string]any, paused bool) map[string]any {
	return map[string]any{
		"apiVersion": "rollouts.kubeseed.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "web", "generation": 3},
		"spec":     map[string]any{"paused": paused, "replicas": 2},
		"status":   status,
	}
}

func TestActionsDiscovery(t *testing.T) {
	c := load(t)
	all := func(on ...string) map[string]bool {
		m := map[string]bool{"promote": false, "promote-full": false, "abort": false, "retry": false, "restart": false, "pause": false, "resume": false}
		for _, a := range on {
			m[a] = true
		}
		return m
	}
	for name, tc := range map[string]struct {
		obj  map[string]any
		want map[string]bool
	}{
		"at rest":        {rollout(map[string]any{"stableRS": "a", "currentPodHash": "a"}, false), all("restart", "pause")},
		"updating":       {rollout(map[string]any{"stableRS": "a", "currentPodHash": "b"}, false), all("promote", "promote-full", "abort", "restart", "pause")},
		"aborted":        {rollout(map[string]any{"stableRS": "a", "currentPodHash": "b", "abort": true}, false), all("retry", "restart", "pause")},
		"paused by spec": {rollout(map[string]any{"stableRS": "a", "currentPodHash": "a"}, true), all("restart", "resume")},
		"no status yet":  {rollout(nil, false), all("restart", "pause")},
		"first revision": {rollout(map[string]any{"currentPodHash": "a"}, false), all("promote", "promote-full", "abort", "restart", "pause")},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := c.Discover("Rollout", tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("enabled actions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestActions: each action changes exactly what the CLI's command changes.
func TestActions(t *testing.T) {
	c := load(t)
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	for action, annotation := range map[string]string{
		"promote": "rollouts.kubeseed.io/promote", "promote-full": "rollouts.kubeseed.io/promote-full",
		"abort": "rollouts.kubeseed.io/abort", "retry": "rollouts.kubeseed.io/retry",
	} {
		out := runAction(t, c, action, rollout(map[string]any{}, false))
		anns := out.Metadata.Annotations
		if len(anns) != 1 || !stamp.MatchString(anns[annotation]) {
			t.Errorf("%s set annotations %v; want only %s with an RFC 3339 time", action, anns, annotation)
		}
		if out.Spec.Paused || out.Spec.RestartAt != "" {
			t.Errorf("%s changed the spec: %+v", action, out.Spec)
		}
	}
	// restartAt is the whole second after the moment the action ran.
	before := time.Now().Truncate(time.Second)
	out := runAction(t, c, "restart", rollout(map[string]any{}, false))
	after := time.Now().Truncate(time.Second)
	at, err := time.Parse(time.RFC3339, out.Spec.RestartAt)
	if err != nil || at.Before(before.Add(time.Second)) || at.After(after.Add(time.Second)) {
		t.Errorf("restart set restartAt %q (%v); want a whole second in [%s, %s]", out.Spec.RestartAt, err,
			before.Add(time.Second).UTC().Format(time.RFC3339), after.Add(time.Second).UTC().Format(time.RFC3339))
	}
	if out := runAction(t, c, "pause", rollout(map[string]any{}, false)); !out.Spec.Paused {
		t.Error("pause left spec.paused false")
	}
	if out := runAction(t, c, "resume", rollout(map[string]any{}, true)); out.Spec.Paused {
		t.Error("resume left spec.paused true")
	}
}

type actionResult struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Paused    bool   `json:"paused"`
		RestartAt string `json:"restartAt"`
		Replicas  int    `json:"replicas"`
	} `json:"spec"`
}

func runAction(t *testing.T, c *Config, name string, obj map[string]any) actionResult {
	t.Helper()
	b, err := c.Run("Rollout", name, obj)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var r actionResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s returned %s: %v", name, b, err)
	}
	if r.Spec.Replicas != 2 {
		t.Errorf("%s lost the rest of the object: %s", name, b)
	}
	return r
}
