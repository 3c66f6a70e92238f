package analysis

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// Labels of the Jobs the job provider creates.
const (
	// AnalysisRunLabel names the AnalysisRun a Job measures for.
	AnalysisRunLabel = "rollouts.kubeseed.io/analysis-run"
	// MetricLabel names the metric a Job measures.
	MetricLabel = "rollouts.kubeseed.io/metric"
)

// jobNameKey is the measurement metadata that names its Job.
const jobNameKey = "jobName"

// maxJobName keeps Job names DNS labels: the Job controller copies them into
// its Pods' labels.
const maxJobName = content.DNS1123LabelMaxLength

// Job measures a metric by running a batch/v1 Job, one per measurement, in
// the run's namespace and owned by the run. The measurement is in flight
// until the Job finishes: Complete is Successful, Failed is Failed (a Job
// past its activeDeadlineSeconds fails too); the metric's conditions do not
// apply. The Job runs at most v1alpha1.JobDeadlineSeconds, the default of
// its activeDeadlineSeconds, and its Pods run as the namespace's default
// ServiceAccount unless the template names another that exists there.
type Job struct {
	// Client creates and deletes Jobs and reads them from the cache the
	// reconciler's watch of Jobs fills.
	Client client.Client
	// APIReader confirms, past the cache, that a Job is gone: a Job created
	// a moment ago may not be in the cache yet.
	APIReader client.Reader
	Now       func() time.Time
}

var _ Resumer = (*Job)(nil)

// Measure creates the Job of the metric's next measurement and returns the
// measurement in flight.
func (j *Job) Measure(ctx context.Context, run *v1alpha1.AnalysisRun, m *v1alpha1.Metric) Measured {
	job := newJob(run, m, taken(run.Status, m.Name)+1)
	started := metav1.NewMicroTime(j.Now())
	in := &v1alpha1.Measurement{Phase: v1alpha1.AnalysisPhaseRunning, StartedAt: &started, Metadata: map[string]string{jobNameKey: job.Name}}
	if err := j.checkServiceAccount(ctx, m.Provider.Job, run.Namespace); err != nil {
		return Measured{Err: err, Started: started.Time, Finished: j.Now()}
	}
	err := j.Client.Create(ctx, job)
	switch {
	case apierrors.IsAlreadyExists(err):
		// An earlier reconcile created it but its status was not recorded
		// (a failed patch, a stale cache): the name is deterministic, so
		// this is the same measurement.
		return j.Resume(ctx, run, m, in)
	case err != nil:
		return Measured{Err: fmt.Errorf("creating Job %s: %w", job.Name, err), Started: started.Time, Finished: j.Now(), Metadata: in.Metadata}
	}
	return Measured{Phase: v1alpha1.AnalysisPhaseRunning, Message: fmt.Sprintf("Job %s is running", job.Name), Started: started.Time, Metadata: in.Metadata}
}

// Resume reads the Job of a measurement in flight: still running, finished,
// or gone or going before it finished (an Error).
func (j *Job) Resume(ctx context.Context, run *v1alpha1.AnalysisRun, _ *v1alpha1.Metric, in *v1alpha1.Measurement) Measured {
	name := in.Metadata[jobNameKey]
	meas := Measured{Metadata: maps.Clone(in.Metadata)}
	if in.StartedAt != nil {
		meas.Started = in.StartedAt.Time
	}
	if name == "" {
		meas.Err, meas.Finished = errors.New("the measurement in flight names no Job"), j.Now()
		return meas
	}
	job, err := j.get(ctx, client.ObjectKey{Namespace: run.Namespace, Name: name})
	switch {
	case apierrors.IsNotFound(err):
		meas.Err = fmt.Errorf("job %s was deleted before it finished", name)
	case err != nil:
		meas.Err = fmt.Errorf("reading Job %s: %w", name, err)
	case !metav1.IsControlledBy(job, run):
		meas.Err = fmt.Errorf("job %s exists but is not controlled by this AnalysisRun", name)
	default:
		meas.Phase, meas.Message = jobOutcome(job)
		if meas.Phase == v1alpha1.AnalysisPhaseRunning && job.DeletionTimestamp != nil {
			meas.Phase, meas.Err = "", fmt.Errorf("job %s is being deleted before it finished", name)
		}
	}
	if meas.Phase != v1alpha1.AnalysisPhaseRunning {
		meas.Finished = j.Now()
	}
	return meas
}

// Abort deletes the Job of a measurement in flight, and its Pods.
func (j *Job) Abort(ctx context.Context, run *v1alpha1.AnalysisRun, in *v1alpha1.Measurement) error {
	name := in.Metadata[jobNameKey]
	if name == "" {
		return nil
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: run.Namespace, Name: name}}
	if err := j.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting Job %s: %w", name, err)
	}
	return nil
}

