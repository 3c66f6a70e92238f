package analysis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestJobName(t *testing.T) {
	long := strings.Repeat("a", 70)
	rows := []struct {
		run, metric string
		n           int32
		want        string
	}{
		{"smoke", "health", 1, "smoke-health-1"},
		{"smoke", "health", 12, "smoke-health-12"},
		// Characters a DNS label lacks change, and the name keeps a hash of
		// the original so that "a.b" and "a-b" stay apart.
		{"web.v2", "Error_Rate", 1, "web-v2-error-rate-"},
		{long, "health", 3, "aaaa"},
	}
	seen := map[string]bool{}
	for _, r := range rows {
		got := jobName(r.run, r.metric, r.n)
		if !strings.HasPrefix(got, r.want) || len(content.IsDNS1123Label(got)) > 0 {
			t.Errorf("jobName(%q, %q, %d) = %q: want a DNS label starting %q", r.run, r.metric, r.n, got, r.want)
		}
		if !strings.HasSuffix(got, fmt.Sprintf("-%d", r.n)) {
			t.Errorf("jobName(%q, %q, %d) = %q lost the measurement number", r.run, r.metric, r.n, got)
		}
		if seen[got] {
			t.Errorf("jobName %q given twice", got)
		}
		seen[got] = true
	}
	if a, b := jobName("a.b", "m", 1), jobName("a-b", "m", 1); a == b {
		t.Errorf("a.b and a-b share the Job name %q", a)
	}
	if a, b := jobName(long+"x", "m", 1), jobName(long+"y", "m", 1); a == b || len(a) > 63 {
		t.Errorf("long names %q and %q: want distinct names of at most 63 characters", a, b)
	}
	for _, v := range []string{"rate", "Error_Rate.v2", long, "///", "-x-"} {
		if got := labelValue(v); len(content.IsLabelValue(got)) > 0 {
			t.Errorf("labelValue(%q) = %q is not a label value", v, got)
		}
	}
	if got := labelValue("Error_Rate.v2"); got != "Error_Rate.v2" {
		t.Errorf("a valid label value changed to %q", got)
	}
}

func jobMetric(name string) v1alpha1.Metric {
	return v1alpha1.Metric{Name: name, Provider: v1alpha1.MetricProvider{Job: &v1alpha1.JobMetric{
		Metadata: v1alpha1.PodMetadata{Labels: map[string]string{"team": "shop"}, Annotations: map[string]string{"note": "smoke"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "check", Image: "busybox", Command: []string{"true"}}},
		}}},
	}}}
}

func TestJobProvider(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop", UID: "run-uid"}}
	run.Status.MetricResults = []v1alpha1.MetricResult{{Name: "check", Count: 1, Error: 1}}
	m := jobMetric("check")
	c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).Build()
	j := &Job{Client: c, Now: func() time.Time { return now }}

	meas := j.Measure(ctx, run, &m)
	if meas.Err != nil || meas.Phase != v1alpha1.AnalysisPhaseRunning || meas.Metadata[jobNameKey] != "smoke-check-3" {
		t.Fatalf("Measure: %+v", meas)
	}
	var job batchv1.Job
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "smoke-check-3"}, &job); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(&job, run) {
		t.Errorf("the Job's owners %+v: want the run as controller", job.OwnerReferences)
	}
	wantLabels := map[string]string{"team": "shop", AnalysisRunLabel: "smoke", MetricLabel: "check"}
	if diff := cmp.Diff(wantLabels, job.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if job.Annotations["note"] != "smoke" || job.Spec.Template.Spec.Containers[0].Image != "busybox" {
		t.Errorf("the metric's Job metadata and spec were not carried: %+v", job)
	}
	if m.Provider.Job.Metadata.Labels[AnalysisRunLabel] != "" {
		t.Error("Measure changed the metric's labels")
	}

	in := &v1alpha1.Measurement{Phase: v1alpha1.AnalysisPhaseRunning, StartedAt: &metav1.MicroTime{Time: now}, Metadata: meas.Metadata}
	setConditions := func(conds ...batchv1.JobCondition) {
		t.Helper()
		job.Status.Conditions = conds
		if err := c.Status().Update(ctx, &job); err != nil {
			t.Fatal(err)
		}
	}
	rows := []struct {
		name  string
		conds []batchv1.JobCondition
		phase v1alpha1.AnalysisPhase
		msg   string
	}{
		{"running", nil, v1alpha1.AnalysisPhaseRunning, "Job smoke-check-3 is running"},
		{"criteria met, not yet complete", []batchv1.JobCondition{{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue}}, v1alpha1.AnalysisPhaseRunning, "is running"},
		{"complete", []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}, v1alpha1.AnalysisPhaseSuccessful, "Job smoke-check-3 completed"},
		{"failed", []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}, v1alpha1.AnalysisPhaseFailed, "Job smoke-check-3 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"},
		{"failed false", []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionFalse}}, v1alpha1.AnalysisPhaseRunning, "is running"},
	}
	for _, r := range rows {
		setConditions(r.conds...)
		got := j.Resume(ctx, run, &m, in)
		if got.Err != nil || got.Phase != r.phase || !strings.Contains(got.Message, r.msg) {
			t.Errorf("%s: %s %q %v; want %s %q", r.name, got.Phase, got.Message, got.Err, r.phase, r.msg)
		}
		if finished := !got.Finished.IsZero(); finished != (r.phase != v1alpha1.AnalysisPhaseRunning) || !got.Started.Equal(now) {
			t.Errorf("%s: started %s finished %s", r.name, got.Started, got.Finished)
		}
	}

	// Measuring again before the status recorded the Job (a stale cache)
	// finds the same Job rather than creating another.
	if again := j.Measure(ctx, run, &m); again.Err != nil || again.Phase != v1alpha1.AnalysisPhaseRunning || again.Metadata[jobNameKey] != "smoke-check-3" {
		t.Errorf("measuring again: %+v", again)
	}
	other := run.DeepCopy()
	other.UID = "another-run"
	if got := j.Resume(ctx, other, &m, in); got.Err == nil || !strings.Contains(got.Err.Error(), "not controlled by this AnalysisRun") {
		t.Errorf("a Job of another run: %v", got.Err)
	}

	if err := j.Abort(ctx, run, in); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(&job), &job); !apierrors.IsNotFound(err) {
		t.Errorf("the Job is still there after Abort: %v", err)
	}
	if err := j.Abort(ctx, run, in); err != nil {
		t.Errorf("aborting again: %v", err)
	}
	if got := j.Resume(ctx, run, &m, in); got.Err == nil || !strings.Contains(got.Err.Error(), "job smoke-check-3 was deleted before it finished") || got.Finished.IsZero() {
		t.Errorf("a vanished Job: %+v", got)
	}
}

