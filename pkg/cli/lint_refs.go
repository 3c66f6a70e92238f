package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubeseed/rollouts/pkg/analysis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
	"github.com/kubeseed/rollouts/pkg/traffic/gatewayapi"
	"github.com/kubeseed/rollouts/pkg/traffic/istio"
	"github.com/kubeseed/rollouts/pkg/traffic/nginx"
)

// The kinds of the objects manifests name, which lint looks up.
var (
	gkService                 = schema.GroupKind{Kind: "Service"}
	gkDeployment              = schema.GroupKind{Group: "apps", Kind: "Deployment"}
	gkIngress                 = schema.GroupKind{Group: "networking.k8s.io", Kind: "Ingress"}
	gkHTTPRoute               = schema.GroupKind{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}
	gkGRPCRoute               = schema.GroupKind{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute"}
	gkVirtualService          = schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}
	gkDestinationRule         = schema.GroupKind{Group: "networking.istio.io", Kind: "DestinationRule"}
	gkAnalysisTemplate        = v1alpha1.GroupVersion.WithKind("AnalysisTemplate").GroupKind()
	gkClusterAnalysisTemplate = v1alpha1.GroupVersion.WithKind("ClusterAnalysisTemplate").GroupKind()

	lintRefKinds = []schema.GroupKind{
		gkAnalysisTemplate, gkClusterAnalysisTemplate, gkService, gkDeployment, gkIngress,
		gkHTTPRoute, gkGRPCRoute, gkVirtualService, gkDestinationRule,
	}
)

// lintRouters are the controller's traffic routers; lint runs their
// Validate against the objects of the files.
var lintRouters = traffic.Registry{"gatewayAPI": gatewayapi.New, "istio": istio.New, "nginx": nginx.New}

// externalObjects are the objects --external says exist outside the files:
// every object of a kind, or some by name.
type externalObjects struct {
	all   map[schema.GroupKind]bool
	names map[schema.GroupKind]map[string]bool
}

func parseExternal(specs []string) (externalObjects, error) {
	e := externalObjects{all: map[schema.GroupKind]bool{}, names: map[schema.GroupKind]map[string]bool{}}
	for _, spec := range specs {
		kind, name, _ := strings.Cut(spec, "/")
		i := slices.IndexFunc(lintRefKinds, func(gk schema.GroupKind) bool { return strings.EqualFold(gk.Kind, kind) })
		if i < 0 {
			var kinds []string
			for _, gk := range lintRefKinds {
				kinds = append(kinds, gk.Kind)
			}
			return e, fmt.Errorf("--external %q: the kind must be one of %s", spec, strings.Join(kinds, ", "))
		}
		gk := lintRefKinds[i]
		if name == "" {
			e.all[gk] = true
			continue
		}
		if e.names[gk] == nil {
			e.names[gk] = map[string]bool{}
		}
		e.names[gk][name] = true
	}
	return e, nil
}

func (e externalObjects) has(gk schema.GroupKind, name string) bool {
	return e.all[gk] || e.names[gk][name]
}

// check runs every check on the objects read.
func (l *linter) check() {
	l.checkDuplicates()
	for _, o := range l.objects {
		l.validateCustom(o)
	}
	for _, o := range l.objects {
		switch t := o.typed.(type) {
		case *v1alpha1.Rollout:
			l.checkRollout(o, t)
		case *v1alpha1.Experiment:
			l.checkExperiment(o, t)
		case *v1alpha1.AnalysisTemplate:
			l.checkMetrics(o, t.Spec.Args, t.Spec.Metrics)
		case *v1alpha1.ClusterAnalysisTemplate:
			l.checkMetrics(o, t.Spec.Args, t.Spec.Metrics)
		case *v1alpha1.AnalysisRun:
			l.checkMetrics(o, t.Spec.Args, t.Spec.Metrics)
		}
	}
}

// checkDuplicates: applying two objects of one kind, namespace and name
// keeps only the last.
func (l *linter) checkDuplicates() {
	for i, o := range l.objects {
		for _, first := range l.objects[:i] {
			if o.name != "" && first.name == o.name && first.namespace == o.namespace && first.gvk.GroupKind() == o.gvk.GroupKind() {
				l.add(o, "metadata.name", fmt.Sprintf("%s %q is defined twice: the first definition is at %s:%d", o.gvk.Kind, o.name, first.file, first.line("metadata.name")))
				break
			}
		}
	}
}

