package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

const record = v1alpha1.EphemeralMetadataAnnotation

func strs(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// changes reads a merge patch: "k=v" sets, "-k" removes.
func changes(kv ...string) map[string]*string {
	m := map[string]*string{}
	for _, s := range kv {
		if k, ok := strings.CutPrefix(s, "-"); ok {
			m[k] = nil
		} else if k, v, ok := strings.Cut(s, "="); ok {
			m[k] = ptr.To(v)
		}
	}
	return m
}

func TestMetadataPatch(t *testing.T) {
	canary := &v1alpha1.PodMetadata{Labels: strs("role", "canary", "track", "canary"), Annotations: strs("note", "new")}
	stable := &v1alpha1.PodMetadata{Labels: strs("role", "stable")}
	const recCanary = `{"labels":{"role":"canary","track":"canary"},"annotations":{"note":"new"}}`
	const recStable = `{"labels":{"role":"stable"}}`
	rows := []struct {
		name                string
		labels, annotations map[string]string
		want                *v1alpha1.PodMetadata
		l, a                map[string]*string
	}{
		{"no metadata wanted, none carried", strs("app", "web"), nil, nil, nil, nil},
		{"empty metadata wanted", strs("app", "web"), nil, &v1alpha1.PodMetadata{}, nil, nil},
		{"first time", strs("app", "web"), nil, canary,
			changes("role=canary", "track=canary"), changes("note=new", record+"="+recCanary)},
		{"in sync", strs("app", "web", "role", "canary", "track", "canary"), strs("note", "new", record, recCanary), canary, nil, nil},
		{"promotion: shared key replaced, keys of the other role removed",
			strs("app", "web", "role", "canary", "track", "canary"), strs("note", "new", "other", "x", record, recCanary), stable,
			changes("role=stable", "-track"), changes("-note", record+"="+recStable)},
		{"the template's own key wins",
			strs("app", "web", "role", "web"), nil, stable, nil, nil},
		{"a recorded key someone changed is put back",
			strs("app", "web", "role", "tampered"), strs(record, recStable), stable, changes("role=stable"), nil},
		{"metadata no longer wanted: recorded keys and the record go",
			strs("app", "web", "role", "stable"), strs(record, recStable), nil, changes("-role"), changes("-" + record)},
		{"a recorded key already gone is not removed again",
			strs("app", "web"), strs(record, recStable), &v1alpha1.PodMetadata{Annotations: strs("note", "x")},
			nil, changes("note=x", record+`={"annotations":{"note":"x"}}`)},
		{"an unreadable record counts as none",
			strs("app", "web"), strs(record, "{"), stable, changes("role=stable"), changes(record + "=" + recStable)},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			l, a := metadataPatch(row.labels, row.annotations, row.want)
			if diff := cmp.Diff(row.l, l); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(row.a, a); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			// Applying the patch leaves nothing to do.
			if l2, a2 := metadataPatch(patched(row.labels, l), patched(row.annotations, a), row.want); l2 != nil || a2 != nil {
				t.Errorf("not settled after the patch: labels %v annotations %v", l2, a2)
			}
		})
	}
}