// TestJobFoundPastTheCache: a Job created a moment ago may be missing from
// the cache; the API server has the last word before it counts as gone.
func TestJobFoundPastTheCache(t *testing.T) {
	ctx := context.Background()
	run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "shop", UID: "run-uid"}}
	m := jobMetric("check")
	job := newJob(run, &m, 1)
	api := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(job).Build()
	cache := fake.NewClientBuilder().WithScheme(apis.NewScheme()).Build()
	j := &Job{Client: cache, APIReader: api, Now: time.Now}
	in := &v1alpha1.Measurement{Phase: v1alpha1.AnalysisPhaseRunning, Metadata: map[string]string{jobNameKey: job.Name}}
	if got := j.Resume(ctx, run, &m, in); got.Err != nil || got.Phase != v1alpha1.AnalysisPhaseRunning {
		t.Errorf("a Job only the API server has: %s %v", got.Phase, got.Err)
	}
}

// TestJobDeadlineAndServiceAccount: a Job runs at most the Job measurement
// timeout unless its spec sets less, and as the namespace's default
// ServiceAccount unless its template names one that exists; a missing one
// is an Error naming it, and no Job is created.
func TestJobDeadlineAndServiceAccount(t *testing.T) {
	ctx := context.Background()
	checker := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checker"}}
	elsewhere := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "ghost"}}
	rows := []struct {
		name     string
		edit     func(*batchv1.JobSpec)
		deadline int64
		sa, err  string
	}{
		{"defaults", func(*batchv1.JobSpec) {}, v1alpha1.JobDeadlineSeconds, "default", ""},
		{"a shorter deadline", func(s *batchv1.JobSpec) { s.ActiveDeadlineSeconds = ptr.To[int64](120) }, 120, "default", ""},
		{"a ServiceAccount that exists", func(s *batchv1.JobSpec) { s.Template.Spec.ServiceAccountName = "checker" }, v1alpha1.JobDeadlineSeconds, "checker", ""},
		{"the deprecated field", func(s *batchv1.JobSpec) { s.Template.Spec.DeprecatedServiceAccount = "checker" }, v1alpha1.JobDeadlineSeconds, "", ""},
		{"a missing ServiceAccount", func(s *batchv1.JobSpec) { s.Template.Spec.ServiceAccountName = "ghost" }, 0, "",
			`ServiceAccount "ghost" named by the job's pod template does not exist in namespace shop`},
	}
	for i, r := range rows {
		run := &v1alpha1.AnalysisRun{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("run-%d", i), Namespace: "shop", UID: "run-uid"}}
		m := jobMetric("smoke")
		r.edit(&m.Provider.Job.Spec)
		c := fake.NewClientBuilder().WithScheme(apis.NewScheme()).WithObjects(checker.DeepCopy(), elsewhere.DeepCopy()).Build()
		j := &Job{Client: c, APIReader: c, Now: time.Now}
		meas := j.Measure(ctx, run, &m)
		var jobs batchv1.JobList
		if err := c.List(ctx, &jobs, client.InNamespace("shop")); err != nil {
			t.Fatal(err)
		}
		if r.err != "" {
			if meas.Err == nil || meas.Err.Error() != r.err || len(jobs.Items) != 0 {
				t.Errorf("%s: %v, %d Jobs; want the error %q and no Job", r.name, meas.Err, len(jobs.Items), r.err)
			}
			continue
		}
		if meas.Err != nil || len(jobs.Items) != 1 {
			t.Fatalf("%s: %v, %d Jobs", r.name, meas.Err, len(jobs.Items))
		}
		pod := jobs.Items[0].Spec.Template.Spec
		if d := jobs.Items[0].Spec.ActiveDeadlineSeconds; d == nil || *d != r.deadline || pod.ServiceAccountName != r.sa {
			t.Errorf("%s: activeDeadlineSeconds %v, serviceAccountName %q; want %d, %q", r.name, ptr.Deref(d, -1), pod.ServiceAccountName, r.deadline, r.sa)
		}
	}
}