func clusterScoped(gk schema.GroupKind) bool { return gk == gkClusterAnalysisTemplate }

// find returns the object of kind gk named name in namespace ns. An object
// without a namespace goes to whichever namespace kubectl applies to, so it
// matches any; an exact match wins.
func (l *linter) find(gk schema.GroupKind, ns, name string) *lintObject {
	var found *lintObject
	for _, o := range l.objects {
		if o.gvk.GroupKind() != gk || o.name != name {
			continue
		}
		if o.namespace == ns || clusterScoped(gk) {
			return o
		}
		if found == nil && (o.namespace == "" || ns == "") {
			found = o
		}
	}
	return found
}

// need returns the object the field at path of o names. A missing one is a
// problem unless --external names it; either way the result is nil.
func (l *linter) need(o *lintObject, path string, gk schema.GroupKind, name string) *lintObject {
	if name == "" {
		return nil
	}
	ns := o.namespace
	if clusterScoped(gk) {
		ns = ""
	}
	if t := l.find(gk, ns, name); t != nil {
		return t
	}
	if !l.external.has(gk, name) {
		where := ""
		if ns != "" {
			where = " in namespace " + ns
		}
		l.problem(o, path, "%s %q was not found%s in the files given (if it exists elsewhere, pass --external %s/%s)", gk.Kind, name, where, gk.Kind, name)
	}
	return nil
}

func (l *linter) checkRollout(o *lintObject, ro *v1alpha1.Rollout) {
	spec := &ro.Spec
	if ref := spec.WorkloadRef; ref != nil {
		l.need(o, "spec.workloadRef.name", gkDeployment, ref.Name)
	}
	if spec.Template != nil && spec.Selector != nil {
		l.checkSelector(o, "spec.selector", spec.Selector, spec.Template.Labels, "spec.template")
	}
	for _, e := range v1alpha1.ValidateEphemeralMetadata(spec) {
		l.add(o, e.Field, e.Error())
	}
	resolve := rolloutArgs(ro)
	if c := spec.Strategy.Canary; c != nil {
		l.need(o, "spec.strategy.canary.canaryService", gkService, c.CanaryService)
		l.need(o, "spec.strategy.canary.stableService", gkService, c.StableService)
		l.checkManagedRoutes(o, c)
		l.checkTraffic(o, ro)
		if a := c.Analysis; a != nil {
			l.checkAnalysis(o, "spec.strategy.canary.analysis", &a.RolloutAnalysis, resolve)
		}
		for i, s := range c.Steps {
			path := fmt.Sprintf("spec.strategy.canary.steps[%d]", i)
			if s.Analysis != nil {
				l.checkAnalysis(o, path+".analysis", s.Analysis, resolve)
			}
			if e := s.Experiment; e != nil {
				var names []string
				for _, t := range e.Templates {
					names = append(names, t.Name)
				}
				for j, a := range e.Analyses {
					l.checkExperimentAnalysis(o, fmt.Sprintf("%s.experiment.analyses[%d]", path, j), &a, names, resolve)
				}
			}
		}
	}
	if b := spec.Strategy.BlueGreen; b != nil {
		l.need(o, "spec.strategy.blueGreen.activeService", gkService, b.ActiveService)
		l.need(o, "spec.strategy.blueGreen.previewService", gkService, b.PreviewService)
		if b.PrePromotionAnalysis != nil {
			l.checkAnalysis(o, "spec.strategy.blueGreen.prePromotionAnalysis", b.PrePromotionAnalysis, resolve)
		}
		if b.PostPromotionAnalysis != nil {
			l.checkAnalysis(o, "spec.strategy.blueGreen.postPromotionAnalysis", b.PostPromotionAnalysis, resolve)
		}
	}
}