func TestPatched(t *testing.T) {
	orig := strs("a", "1", "b", "2")
	got := patched(orig, changes("a=x", "-b", "c=3"))
	if diff := cmp.Diff(strs("a", "x", "c", "3"), got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(strs("a", "1", "b", "2"), orig); diff != "" {
		t.Errorf("the original changed (-want +got):\n%s", diff)
	}
	if got := patched(nil, changes("a=1")); !maps.Equal(got, strs("a", "1")) {
		t.Errorf("patching nil: %v", got)
	}
}

func TestUsesEphemeralMetadata(t *testing.T) {
	withRecord := func(replicas, existing int32) *appsv1.ReplicaSet {
		rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(replicas)}}
		rs.Spec.Template.Annotations = strs(record, `{"labels":{"role":"stable"}}`)
		rs.Status.Replicas = existing
		return rs
	}
	plain := canaryRollout(2, "1", "0")
	meta := canaryRollout(2, "1", "0")
	meta.Spec.Strategy.Canary.StableMetadata = &v1alpha1.PodMetadata{}
	bg := blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PreviewMetadata: &v1alpha1.PodMetadata{Labels: strs("role", "preview")}})
	rows := []struct {
		name string
		ro   *v1alpha1.Rollout
		rss  []*appsv1.ReplicaSet
		want bool
	}{
		{"no metadata anywhere", plain, []*appsv1.ReplicaSet{{}}, false},
		{"canary metadata in the spec", meta, nil, true},
		{"blue-green metadata in the spec", bg, nil, true},
		{"removed from the spec, still on a ReplicaSet with pods", plain, []*appsv1.ReplicaSet{withRecord(2, 2)}, true},
		{"removed from the spec, on a ReplicaSet scaling up", plain, []*appsv1.ReplicaSet{withRecord(2, 0)}, true},
		{"removed from the spec, only on a scaled-down ReplicaSet", plain, []*appsv1.ReplicaSet{withRecord(0, 0)}, false},
	}
	for _, row := range rows {
		if got := usesEphemeralMetadata(row.ro, row.rss); got != row.want {
			t.Errorf("%s: %v, want %v", row.name, got, row.want)
		}
	}
}

// TestRevisionTemplateWithoutEphemeralMetadata: a ReplicaSet template that
// carries ephemeral metadata is still recognised as its revision's (undo, a
// template put back), and experiments copy it without that metadata.
func TestRevisionTemplateWithoutEphemeralMetadata(t *testing.T) {
	ro := canaryRollout(2, "1", "0")
	ro.Spec.Template.Labels["tier"] = "front"
	hash, err := templateHash(ro.Spec.Template, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := newReplicaSet(ro, hash, "", 2, 1)
	tmpl := &rs.Spec.Template.ObjectMeta
	l, a := metadataPatch(tmpl.Labels, tmpl.Annotations, &v1alpha1.PodMetadata{Labels: strs("role", "stable", "tier", "x"), Annotations: strs("note", "n")})
	tmpl.Labels, tmpl.Annotations = patched(tmpl.Labels, l), patched(tmpl.Annotations, a)
	if tmpl.Labels["role"] != "stable" || tmpl.Labels["tier"] != "front" || tmpl.Annotations["note"] != "n" {
		t.Fatalf("metadata not applied as expected: %v %v", tmpl.Labels, tmpl.Annotations)
	}
	got := RevisionTemplate(&rs.Spec.Template)
	if !equality.Semantic.DeepEqual(got, ro.Spec.Template) {
		t.Errorf("RevisionTemplate keeps the ephemeral metadata: %s", cmp.Diff(ro.Spec.Template, got))
	}
	if h, ok := revisionOf([]rsView{viewOf(rs, ro)}, ro.Spec.Template); !ok || h != hash {
		t.Errorf("revisionOf = %q, %v; want %q", h, ok, hash)
	}
}

// relabel applies the plan's metadata changes to the simulated ReplicaSets
// and pods. A change that names nothing, or touches the hash label or a
// selector key, is a failure: relabelling must never move a pod out of its
// ReplicaSet or Service.
func (s *sim) relabel(changes []MetadataChange) {
	s.t.Helper()
	for _, c := range changes {
		for k := range c.Labels {
			if _, sel := s.ro.Spec.Selector.MatchLabels[k]; sel || k == v1alpha1.PodTemplateHashLabel {
				s.t.Fatalf("%s changes the label %s", c, k)
			}
		}
		switch c.Target {
		case TargetReplicaSet:
			rs := s.rss[c.Name]
			if rs == nil {
				s.t.Fatalf("%s: no such ReplicaSet", c)
			}
			m := &rs.Spec.Template.ObjectMeta
			m.Labels, m.Annotations = patched(m.Labels, c.Labels), patched(m.Annotations, c.Annotations)
		case TargetPod:
			pod := s.pod(c.Name)
			if pod == nil {
				s.t.Fatalf("%s: no such pod", c)
			}
			pod.Labels, pod.Annotations = patched(pod.Labels, c.Labels), patched(pod.Annotations, c.Annotations)
		default:
			s.t.Fatalf("unknown target %q", c.Target)
		}
	}
}

func (s *sim) pod(name string) *corev1.Pod {
	for _, pods := range s.pods {
		for _, p := range pods {
			if p.Name == name {
				return p
			}
		}
	}
	return nil
}

// podsOfImage returns the pods of the ReplicaSet running image.
func (s *sim) podsOfImage(image string) []*corev1.Pod {
	for _, rs := range s.rss {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			return s.pods[rs.Name]
		}
	}
	return nil
}

