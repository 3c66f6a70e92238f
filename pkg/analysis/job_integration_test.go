//go:build integration

package analysis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// waitJob waits for a Job to exist (ok) or to be gone (!ok).
func waitJob(t *testing.T, key client.ObjectKey, exists bool) *batchv1.Job {
	t.Helper()
	var job batchv1.Job
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, key, &job)
		if apierrors.IsNotFound(err) {
			return !exists, nil
		}
		return exists && err == nil, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("Job %s: exists=%v not reached", key.Name, exists)
	}
	return &job
}

// finishJob plays the Job controller, which envtest lacks: it writes a
// finished Job's status through the status subresource.
func finishJob(t *testing.T, job *batchv1.Job, succeeded bool, reason, message string) {
	t.Helper()
	now := metav1.Now()
	job.Status.StartTime = &now
	if succeeded {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now},
		}
	}
	if err := env.Client.Status().Update(context.Background(), job); err != nil {
		t.Fatalf("setting the status of Job %s: %v", job.Name, err)
	}
}

// TestIntegrationJobMetric runs job metrics through the real API server: a
// Job per measurement, owned by the run, the run Running while it runs;
// Complete succeeds, Failed fails with the Job's reason, a Job deleted
// underneath is an Error, and terminating the run deletes its Job.
func TestIntegrationJobMetric(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	runs := map[string]*v1alpha1.AnalysisRun{}
	for _, name := range []string{"pass", "fail", "gone", "stop"} {
		m := jobMetric("check")
		m.ConsecutiveErrorLimit = ptr.To[int32](0)
		runs[name] = &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{m}},
		}
		if err := env.Client.Create(ctx, runs[name]); err != nil {
			t.Fatal(err)
		}
	}
	jobs := map[string]*batchv1.Job{}
	for name, run := range runs {
		job := waitJob(t, client.ObjectKey{Namespace: ns, Name: name + "-check-1"}, true)
		jobs[name] = job
		if !metav1.IsControlledBy(job, run) || job.Labels[AnalysisRunLabel] != name || job.Labels[MetricLabel] != "check" || job.Labels["team"] != "shop" {
			t.Errorf("Job %s: owners %+v labels %v", job.Name, job.OwnerReferences, job.Labels)
		}
		got := waitRun(t, client.ObjectKeyFromObject(run), func(r *v1alpha1.AnalysisRun) bool {
			return len(r.Status.MetricResults) == 1 && inFlight(&r.Status.MetricResults[0]) != nil
		})
		if got.Status.Phase != v1alpha1.AnalysisPhaseRunning || got.Status.MetricResults[0].Measurements[0].Metadata[jobNameKey] != job.Name {
			t.Errorf("run %s while its Job runs: %s %+v", name, got.Status.Phase, got.Status.MetricResults[0])
		}
	}

	finishJob(t, jobs["pass"], true, "", "")
	got := waitRun(t, client.ObjectKeyFromObject(runs["pass"]), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if mr := got.Status.MetricResults[0]; got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Count != 1 || len(mr.Measurements) != 1 ||
		mr.Measurements[0].Phase != v1alpha1.AnalysisPhaseSuccessful || mr.Measurements[0].FinishedAt == nil {
		t.Errorf("pass: %s %+v", got.Status.Phase, mr)
	}

	finishJob(t, jobs["fail"], false, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	got = waitRun(t, client.ObjectKeyFromObject(runs["fail"]), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if got.Status.Phase != v1alpha1.AnalysisPhaseFailed || !strings.Contains(got.Status.Message, "Job fail-check-1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit") {
		t.Errorf("fail: %s %q", got.Status.Phase, got.Status.Message)
	}

	// A Job's default deletion orphans its Pods: the orphan finalizer, which
	// no garbage collector removes in envtest, keeps it, being deleted.
	if err := env.Client.Delete(ctx, jobs["gone"]); err != nil {
		t.Fatal(err)
	}
	got = waitRun(t, client.ObjectKeyFromObject(runs["gone"]), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	if got.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(got.Status.Message, "job gone-check-1 is being deleted before it finished") {
		t.Errorf("gone: %s %q", got.Status.Phase, got.Status.Message)
	}

	stop := runs["stop"]
	if err := env.Client.Patch(ctx, stop, client.RawPatch(client.Merge.Type(), []byte(`{"spec":{"terminate":true}}`))); err != nil {
		t.Fatal(err)
	}
	got = waitRun(t, client.ObjectKeyFromObject(stop), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	waitJob(t, client.ObjectKeyFromObject(jobs["stop"]), false)
	if mr := got.Status.MetricResults[0]; got.Status.Phase != v1alpha1.AnalysisPhaseSuccessful || inFlight(&mr) != nil ||
		!strings.HasPrefix(mr.Measurements[0].Message, "Aborted") {
		t.Errorf("stop: %s %+v", got.Status.Phase, mr)
	}
	// Finished Jobs are kept for their logs; they go with their run.
	waitJob(t, client.ObjectKeyFromObject(jobs["pass"]), true)
}

// TestIntegrationJobDeadlineAndServiceAccount: through the real API
// server, a job metric's Job gets the Job measurement timeout as its
// activeDeadlineSeconds and the default ServiceAccount, keeps a shorter
// deadline and a ServiceAccount that exists, and a ServiceAccount that
// does not exist ends the metric with an Error naming it, without a Job.
func TestIntegrationJobDeadlineAndServiceAccount(t *testing.T) {
	startReconciler(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "checker"}}); err != nil {
		t.Fatal(err)
	}
	specs := map[string]func(*batchv1.JobSpec){
		"plain": func(*batchv1.JobSpec) {},
		"own": func(s *batchv1.JobSpec) {
			s.ActiveDeadlineSeconds = ptr.To[int64](90)
			s.Template.Spec.ServiceAccountName = "checker"
		},
		"ghost": func(s *batchv1.JobSpec) { s.Template.Spec.ServiceAccountName = "ghost" },
	}
	runs := map[string]*v1alpha1.AnalysisRun{}
	for name, edit := range specs {
		m := jobMetric("check")
		m.ConsecutiveErrorLimit = ptr.To[int32](0)
		edit(&m.Provider.Job.Spec)
		runs[name] = &v1alpha1.AnalysisRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{m}},
		}
		if err := env.Client.Create(ctx, runs[name]); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]struct {
		deadline int64
		sa       string
	}{"plain": {v1alpha1.JobDeadlineSeconds, "default"}, "own": {90, "checker"}} {
		job := waitJob(t, client.ObjectKey{Namespace: ns, Name: name + "-check-1"}, true)
		if d := job.Spec.ActiveDeadlineSeconds; d == nil || *d != want.deadline || job.Spec.Template.Spec.ServiceAccountName != want.sa {
			t.Errorf("Job %s: activeDeadlineSeconds %v, serviceAccountName %q; want %d, %q",
				job.Name, ptr.Deref(d, -1), job.Spec.Template.Spec.ServiceAccountName, want.deadline, want.sa)
		}
	}
	got := waitRun(t, client.ObjectKeyFromObject(runs["ghost"]), func(r *v1alpha1.AnalysisRun) bool { return r.Status.Phase.Completed() })
	want := fmt.Sprintf(`ServiceAccount "ghost" named by the job's pod template does not exist in namespace %s`, ns)
	if got.Status.Phase != v1alpha1.AnalysisPhaseError || !strings.Contains(got.Status.Message, want) {
		t.Errorf("ghost: %s %q; want Error with %q", got.Status.Phase, got.Status.Message, want)
	}
	var jobs batchv1.JobList
	if err := env.Client.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{AnalysisRunLabel: "ghost"}); err != nil || len(jobs.Items) != 0 {
		t.Errorf("Jobs of the run with a missing ServiceAccount: %d (%v)", len(jobs.Items), err)
	}
}