// rolloutArgs resolves a Rollout's valueFrom args as far as can be done
// offline: a pod template hash is not known yet, a fieldRef path is checked.
func rolloutArgs(ro *v1alpha1.Rollout) analysis.ArgResolver {
	return func(_ string, from *v1alpha1.ArgValueFrom) (string, error) {
		if from.FieldRef != nil {
			return analysis.FieldOf(ro, from.FieldRef.FieldPath)
		}
		return "0123456789", nil
	}
}

// checkSelector repeats what the controllers check of a selector and the
// template it must select (pkg/rollout and pkg/experiments do it inside
// their planners).
func (l *linter) checkSelector(o *lintObject, path string, sel *metav1.LabelSelector, podLabels map[string]string, template string) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	switch {
	case err != nil:
		l.problem(o, path, "%v", err)
	case s.Empty():
		l.problem(o, path, "must not be empty")
	case !s.Matches(labels.Set(podLabels)):
		l.problem(o, path, "%q does not match the labels of %s", s.String(), template)
	}
}

// checkManagedRoutes points at each header or mirror route step whose name
// managedRoutes lacks; the CRD's rule only says that one does.
func (l *linter) checkManagedRoutes(o *lintObject, c *v1alpha1.CanaryStrategy) {
	var managed []string
	if c.TrafficRouting != nil {
		for _, r := range c.TrafficRouting.ManagedRoutes {
			managed = append(managed, r.Name)
		}
	}
	for i, s := range c.Steps {
		var kind, name string
		switch {
		case s.SetHeaderRoute != nil:
			kind, name = "setHeaderRoute", s.SetHeaderRoute.Name
		case s.SetMirrorRoute != nil:
			kind, name = "setMirrorRoute", s.SetMirrorRoute.Name
		default:
			continue
		}
		if !slices.Contains(managed, name) {
			l.problem(o, fmt.Sprintf("spec.strategy.canary.steps[%d].%s.name", i, kind), "route %q is not listed in spec.strategy.canary.trafficRouting.managedRoutes", name)
		}
	}
}

// checkTraffic looks up the routing objects the Rollout names, then asks each
// router whose objects are all in the files to validate them, as the
// controller does before it shifts any traffic.
func (l *linter) checkTraffic(o *lintObject, ro *v1alpha1.Rollout) {
	if ro.Spec.Strategy.Canary.TrafficRouting == nil {
		return
	}
	ro = ro.DeepCopy()
	if ro.Namespace == "" {
		ro.Namespace = metav1.NamespaceDefault
	}
	objs, incomplete := l.routingObjects(o, ro)
	// The routers read through a client: one that holds just these objects.
	b := fake.NewClientBuilder().WithScheme(lintScheme)
	for _, obj := range objs {
		b = b.WithObjects(obj)
	}
	c := b.Build()
	routers, err := lintRouters.For(c, c, ro)
	if err != nil {
		l.problem(o, trafficRouting, "%v", err)
		return
	}
	for _, rt := range routers {
		if incomplete[rt.Name()] {
			continue
		}
		if err := rt.Validate(context.Background(), ro); err != nil {
			l.problem(o, trafficRouting+"."+rt.Name(), "%v", err)
		}
	}
}

const trafficRouting = "spec.strategy.canary.trafficRouting"

