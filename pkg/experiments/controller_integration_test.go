//go:build integration

package experiments

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func waitExperiment(t *testing.T, key client.ObjectKey, what string, cond func(*v1alpha1.Experiment) bool) *v1alpha1.Experiment {
	t.Helper()
	var ex v1alpha1.Experiment
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, key, &ex); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return cond(&ex), nil
	})
	if err != nil {
		t.Fatalf("%s: not reached; status %+v", what, ex.Status)
	}
	return &ex
}

// TestIntegrationExperiment runs an Experiment against a real API server with
// the analysis reconciler measuring a web metric: its ReplicaSets and Service
// appear with their own hashes, the analysis gets the template hashes, the
// required analysis ends it Successful, then the Service goes and the
// ReplicaSets are scaled to 0. A second Experiment whose analysis fails ends
// Failed.
func TestIntegrationExperiment(t *testing.T) {
	var mu sync.Mutex
	verdict := map[string]string{}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.URL.RawQuery)
		_, _ = io.WriteString(w, verdict[r.URL.Query().Get("exp")])
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
	env.PlayReplicaSets(t, ns)
	tmpl := &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "compare", Namespace: ns},
		Spec: v1alpha1.AnalysisTemplateSpec{
			Args: []v1alpha1.AnalysisArg{{Name: "exp"}, {Name: "baseline"}, {Name: "canary"}},
			Metrics: []v1alpha1.Metric{{
				Name: "same", Interval: "1s", Count: ptr.To[int32](2), SuccessCondition: "result == true",
				Provider: v1alpha1.MetricProvider{Web: &v1alpha1.WebMetric{URL: srv.URL + "/?exp={{args.exp}}&baseline={{args.baseline}}&canary={{args.canary}}"}},
			}},
		},
	}
	if err := env.Client.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	newExperiment := func(name string) *v1alpha1.Experiment {
		ex := &v1alpha1.Experiment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.ExperimentSpec{
				Templates:             []v1alpha1.ExperimentTemplate{template("baseline", 2), template("canary", 1)},
				ScaleDownDelaySeconds: ptr.To[int32](1),
				Analyses: []v1alpha1.ExperimentAnalysis{{
					Name: "judge", TemplateName: "compare", RequiredForCompletion: true,
					Args: []v1alpha1.AnalysisArg{
						{Name: "exp", ValueFrom: &v1alpha1.ArgValueFrom{FieldRef: &v1alpha1.FieldRef{FieldPath: "metadata.name"}}},
						{Name: "baseline", Value: ptr.To("{{templates.baseline.podTemplateHash}}")},
						{Name: "canary", Value: ptr.To("{{templates.canary.podTemplateHash}}")},
					},
				}},
			},
		}
		ex.Spec.Templates[1].Service = &v1alpha1.TemplateService{}
		if err := env.Client.Create(ctx, ex); err != nil {
			t.Fatal(err)
		}
		return ex
	}
	mu.Lock()
	verdict["good"], verdict["bad"] = "true", "false"
	mu.Unlock()

	good := newExperiment("good")
	key := client.ObjectKeyFromObject(good)
	running := waitExperiment(t, key, "running", func(ex *v1alpha1.Experiment) bool { return ex.Status.Phase == v1alpha1.AnalysisPhaseRunning })
	var rs appsv1.ReplicaSet
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good-canary"}, &rs); err != nil {
		t.Fatal(err)
	}
	hash := rs.Labels[v1alpha1.PodTemplateHashLabel]
	if ref := metav1.GetControllerOf(&rs); ref == nil || ref.Name != "good" || hash == "" || hash != running.Status.TemplateStatuses[1].PodTemplateHash {
		t.Fatalf("canary ReplicaSet: owner %+v, hash %q, status %+v", ref, hash, running.Status.TemplateStatuses)
	}
	var svc corev1.Service
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good-canary"}, &svc); err != nil || svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != hash {
		t.Fatalf("canary Service: %v %v", err, svc.Spec.Selector)
	}
	done := waitExperiment(t, key, "Successful", func(ex *v1alpha1.Experiment) bool { return ex.Status.Phase == v1alpha1.AnalysisPhaseSuccessful })
	if r := done.Status.AnalysisRuns; len(r) != 1 || r[0].Phase != v1alpha1.AnalysisPhaseSuccessful || r[0].AnalysisRun != "good-judge" {
		t.Fatalf("analysis runs %+v", r)
	}
	mu.Lock()
	query := asked[0]
	mu.Unlock()
	if want := fmt.Sprintf("exp=good&baseline=%s&canary=%s", done.Status.TemplateStatuses[0].PodTemplateHash, hash); query != want {
		t.Errorf("the analysis asked %q, want %q", query, want)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var svc corev1.Service
		gone := apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good-canary"}, &svc))
		var list appsv1.ReplicaSetList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.ExperimentLabel: "good"}); err != nil {
			return false, err
		}
		for _, rs := range list.Items {
			if ptr.Deref(rs.Spec.Replicas, 1) != 0 {
				return false, nil
			}
		}
		return gone && len(list.Items) == 2, nil
	})
	if err != nil {
		t.Fatal("the Service was not deleted or the ReplicaSets not scaled to 0 after the delay")
	}

	bad := newExperiment("bad")
	failed := waitExperiment(t, client.ObjectKeyFromObject(bad), "Failed", func(ex *v1alpha1.Experiment) bool { return ex.Status.Phase.Completed() })
	if failed.Status.Phase != v1alpha1.AnalysisPhaseFailed || !strings.Contains(failed.Status.Message, "judge") {
		t.Fatalf("with a failing analysis: %s %q", failed.Status.Phase, failed.Status.Message)
	}
}