func (s *sim) rsOfImage(image string) *appsv1.ReplicaSet {
	for _, rs := range s.rss {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			return rs
		}
	}
	s.t.Fatalf("no ReplicaSet runs %s", image)
	return nil
}

// twin drives two simulated worlds through the same user actions: one
// Rollout with ephemeral metadata and the same Rollout without. Metadata
// may change nothing but metadata, so after every tick the two plans must
// be equal once the metadata is left out: the same ReplicaSets (same
// hashes) created, scaled and deleted, the same Services, traffic and
// status, and no pod evicted or recreated.
type twin struct {
	t             *testing.T
	with, without *sim
}

func newTwin(t *testing.T, ro *v1alpha1.Rollout, setMetadata func(*v1alpha1.Rollout)) *twin {
	plain := ro.DeepCopy()
	setMetadata(ro)
	return &twin{t: t, with: newSim(t, ro), without: newSim(t, plain)}
}

func (tw *twin) tick() Plan {
	tw.t.Helper()
	p, q := tw.with.tick(), tw.without.tick()
	if len(q.Relabel) > 0 {
		tw.t.Fatalf("a Rollout without ephemeral metadata relabels: %v", q.Relabel)
	}
	if len(p.Evict) > 0 {
		tw.t.Fatalf("pods evicted without restartAt: %v", p.Evict)
	}
	if diff := cmp.Diff(withoutMetadata(q), withoutMetadata(p)); diff != "" {
		tw.t.Fatalf("ephemeral metadata changed the plan (-without +with):\n%s\nstory:\n%s", diff, tw.with.story.String())
	}
	for _, c := range p.Relabel {
		fmt.Fprintf(&tw.with.story, "        relabel %s\n", c)
	}
	tw.with.checkMetadata()
	return p
}

// withoutMetadata is the plan with its metadata changes left out.
func withoutMetadata(p Plan) Plan {
	p.Relabel = nil
	if p.Create != nil {
		p.Create = p.Create.DeepCopy()
		withoutEphemeral(&p.Create.Spec.Template)
	}
	return p
}

func (tw *twin) until(what string, limit int, cond func(st v1alpha1.RolloutStatus) bool) {
	tw.t.Helper()
	for range limit {
		tw.tick()
		if cond(tw.with.ro.Status) {
			return
		}
	}
	tw.t.Fatalf("not %s after %d ticks; story so far:\n%s", what, limit, tw.with.story.String())
}

func (tw *twin) setImage(image string) { tw.with.setImage(image); tw.without.setImage(image) }

func (tw *twin) request(annotation, token string) {
	tw.with.request(annotation, token)
	tw.without.request(annotation, token)
}