// routingObjects finds the objects each router of the Rollout reads, placed
// in its namespace, and which routers miss some.
func (l *linter) routingObjects(o *lintObject, ro *v1alpha1.Rollout) (map[*lintObject]client.Object, map[string]bool) {
	objs := map[*lintObject]client.Object{}
	incomplete := map[string]bool{}
	use := func(router, field string, gk schema.GroupKind, name string) {
		t := l.need(o, trafficRouting+"."+field, gk, name)
		if t == nil {
			incomplete[router] = true
			return
		}
		if _, done := objs[t]; done {
			return
		}
		obj, err := routingObject(t)
		if err != nil {
			l.problem(t, "", "cannot be read as a %s: %v", gk.Kind, err)
			incomplete[router] = true
			return
		}
		obj.SetNamespace(ro.Namespace)
		objs[t] = obj
	}
	tr := ro.Spec.Strategy.Canary.TrafficRouting
	if is := tr.Istio; is != nil {
		if vs := is.VirtualService; vs != nil {
			use("istio", "istio.virtualService.name", gkVirtualService, vs.Name)
		}
		for i, vs := range is.VirtualServices {
			use("istio", fmt.Sprintf("istio.virtualServices[%d].name", i), gkVirtualService, vs.Name)
		}
		if dr := is.DestinationRule; dr != nil {
			use("istio", "istio.destinationRule.name", gkDestinationRule, dr.Name)
		}
	}
	if g := tr.GatewayAPI; g != nil {
		for i, r := range g.HTTPRoutes {
			use("gatewayAPI", fmt.Sprintf("gatewayAPI.httpRoutes[%d].name", i), gkHTTPRoute, r.Name)
		}
		for i, r := range g.GRPCRoutes {
			use("gatewayAPI", fmt.Sprintf("gatewayAPI.grpcRoutes[%d].name", i), gkGRPCRoute, r.Name)
		}
	}
	if n := tr.Nginx; n != nil {
		if n.StableIngress != "" {
			use("nginx", "nginx.stableIngress", gkIngress, n.StableIngress)
		}
		for i, name := range n.StableIngresses {
			use("nginx", fmt.Sprintf("nginx.stableIngresses[%d]", i), gkIngress, name)
		}
	}
	return objs, incomplete
}

// routingObject decodes an object into the Go type the routers read, at
// whichever version of its group the scheme has (an Istio v1beta1
// VirtualService has the v1 shape).
func routingObject(o *lintObject) (client.Object, error) {
	for _, gv := range lintScheme.VersionsForGroupKind(o.gvk.GroupKind()) {
		gvk := gv.WithKind(o.gvk.Kind)
		if !lintScheme.Recognizes(gvk) {
			continue
		}
		obj, err := lintScheme.New(gvk)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(o.raw)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, obj); err != nil {
			return nil, err
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		if co, ok := obj.(client.Object); ok {
			return co, nil
		}
	}
	return nil, fmt.Errorf("the plugin does not know %s", o.gvk.GroupKind())
}

// templateUse is one analysis template a Rollout or Experiment references,
// with the field that names it.
type templateUse struct {
	path string
	ref  v1alpha1.AnalysisTemplateRef
}

// checkAnalysis checks an analysis of a Rollout: its templates exist and,
// when they are all in the files, compose into a run with every arg given a
// value (the controller's own composition, analysis.BuildRunSpec).
func (l *linter) checkAnalysis(o *lintObject, path string, a *v1alpha1.RolloutAnalysis, resolve analysis.ArgResolver) {
	uses := make([]templateUse, 0, len(a.Templates))
	for i, ref := range a.Templates {
		uses = append(uses, templateUse{fmt.Sprintf("%s.templates[%d].templateName", path, i), ref})
	}
	l.composeRun(o, path, uses, a.Args, resolve)
}

func (l *linter) composeRun(o *lintObject, path string, uses []templateUse, args []v1alpha1.AnalysisArg, resolve analysis.ArgResolver) {
	templates := map[string]*v1alpha1.AnalysisTemplateSpec{}
	refs := make([]v1alpha1.AnalysisTemplateRef, 0, len(uses))
	complete := true
	for _, u := range uses {
		gk := gkAnalysisTemplate
		if u.ref.ClusterScope {
			gk = gkClusterAnalysisTemplate
		}
		refs = append(refs, u.ref)
		switch t := l.need(o, u.path, gk, u.ref.TemplateName); {
		case t == nil:
			complete = false
		case templateSpec(t) == nil:
			complete = false // its own problems are reported
		default:
			templates[analysis.TemplateKey(u.ref)] = templateSpec(t)
		}
	}
	if !complete {
		return
	}
	specs, err := analysis.TemplateSpecs(refs, templates)
	if err == nil {
		_, err = analysis.BuildRunSpec(specs, args, resolve)
	}
	if err != nil && !boundError(err) {
		l.problem(o, path, "%v", err)
	}
}

// boundError reports whether err is a bound that BuildRunSpec found broken
// (v1alpha1.ValidateRunBounds): the CRD schema reports it already, where
// the template says it.
func boundError(err error) bool {
	var fe *field.Error
	return errors.As(err, &fe)
}