// checkServiceAccount makes sure that a ServiceAccount the Job's pod
// template names exists in the namespace: otherwise the Job could never
// start a Pod, and would wait out its deadline saying nothing. It asks the
// API server: ServiceAccounts are not watched.
func (j *Job) checkServiceAccount(ctx context.Context, spec *v1alpha1.JobMetric, namespace string) error {
	name := templateServiceAccount(&spec.Spec.Template.Spec)
	if name == "" {
		return nil
	}
	reader := j.APIReader
	if reader == nil {
		reader = j.Client
	}
	err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &corev1.ServiceAccount{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("ServiceAccount %q named by the job's pod template does not exist in namespace %s", name, namespace)
	case err != nil:
		return fmt.Errorf("reading ServiceAccount %q named by the job's pod template: %w", name, err)
	}
	return nil
}

// templateServiceAccount is the ServiceAccount a pod template names, in
// serviceAccountName or the deprecated serviceAccount, or "".
func templateServiceAccount(pod *corev1.PodSpec) string {
	if pod.ServiceAccountName != "" {
		return pod.ServiceAccountName
	}
	return pod.DeprecatedServiceAccount //nolint:staticcheck // still honoured by the API server
}

// get reads a Job from the cache and, when the cache has none, from the API
// server.
func (j *Job) get(ctx context.Context, key client.ObjectKey) (*batchv1.Job, error) {
	var job batchv1.Job
	err := j.Client.Get(ctx, key, &job)
	if apierrors.IsNotFound(err) && j.APIReader != nil {
		err = j.APIReader.Get(ctx, key, &job)
	}
	return &job, err
}

// jobOutcome reads a Job's terminal conditions.
func jobOutcome(job *batchv1.Job) (v1alpha1.AnalysisPhase, string) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return v1alpha1.AnalysisPhaseSuccessful, fmt.Sprintf("Job %s completed", job.Name)
		case batchv1.JobFailed:
			msg := fmt.Sprintf("Job %s failed", job.Name)
			for _, s := range []string{c.Reason, c.Message} {
				if s != "" {
					msg += ": " + s
				}
			}
			return v1alpha1.AnalysisPhaseFailed, msg
		}
	}
	return v1alpha1.AnalysisPhaseRunning, fmt.Sprintf("Job %s is running", job.Name)
}

// newJob is the Job of measurement n of a metric: the metric's Job spec and
// metadata, labels naming the run and metric, and the run as controller;
// activeDeadlineSeconds defaults to the Job measurement timeout and the
// Pods run as the namespace's default ServiceAccount unless the template
// names one.
func newJob(run *v1alpha1.AnalysisRun, m *v1alpha1.Metric, n int32) *batchv1.Job {
	spec := m.Provider.Job
	jobSpec := spec.Spec.DeepCopy()
	if jobSpec.ActiveDeadlineSeconds == nil {
		jobSpec.ActiveDeadlineSeconds = ptr.To[int64](v1alpha1.JobDeadlineSeconds)
	}
	if pod := &jobSpec.Template.Spec; templateServiceAccount(pod) == "" {
		pod.ServiceAccountName = "default"
	}
	labels := maps.Clone(spec.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[AnalysisRunLabel] = labelValue(run.Name)
	labels[MetricLabel] = labelValue(m.Name)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            jobName(run.Name, m.Name, n),
			Namespace:       run.Namespace,
			Labels:          labels,
			Annotations:     maps.Clone(spec.Metadata.Annotations),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.GroupVersion.WithKind("AnalysisRun"))},
		},
		Spec: *jobSpec,
	}
}

// taken counts a metric's recorded measurements (verdicts and errors), so
// that each measurement gets a Job of its own.
func taken(st v1alpha1.AnalysisRunStatus, metric string) int32 {
	for _, mr := range st.MetricResults {
		if mr.Name == metric {
			return mr.Count + mr.Error
		}
	}
	return 0
}

// jobName is <run>-<metric>-<n> as a DNS label of at most 63 characters.
func jobName(run, metric string, n int32) string {
	suffix := fmt.Sprintf("-%d", n)
	return shortName(run+"-"+metric, maxJobName-len(suffix)) + suffix
}

// labelValue is s when it is a valid label value, else shortName(s).
func labelValue(s string) string {
	if len(content.IsLabelValue(s)) == 0 {
		return s
	}
	return shortName(s, content.LabelValueMaxLength)
}

// shortName is s when it is a DNS label of at most limit characters. Any
// other s is made one: lowercase letters, digits and '-', cut to a prefix
// followed by a hash of s, so that distinct inputs stay distinct names.
func shortName(s string, limit int) string {
	if len(s) <= limit && len(content.IsDNS1123Label(s)) == 0 {
		return s
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	hash := fmt.Sprintf("%08x", h.Sum32())
	prefix := strings.Trim(name[:min(len(name), limit-len(hash)-1)], "-")
	if prefix == "" {
		return hash
	}
	return prefix + "-" + hash
}