// expectPods checks the labels and annotations of every pod, and of the
// pod template, of image's ReplicaSet: the template's own, the pod-template
// hash, and exactly the metadata of the role.
func (s *sim) expectPods(image string, want *v1alpha1.PodMetadata) {
	s.t.Helper()
	rs := s.rsOfImage(image)
	hash := rs.Labels[v1alpha1.PodTemplateHashLabel]
	wantLabels := strs("app", "web", v1alpha1.PodTemplateHashLabel, hash)
	maps.Copy(wantLabels, want.Labels)
	wantAnnotations := maps.Clone(want.Annotations)
	if r := encodeRecord(*want); r != "" {
		if wantAnnotations == nil {
			wantAnnotations = map[string]string{}
		}
		wantAnnotations[record] = r
	}
	objects := []metav1.ObjectMeta{rs.Spec.Template.ObjectMeta}
	for _, pod := range s.podsOfImage(image) {
		objects = append(objects, pod.ObjectMeta)
	}
	for _, m := range objects {
		name := m.Name
		if name == "" {
			name = "template of " + rs.Name
		}
		if diff := cmp.Diff(wantLabels, m.Labels, cmpopts.EquateEmpty()); diff != "" {
			s.t.Errorf("%s labels (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(wantAnnotations, m.Annotations, cmpopts.EquateEmpty()); diff != "" {
			s.t.Errorf("%s annotations (-want +got):\n%s", name, diff)
		}
	}
	if len(objects) == 1 {
		s.t.Errorf("%s has no pods to check", image)
	}
}

// checkMetadata: once a plan is applied, the template and every live pod of
// the revisions with a role carry exactly that role's metadata (the sim's
// templates have no key of their own that the metadata uses).
func (s *sim) checkMetadata() {
	s.t.Helper()
	st := s.ro.Status
	want := map[string]*v1alpha1.PodMetadata{}
	if c := s.ro.Spec.Strategy.Canary; c != nil {
		want[st.CurrentPodHash], want[st.StableRS] = c.CanaryMetadata, c.StableMetadata
	} else {
		bg := s.ro.Spec.Strategy.BlueGreen
		want[st.CurrentPodHash], want[st.BlueGreen.ActiveSelector] = bg.PreviewMetadata, bg.ActiveMetadata
	}
	for _, rs := range s.sorted() {
		m, ok := want[rs.Labels[v1alpha1.PodTemplateHashLabel]]
		if !ok {
			continue
		}
		if m == nil {
			m = &v1alpha1.PodMetadata{}
		}
		objects := []metav1.ObjectMeta{rs.Spec.Template.ObjectMeta}
		for _, pod := range s.pods[rs.Name] {
			objects = append(objects, pod.ObjectMeta)
		}
		for _, o := range objects {
			ok := o.Annotations[record] == encodeRecord(*m)
			for k, v := range m.Labels {
				ok = ok && o.Labels[k] == v
			}
			for k, v := range m.Annotations {
				ok = ok && o.Annotations[k] == v
			}
			if !ok {
				s.t.Fatalf("%s: %s of %s carries %v %v, want %v; story:\n%s", s.now.Sub(s.start), o.Name, rs.Name, o.Labels, o.Annotations, *m, s.story.String())
			}
		}
	}
}

func podNames(pods []*corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

var (
	canaryMeta  = &v1alpha1.PodMetadata{Labels: strs("role", "canary", "track", "canary"), Annotations: strs("example.com/note", "under test")}
	stableMeta  = &v1alpha1.PodMetadata{Labels: strs("role", "stable")}
	previewMeta = &v1alpha1.PodMetadata{Labels: strs("role", "preview"), Annotations: strs("example.com/note", "preview")}
	activeMeta  = &v1alpha1.PodMetadata{Labels: strs("role", "active")}
)

// TestSequenceEphemeralMetadataCanary: canary pods carry canaryMetadata and
// stable pods stableMetadata through an update; at promotion the promoted
// pods get stableMetadata in place (same pods, the canary-only keys gone);
// the next update's canary starts with canaryMetadata; after an abort the
// canary pods keep it until they are gone.
func TestSequenceEphemeralMetadataCanary(t *testing.T) {
	tw := newTwin(t, canaryRollout(4, "1", "0", setWeight(50), pause("")), func(ro *v1alpha1.Rollout) {
		ro.Spec.Strategy.Canary.CanaryMetadata, ro.Spec.Strategy.Canary.StableMetadata = canaryMeta, stableMeta
	})
	s := tw.with
	p := tw.tick()
	if p.Create == nil || p.Create.Spec.Template.Labels["role"] != "stable" {
		t.Fatalf("the first ReplicaSet is created without stableMetadata: %+v", p.Create)
	}
	tw.until("Healthy", 10, healthyPhase)
	s.expectPods("web:1", stableMeta)

	tw.setImage("web:2")
	p = tw.tick()
	if p.Create == nil || p.Create.Spec.Template.Labels["role"] != "canary" || p.Create.Labels["role"] != "" {
		t.Fatalf("the canary ReplicaSet is not created with canaryMetadata in its template (only): %+v", p.Create)
	}
	tw.until("paused at the pause step", 20, pausedAt(1))
	s.expectPods("web:1", stableMeta)
	s.expectPods("web:2", canaryMeta)
	before := podNames(s.podsOfImage("web:2"))

	tw.request(v1alpha1.PromoteAnnotation, "p1")
	tw.until("promoted", 20, func(st v1alpha1.RolloutStatus) bool { return st.StableRS == st.CurrentPodHash })
	tw.until("Healthy", 20, healthyPhase)
	s.expectPods("web:2", stableMeta)
	after := podNames(s.podsOfImage("web:2"))
	if missing := slices.DeleteFunc(slices.Clone(before), func(n string) bool { return slices.Contains(after, n) }); len(missing) > 0 {
		t.Errorf("canary pods %v were replaced at promotion, not relabelled (before %v, after %v)", missing, before, after)
	}

	tw.setImage("web:3")
	tw.until("paused at the pause step", 20, pausedAt(1))
	s.expectPods("web:2", stableMeta)
	s.expectPods("web:3", canaryMeta)
	tw.request(v1alpha1.AbortAnnotation, "a1")
	for range 10 {
		tw.tick()
		if len(s.podsOfImage("web:3")) == 0 {
			break
		}
		s.expectPods("web:3", canaryMeta)
	}
	if !s.ro.Status.Abort || len(s.podsOfImage("web:3")) > 0 {
		t.Fatalf("not aborted with the canary gone; story:\n%s", s.story.String())
	}
	tw.until("stable settled", 10, func(v1alpha1.RolloutStatus) bool { return s.stableSettled() })
	s.expectPods("web:2", stableMeta)
	s.golden()
}

// TestSequenceEphemeralMetadataBlueGreen: the preview pods carry
// previewMetadata until the active Service switches to them, then
// activeMetadata in place; the previous revision keeps activeMetadata until
// it is scaled down.
func TestSequenceEphemeralMetadataBlueGreen(t *testing.T) {
	tw := newTwin(t, blueGreenRollout(3, v1alpha1.BlueGreenStrategy{AutoPromotionEnabled: ptr.To(false)}), func(ro *v1alpha1.Rollout) {
		ro.Spec.Strategy.BlueGreen.ActiveMetadata, ro.Spec.Strategy.BlueGreen.PreviewMetadata = activeMeta, previewMeta
	})
	s := tw.with
	tw.until("Healthy", 10, healthyPhase)
	s.expectPods("web:1", activeMeta)
	tw.setImage("web:2")
	tw.until("paused with the preview ready", 20, pausedPhase)
	s.expectPods("web:1", activeMeta)
	s.expectPods("web:2", previewMeta)
	before := podNames(s.podsOfImage("web:2"))
	tw.request(v1alpha1.PromoteAnnotation, "go")
	tw.tick()
	if got := s.activeAndPreview(); got != [2]string{"web:2", "web:2"} {
		t.Fatalf("after promotion active/preview select %v", got)
	}
	s.expectPods("web:2", activeMeta)
	s.expectPods("web:1", activeMeta)
	if after := podNames(s.podsOfImage("web:2")); !slices.Equal(before, after) {
		t.Errorf("preview pods changed at the switch: before %v, after %v", before, after)
	}
	tw.until("previous revision scaled down", 10, func(v1alpha1.RolloutStatus) bool { return s.sizes()["web:1"] == 0 })

	// An aborted preview keeps previewMetadata.
	tw.setImage("web:3")
	tw.until("paused with the preview ready", 20, pausedPhase)
	tw.request(v1alpha1.AbortAnnotation, "stop")
	tw.tick()
	s.expectPods("web:3", previewMeta)
	s.expectPods("web:2", activeMeta)
	s.golden()
}

// TestEphemeralMetadataPostPromotion: during a post-promotion analysis the
// new pods take the traffic, so they are the active ones; when it fails the
// active Service switches back and they are the preview again.
func TestEphemeralMetadataPostPromotion(t *testing.T) {
	ro := blueGreenRollout(2, v1alpha1.BlueGreenStrategy{PostPromotionAnalysis: analysisOf("smoke"), ActiveMetadata: activeMeta, PreviewMetadata: previewMeta})
	s := newSim(t, ro).withTemplate("smoke")
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("post-promotion run started", 10, func(st v1alpha1.RolloutStatus) bool { return st.BlueGreen.PostPromotionAnalysisRun != nil })
	if s.ro.Status.StableRS == s.ro.Status.CurrentPodHash {
		t.Fatal("web:2 already stable while its post-promotion analysis runs")
	}
	s.expectPods("web:2", activeMeta)
	s.finishRun(runOfPostPromotion, v1alpha1.AnalysisPhaseFailed)
	s.tick()
	if got := s.activeAndPreview(); got != [2]string{"web:1", "web:1"} {
		t.Fatalf("after a failing post-promotion analysis active/preview select %v", got)
	}
	s.expectPods("web:2", previewMeta)
	s.expectPods("web:1", activeMeta)
}

// TestSequenceEphemeralMetadataChanges: metadata edited during an update
// reaches running pods in place; metadata removed from the spec is taken
// off the templates and pods, after which pods are no longer relabelled.
func TestSequenceEphemeralMetadataChanges(t *testing.T) {
	ro := canaryRollout(2, "1", "0", setWeight(50), pause(""))
	ro.Spec.Strategy.Canary.CanaryMetadata, ro.Spec.Strategy.Canary.StableMetadata = canaryMeta, stableMeta
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("paused", 20, pausedAt(1))

	s.ro.Spec.Paused = true
	s.ro.Spec.Strategy.Canary.CanaryMetadata = &v1alpha1.PodMetadata{Labels: strs("role", "candidate")}
	s.ro.Generation++
	s.say("user: pause, canaryMetadata role=candidate")
	if p := s.tick(); len(p.Relabel) > 0 {
		t.Fatalf("relabelling while spec.paused: %v", p.Relabel)
	}
	s.ro.Spec.Paused = false
	s.say("user: resume")
	p := s.tick()
	if p.Create != nil || len(p.Scale) > 0 || len(p.Relabel) != 2 {
		// The ReplicaSet template and its one pod.
		t.Fatalf("editing canaryMetadata: create %v, scale %v, relabel %v; want only the 2 relabels", p.Create, p.Scale, p.Relabel)
	}
	s.expectPods("web:2", &v1alpha1.PodMetadata{Labels: strs("role", "candidate")})
	s.expectPods("web:1", stableMeta)

	s.ro.Spec.Strategy.Canary.CanaryMetadata, s.ro.Spec.Strategy.Canary.StableMetadata = nil, nil
	s.ro.Generation++
	s.say("user: no ephemeral metadata")
	s.tick()
	s.expectPods("web:2", &v1alpha1.PodMetadata{})
	s.expectPods("web:1", &v1alpha1.PodMetadata{})
	for _, rs := range s.sorted() {
		if usesEphemeralMetadata(s.ro, []*appsv1.ReplicaSet{rs}) {
			t.Errorf("%s still carries ephemeral metadata", rs.Name)
		}
	}
	if p := s.tick(); len(p.Relabel) > 0 {
		t.Errorf("relabelling once the metadata is gone: %v", p.Relabel)
	}
}

// TestPlanMetadataPods: only live pods of a revision with a role are
// relabelled; a terminating pod and a pod of an old revision are left alone.
func TestPlanMetadataPods(t *testing.T) {
	ro := canaryRollout(2, "1", "0", setWeight(50))
	ro.Spec.Strategy.Canary.StableMetadata = stableMeta
	hash, err := templateHash(ro.Spec.Template, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := newReplicaSet(ro, hash, "", 2, 1)
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	ro.Status = v1alpha1.RolloutStatus{StableRS: hash, CurrentPodHash: hash}
	pod := func(name, hash string, terminating bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: strs("app", "web", v1alpha1.PodTemplateHashLabel, hash)}}
		if terminating {
			p.DeletionTimestamp = ptr.To(metav1.Now())
		}
		return p
	}
	services := map[string]*corev1.Service{}
	for _, ref := range serviceRefs(ro) {
		services[ref.name] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ref.name}}
	}
	p, err := plan(Input{
		Rollout: ro, ReplicaSets: []*appsv1.ReplicaSet{rs}, Services: services, Now: metav1.Now().Time,
		Pods: []*corev1.Pod{pod("web-b", hash, false), pod("web-a", hash, true), pod("web-old", "0ld", false)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.Relabel {
		got = append(got, c.String())
	}
	want := []string{"replicaset " + rs.Name + " stable: role=stable", "pod web-b stable: role=stable"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relabel (-want +got):\n%s", diff)
	}
}

// TestEphemeralMetadataInvalidSpec: metadata the controller must refuse
// stops the plan before it changes anything.
func TestEphemeralMetadataInvalidSpec(t *testing.T) {
	rows := []struct {
		name string
		meta *v1alpha1.PodMetadata
		want string
	}{
		{"selector key", &v1alpha1.PodMetadata{Labels: strs("app", "other")}, `spec.strategy.canary.canaryMetadata.labels[app]: Forbidden: is a key of the Rollout's selector`},
		{"hash label", &v1alpha1.PodMetadata{Labels: strs(v1alpha1.PodTemplateHashLabel, "x")}, "Forbidden: is the controller's own label"},
		{"bad label value", &v1alpha1.PodMetadata{Labels: strs("role", "not a value")}, `spec.strategy.canary.canaryMetadata.labels: Invalid value: "not a value"`},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			ro := canaryRollout(2, "1", "0", setWeight(50))
			ro.Spec.Strategy.Canary.CanaryMetadata = row.meta
			p, err := plan(Input{Rollout: ro, Now: metav1.Now().Time})
			if err != nil {
				t.Fatal(err)
			}
			if p.Create != nil || len(p.Relabel) > 0 || p.Status.Phase != v1alpha1.RolloutPhaseDegraded {
				t.Fatalf("create %v, relabel %v, phase %s; want nothing done and Degraded", p.Create, p.Relabel, p.Status.Phase)
			}
			if len(p.Events) != 1 || p.Events[0].Reason != v1alpha1.ReasonInvalidSpec || !strings.Contains(p.Events[0].Message, row.want) {
				t.Errorf("events %+v, want InvalidSpec containing %q", p.Events, row.want)
			}
		})
	}
}

// TestExperimentCopiesStableWithoutEphemeralMetadata: a baseline copied
// from the stable ReplicaSet does not pose as the stable in queries.
func TestExperimentCopiesStableWithoutEphemeralMetadata(t *testing.T) {
	ro := canaryRollout(4, "25%", "0", setWeight(25), experimentStepOf(), pause(""))
	ro.Spec.Strategy.Canary.CanaryMetadata, ro.Spec.Strategy.Canary.StableMetadata = canaryMeta, stableMeta
	s := newSim(t, ro)
	s.until("Healthy", 10, healthyPhase)
	s.setImage("web:2")
	s.until("experiment started", 10, func(st v1alpha1.RolloutStatus) bool { return st.Canary.CurrentExperiment != nil })
	ex := s.experiments[s.ro.Status.Canary.CurrentExperiment.Name]
	for _, tmpl := range ex.Spec.Templates {
		if _, ok := tmpl.Template.Labels["role"]; ok {
			t.Errorf("experiment template %s carries role=%s", tmpl.Name, tmpl.Template.Labels["role"])
		}
		if _, ok := tmpl.Template.Annotations[record]; ok {
			t.Errorf("experiment template %s carries the ephemeral metadata record", tmpl.Name)
		}
	}
}