func templateSpec(t *lintObject) *v1alpha1.AnalysisTemplateSpec {
	switch t := t.typed.(type) {
	case *v1alpha1.AnalysisTemplate:
		return &t.Spec
	case *v1alpha1.ClusterAnalysisTemplate:
		return &t.Spec
	}
	return nil
}

// experimentTemplateRef matches {{templates.<name>.podTemplateHash}} and
// {{templates.<name>.serviceName}} in the args of an experiment's analysis
// (the experiments controller substitutes them; its pattern is private).
var experimentTemplateRef = regexp.MustCompile(`\{\{\s*templates\.([A-Za-z0-9_.-]+?)\.(podTemplateHash|serviceName)\s*\}\}`)

func (l *linter) checkExperimentAnalysis(o *lintObject, path string, a *v1alpha1.ExperimentAnalysis, templates []string, resolve analysis.ArgResolver) {
	for i, arg := range a.Args {
		if arg.Value == nil {
			continue
		}
		for _, m := range experimentTemplateRef.FindAllStringSubmatch(*arg.Value, -1) {
			if !slices.Contains(templates, m[1]) {
				l.problem(o, fmt.Sprintf("%s.args[%d].value", path, i), "refers to template %q, which the experiment does not have", m[1])
			}
		}
	}
	ref := v1alpha1.AnalysisTemplateRef{TemplateName: a.TemplateName, ClusterScope: a.ClusterScope}
	l.composeRun(o, path, []templateUse{{path + ".templateName", ref}}, a.Args, resolve)
}

func (l *linter) checkExperiment(o *lintObject, ex *v1alpha1.Experiment) {
	names := make([]string, 0, len(ex.Spec.Templates))
	for i, t := range ex.Spec.Templates {
		names = append(names, t.Name)
		l.checkSelector(o, fmt.Sprintf("spec.templates[%d].selector", i), t.Selector, t.Template.Labels, fmt.Sprintf("spec.templates[%d].template", i))
	}
	resolve := func(_ string, from *v1alpha1.ArgValueFrom) (string, error) {
		if from.FieldRef != nil {
			return analysis.FieldOf(ex, from.FieldRef.FieldPath)
		}
		return "", fmt.Errorf("only value and valueFrom.fieldRef (or secretKeyRef) args are supported in experiments")
	}
	for i, a := range ex.Spec.Analyses {
		l.checkExperimentAnalysis(o, fmt.Sprintf("spec.analyses[%d]", i), &a, names, resolve)
	}
}

// checkMetrics checks what the analysis controller would only find out
// while measuring: every {{args.x}} a metric uses is declared, and its
// conditions compile. Which args a referrer must give is checked at the
// referrer: here each arg gets a stand-in value.
func (l *linter) checkMetrics(o *lintObject, args []v1alpha1.AnalysisArg, metrics []v1alpha1.Metric) {
	standIn := "0"
	filled := make([]v1alpha1.AnalysisArg, 0, len(args))
	for _, a := range args {
		if a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil {
			a = v1alpha1.AnalysisArg{Name: a.Name, Value: &standIn}
		}
		filled = append(filled, a)
	}
	for i, m := range metrics {
		path := fmt.Sprintf("spec.metrics[%d]", i)
		one := []v1alpha1.AnalysisTemplateSpec{{Args: filled, Metrics: []v1alpha1.Metric{m}}}
		if _, err := analysis.BuildRunSpec(one, nil, nil); err != nil && !boundError(err) {
			l.problem(o, path, "%v", err)
		}
		for _, c := range []struct{ field, success, failure string }{
			{"successCondition", m.SuccessCondition, ""},
			{"failureCondition", "", m.FailureCondition},
		} {
			if src := c.success + c.failure; src == "" || strings.Contains(src, "{{") {
				continue // placeholders are filled in per run
			}
			if _, err := analysis.CompileConditions(c.success, c.failure); err != nil {
				// CEL shows the position on extra lines; the first says it all.
				msg, _, _ := strings.Cut(err.Error(), "\n")
				l.problem(o, path+"."+c.field, "%s", msg)
			}
		}
	}
}
