package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// family is a Rollout and everything it owns, as get shows it.
type family struct {
	rollout     *v1alpha1.Rollout
	replicaSets []*appsv1.ReplicaSet
	pods        []*corev1.Pod
	runs        []*v1alpha1.AnalysisRun
	experiments []*v1alpha1.Experiment
}

// gather reads a Rollout and its children.
func (s *session) gather(ctx context.Context, name string) (*family, error) {
	ro, err := s.rollout(ctx, name)
	if err != nil {
		return nil, err
	}
	f := &family{rollout: ro}
	in := client.InNamespace(ro.Namespace)
	var rss appsv1.ReplicaSetList
	if err := s.client.List(ctx, &rss, in); err != nil {
		return nil, fmt.Errorf("listing replicasets: %w", err)
	}
	var exps v1alpha1.ExperimentList
	if err := s.client.List(ctx, &exps, in, client.MatchingLabels{v1alpha1.RolloutLabel: ro.Name}); err != nil {
		return nil, fmt.Errorf("listing experiments: %w", err)
	}
	owners := map[metav1.Object]bool{}
	for i := range exps.Items {
		if ownedBy(&exps.Items[i], ro) {
			f.experiments = append(f.experiments, &exps.Items[i])
			owners[&exps.Items[i]] = true
		}
	}
	for i := range rss.Items {
		if ownedBy(&rss.Items[i], ro) {
			f.replicaSets = append(f.replicaSets, &rss.Items[i])
		}
	}
	var runs v1alpha1.AnalysisRunList
	if err := s.client.List(ctx, &runs, in); err != nil {
		return nil, fmt.Errorf("listing analysisruns: %w", err)
	}
	for i := range runs.Items {
		run := &runs.Items[i]
		if ownedBy(run, ro) || slices.ContainsFunc(f.experiments, func(ex *v1alpha1.Experiment) bool { return ownedBy(run, ex) }) {
			f.runs = append(f.runs, run)
		}
	}
	var pods corev1.PodList
	if err := s.client.List(ctx, &pods, in, client.HasLabels{v1alpha1.PodTemplateHashLabel}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	for i := range pods.Items {
		f.pods = append(f.pods, &pods.Items[i])
	}
	return f, nil
}

func ownedBy(obj, owner metav1.Object) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == owner.GetUID()
}

// style draws status icons and colours on a terminal, and plain words
// elsewhere (or with NO_COLOR).
type style struct{ fancy bool }

var icons = map[string]struct{ icon, color string }{
	"Healthy": {"✔", "32"}, "Successful": {"✔", "32"}, "Running": {"◌", "34"}, "Progressing": {"◌", "33"},
	"Paused": {"॥", "33"}, "Pending": {"◌", "33"}, "Degraded": {"✖", "31"}, "Failed": {"✖", "31"},
	"Error": {"⚠", "31"}, "Inconclusive": {"?", "33"}, "ScaledDown": {"•", "90"}, "Terminating": {"◌", "90"},
	"Succeeded": {"✔", "32"},
}

func (s style) status(word string) string {
	if !s.fancy {
		return word
	}
	i, ok := icons[word]
	if !ok {
		return word
	}
	return fmt.Sprintf("\033[%sm%s %s\033[0m", i.color, i.icon, word)
}

// render writes the header and tree of a Rollout. age formats an object's
// age (tests fix it).
func render(w io.Writer, f *family, st style, age func(metav1.Time) string) error {
	ro := f.rollout
	var b strings.Builder
	header(&b, f, st)
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAME\tKIND\tSTATUS\tAGE\tINFO")
	_, _ = fmt.Fprintf(tw, "%s\tRollout\t%s\t%s\t\n", ro.Name, st.status(phaseOf(ro)), age(ro.CreationTimestamp))
	revs := revisionsOf(f)
	for i, rev := range revs {
		last := i == len(revs)-1
		branch, indent := "├──", "│  "
		if last {
			branch, indent = "└──", "   "
		}
		_, _ = fmt.Fprintf(tw, "%s revision:%d\t\t\t\t\n", branch, rev.number)
		writeRevision(tw, f, rev, indent, st, age)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, b.String())
}

