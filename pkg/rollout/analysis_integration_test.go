//go:build integration

package rollout

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// TestIntegrationAnalysisStep: a canary analysis step runs an AnalysisRun
// from a template (the analysis reconciler measures a web metric); a passing
// run lets the update go on, a failing one aborts it with the reason.
func TestIntegrationAnalysisStep(t *testing.T) {
	var rate atomic.Value
	rate.Store("0.99")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, fmt.Sprintf(`{"rate": %s}`, rate.Load()))
	}))
	defer srv.Close()
	env.StartManager(t, func(mgr manager.Manager, opts controller.Options) error {
		if err := (&Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts); err != nil {
			return err
		}
		return (&analysis.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, opts)
	})
	ctx := context.Background()
	ns := env.Namespace(t)
	createServices(t, ns, "web-stable", "web-canary")
	env.PlayReplicaSets(t, ns)
	tmpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "rate", Namespace: ns},
		Spec: v1alpha1.AnalysisTemplateSpec{
			Args: []v1alpha1.AnalysisArg{{Name: "hash"}},
			Metrics: []v1alpha1.Metric{{
				Name: "rate", Interval: "1s", Count: ptr.To[int32](2), SuccessCondition: "result >= 0.95",
				Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: srv.URL + "/?hash={{args.hash}}", JSONPath: "{$.rate}"}},
			}},
		},
	}
	if err := env.Client.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	ro := canaryRollout(4, "25%", "25%", setWeight(50),
		v1alpha1.CanaryStep{Analysis: &v1alpha1.RolloutAnalysis{
			Templates: []v1alpha1.AnalysisTemplateRef{{TemplateName: "rate"}},
			Args:      []v1alpha1.AnalysisArg{{Name: "hash", ValueFrom: &v1alpha1.ArgValueFrom{PodTemplateHashValue: ptr.To(v1alpha1.PodTemplateHashLatest)}}},
		}},
		pause(""))
	ro.Namespace, ro.UID, ro.Generation = ns, "", 0
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(ro)
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })

	// Passing analysis: the update reaches the pause after it.
	setImageOf(t, key, "web:2")
	got := waitRollout(t, key, "paused after the analysis", func(r *v1alpha1.Rollout) bool {
		return r.Status.Phase == v1alpha1.RolloutPhasePaused && ptr.Deref(r.Status.CurrentStepIndex, 0) == 2
	})
	ar := got.Status.Canary.CurrentStepAnalysisRun
	if ar == nil || ar.Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Fatalf("step analysis run %+v", ar)
	}
	var run v1alpha1.AnalysisRun
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: ar.Name}, &run); err != nil {
		t.Fatal(err)
	}
	if q := run.Spec.Metrics[0].Provider.Web.URL; !strings.HasSuffix(q, "hash="+got.Status.CurrentPodHash) {
		t.Errorf("arg not substituted: %s", q)
	}
	request(t, key, v1alpha1.PromoteAnnotation, "p")
	waitRollout(t, key, "Healthy", func(r *v1alpha1.Rollout) bool { return r.Status.Phase == v1alpha1.RolloutPhaseHealthy })

	// Failing analysis: the update is aborted with the metric's value.
	rate.Store("0.42")
	setImageOf(t, key, "web:3")
	got = waitRollout(t, key, "aborted by the analysis", func(r *v1alpha1.Rollout) bool { return r.Status.Abort })
	if got.Status.Phase != v1alpha1.RolloutPhaseDegraded || !strings.Contains(got.Status.Message, "0.42") {
		t.Errorf("after a failing analysis: %s %q", got.Status.Phase, got.Status.Message)
	}
}