func header(b *strings.Builder, f *family, st style) {
	ro := f.rollout
	line := func(k, v string) { fmt.Fprintf(b, "%-15s %s\n", k+":", v) }
	line("Name", ro.Name)
	line("Namespace", ro.Namespace)
	line("Status", st.status(phaseOf(ro)))
	if ro.Status.Message != "" {
		line("Message", ro.Status.Message)
	}
	line("Strategy", strategyOf(ro))
	if c := ro.Spec.Strategy.Canary; c != nil {
		line("  Step", stepOf(ro))
		line("  SetWeight", setWeightOf(ro))
		line("  ActualWeight", actualWeightOf(ro))
	}
	images := imagesOf(f)
	for i, img := range images {
		k := ""
		if i == 0 {
			k = "Images"
		}
		if k != "" {
			line(k, img)
		} else {
			fmt.Fprintf(b, "%-15s %s\n", "", img)
		}
	}
	line("Replicas", "")
	line("  Desired", strconv.Itoa(int(ptr.Deref(ro.Spec.Replicas, 1))))
	line("  Current", strconv.Itoa(int(ro.Status.Replicas)))
	line("  Updated", strconv.Itoa(int(ro.Status.UpdatedReplicas)))
	line("  Ready", strconv.Itoa(int(ro.Status.ReadyReplicas)))
	line("  Available", strconv.Itoa(int(ro.Status.AvailableReplicas)))
}

// role names what a revision is to the Rollout.
func role(ro *v1alpha1.Rollout, hash string) []string {
	var out []string
	st := ro.Status
	if hash == st.StableRS {
		out = append(out, "stable")
	}
	if bg := ro.Spec.Strategy.BlueGreen; bg != nil {
		if hash == st.BlueGreen.ActiveSelector {
			out = append(out, "active")
		}
		if hash == st.BlueGreen.PreviewSelector && hash != st.StableRS {
			out = append(out, "preview")
		}
	} else if hash == st.CurrentPodHash && hash != st.StableRS {
		out = append(out, "canary")
	}
	return out
}

// imagesOf lists each running revision's images with its role.
func imagesOf(f *family) []string {
	var out []string
	for _, rs := range f.replicaSets {
		r := role(f.rollout, rs.Labels[v1alpha1.PodTemplateHashLabel])
		if len(r) == 0 || ptr.Deref(rs.Spec.Replicas, 0) == 0 && rs.Status.Replicas == 0 {
			continue
		}
		for _, c := range rs.Spec.Template.Spec.Containers {
			out = append(out, fmt.Sprintf("%s (%s)", c.Image, strings.Join(r, ", ")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type revGroup struct {
	number      int64
	hash        string
	replicaSets []*appsv1.ReplicaSet
}

// revisionsOf groups the ReplicaSets by revision, newest first.
func revisionsOf(f *family) []revGroup {
	var out []revGroup
	for _, rs := range f.replicaSets {
		out = append(out, revGroup{number: revision(rs), hash: rs.Labels[v1alpha1.PodTemplateHashLabel], replicaSets: []*appsv1.ReplicaSet{rs}})
	}
	slices.SortFunc(out, func(a, b revGroup) int { return cmp.Compare(b.number, a.number) })
	return out
}

// node is one line of the tree under a revision.
type node struct {
	name, kind, status, info string
	created                  metav1.Time
	children                 []node
}

func writeRevision(w io.Writer, f *family, rev revGroup, indent string, st style, age func(metav1.Time) string) {
	var nodes []node
	for _, rs := range rev.replicaSets {
		nodes = append(nodes, replicaSetNode(f, rs, st))
	}
	for _, ex := range f.experiments {
		if ex.Labels[v1alpha1.PodTemplateHashLabel] == rev.hash {
			nodes = append(nodes, experimentNode(f, ex, st))
		}
	}
	for _, run := range f.runs {
		if run.Labels[v1alpha1.PodTemplateHashLabel] == rev.hash && ownedBy(run, f.rollout) {
			nodes = append(nodes, runNode(run, st))
		}
	}
	writeNodes(w, nodes, indent, age)
}

func writeNodes(w io.Writer, nodes []node, indent string, age func(metav1.Time) string) {
	for i, n := range nodes {
		branch, next := "├──", "│  "
		if i == len(nodes)-1 {
			branch, next = "└──", "   "
		}
		_, _ = fmt.Fprintf(w, "%s%s %s\t%s\t%s\t%s\t%s\n", indent, branch, n.name, n.kind, n.status, age(n.created), n.info)
		writeNodes(w, n.children, indent+next, age)
	}
}

func replicaSetNode(f *family, rs *appsv1.ReplicaSet, st style) node {
	spec := ptr.Deref(rs.Spec.Replicas, 0)
	status := "Progressing"
	switch {
	case spec == 0 && rs.Status.Replicas == 0:
		status = "ScaledDown"
	case rs.Status.AvailableReplicas >= spec && rs.Status.Replicas == spec:
		status = "Healthy"
	}
	var info string
	if f.rollout != nil {
		info = strings.Join(role(f.rollout, rs.Labels[v1alpha1.PodTemplateHashLabel]), ",")
	}
	if d := rs.Annotations[v1alpha1.ScaleDownDeadlineAnnotation]; d != "" {
		info = strings.TrimPrefix(info+",delay:"+d, ",")
	}
	n := node{name: rs.Name, kind: "ReplicaSet", status: st.status(status), info: info, created: rs.CreationTimestamp}
	for _, pod := range podsOf(f, rs) {
		n.children = append(n.children, podNode(pod, st))
	}
	return n
}

func podsOf(f *family, rs *appsv1.ReplicaSet) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range f.pods {
		if ownedBy(p, rs) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func podNode(p *corev1.Pod, st style) node {
	status := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		status = "Terminating"
	}
	var ready, restarts int
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
		restarts += int(cs.RestartCount)
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			status = w.Reason
		}
	}
	info := fmt.Sprintf("ready:%d/%d", ready, len(p.Spec.Containers))
	if restarts > 0 {
		info += fmt.Sprintf(",restarts:%d", restarts)
	}
	return node{name: p.Name, kind: "Pod", status: st.status(status), info: info, created: p.CreationTimestamp}
}

func runNode(run *v1alpha1.AnalysisRun, st style) node {
	phase := string(run.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	var parts []string
	for _, mr := range run.Status.MetricResults {
		part := fmt.Sprintf("%s %s", mr.Name, mr.Phase)
		if n := len(mr.Measurements); n > 0 && mr.Measurements[n-1].Value != "" {
			part += "=" + shorten(mr.Measurements[n-1].Value, 40)
		}
		parts = append(parts, part)
	}
	info := strings.Join(parts, "; ")
	if k := run.Labels[v1alpha1.AnalysisKindLabel]; k != "" {
		info = strings.TrimSuffix(k+" "+info, " ")
	}
	return node{name: run.Name, kind: "AnalysisRun", status: st.status(phase), info: info, created: run.CreationTimestamp}
}

func experimentNode(f *family, ex *v1alpha1.Experiment, st style) node {
	phase := string(ex.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	n := node{name: ex.Name, kind: "Experiment", status: st.status(phase), created: ex.CreationTimestamp}
	for _, ts := range ex.Status.TemplateStatuses {
		n.children = append(n.children, node{
			name: ex.Name + "-" + ts.Name, kind: "ReplicaSet", status: st.status(templateWord(ts.Status)),
			info: fmt.Sprintf("template:%s,available:%d", ts.Name, ts.AvailableReplicas), created: ex.CreationTimestamp,
		})
	}
	for _, run := range f.runs {
		if ownedBy(run, ex) {
			r := runNode(run, st)
			r.info = strings.TrimSpace(run.Labels[v1alpha1.ExperimentAnalysisLabel] + " " + r.info)
			n.children = append(n.children, r)
		}
	}
	return n
}

func templateWord(s v1alpha1.TemplateStatusCode) string {
	if s == v1alpha1.TemplateStatusRunning {
		return "Healthy"
	}
	if s == "" {
		return "Progressing"
	}
	return string(s)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// humanAge is kubectl's age format.
func humanAge(now time.Time) func(metav1.Time) string {
	return func(t metav1.Time) string {
		if t.IsZero() {
			return "-"
		}
		return duration.HumanDuration(now.Sub(t.Time))
	}
}

// gatherExperiment reads an Experiment with its ReplicaSets, pods and runs.
func (s *session) gatherExperiment(ctx context.Context, name string) (*v1alpha1.Experiment, *family, error) {
	var ex v1alpha1.Experiment
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &ex); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("experiment %q not found in namespace %q", name, s.namespace)
		}
		return nil, nil, fmt.Errorf("getting experiment %s: %w", name, err)
	}
	f := &family{}
	in := client.InNamespace(ex.Namespace)
	var rss appsv1.ReplicaSetList
	if err := s.client.List(ctx, &rss, in, client.MatchingLabels{v1alpha1.ExperimentLabel: ex.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing replicasets: %w", err)
	}
	for i := range rss.Items {
		if ownedBy(&rss.Items[i], &ex) {
			f.replicaSets = append(f.replicaSets, &rss.Items[i])
		}
	}
	var runs v1alpha1.AnalysisRunList
	if err := s.client.List(ctx, &runs, in, client.MatchingLabels{v1alpha1.ExperimentLabel: ex.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing analysisruns: %w", err)
	}
	for i := range runs.Items {
		if ownedBy(&runs.Items[i], &ex) {
			f.runs = append(f.runs, &runs.Items[i])
		}
	}
	var pods corev1.PodList
	if err := s.client.List(ctx, &pods, in, client.MatchingLabels{v1alpha1.ExperimentLabel: ex.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing pods: %w", err)
	}
	for i := range pods.Items {
		f.pods = append(f.pods, &pods.Items[i])
	}
	return &ex, f, nil
}

// renderExperiment writes an Experiment's header and tree: each template's
// ReplicaSet with its pods, then the AnalysisRuns.
func renderExperiment(w io.Writer, ex *v1alpha1.Experiment, f *family, st style, age func(metav1.Time) string) error {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-15s %s\n", k+":", v) }
	phase := string(ex.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	line("Name", ex.Name)
	line("Namespace", ex.Namespace)
	line("Status", st.status(phase))
	if ex.Status.Message != "" {
		line("Message", ex.Status.Message)
	}
	if ex.Spec.Duration != "" {
		line("Duration", string(ex.Spec.Duration))
	}
	if at := ex.Status.AvailableAt; at != nil {
		line("Available", at.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAME\tKIND\tSTATUS\tAGE\tINFO")
	_, _ = fmt.Fprintf(tw, "%s\tExperiment\t%s\t%s\t\n", ex.Name, st.status(phase), age(ex.CreationTimestamp))
	var nodes []node
	for _, ts := range ex.Status.TemplateStatuses {
		n := node{name: ts.Name, kind: "Template", status: st.status(templateWord(ts.Status)), created: ex.CreationTimestamp,
			info: fmt.Sprintf("hash:%s,available:%d", ts.PodTemplateHash, ts.AvailableReplicas)}
		if ts.ServiceName != "" {
			n.info += ",service:" + ts.ServiceName
		}
		for _, rs := range f.replicaSets {
			if rs.Labels[v1alpha1.ExperimentTemplateLabel] == ts.Name {
				rn := replicaSetNode(f, rs, st)
				n.children = append(n.children, rn)
			}
		}
		nodes = append(nodes, n)
	}
	for _, run := range f.runs {
		r := runNode(run, st)
		r.info = strings.TrimSpace(run.Labels[v1alpha1.ExperimentAnalysisLabel] + " " + r.info)
		nodes = append(nodes, r)
	}
	writeNodes(tw, nodes, "", age)
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, b.String())
}

// writeTrimmed writes text without trailing spaces on its lines.
func writeTrimmed(w io.Writer, text string) error {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}
