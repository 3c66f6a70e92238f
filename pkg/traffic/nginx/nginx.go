// Package nginx routes a Rollout's traffic through the NGINX Ingress
// controller's canary annotations: for each stable Ingress it keeps a canary
// Ingress, <rollout>-<ingress>-canary, cloned from the stable one with the
// stable Service replaced by the canary Service and owned by the Rollout.
package nginx

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/internal/jsonpatch"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/traffic"
)

// Router is the NGINX router.
type Router struct {
	client client.Client
	live   client.Reader
}

// New returns an NGINX router.
func New(c client.Client, live client.Reader) traffic.Router { return &Router{client: c, live: live} }

// Name implements traffic.Router.
func (r *Router) Name() string { return "nginx" }

// StableIngresses returns the names of the stable Ingresses a Rollout names.
func StableIngresses(ro *v1alpha1.Rollout) []string {
	c := ro.Spec.Strategy.Canary
	if c == nil || c.TrafficRouting == nil || c.TrafficRouting.Nginx == nil {
		return nil
	}
	n := c.TrafficRouting.Nginx
	if n.StableIngress != "" {
		return []string{n.StableIngress}
	}
	return n.StableIngresses
}

// CanaryName is the name of the canary Ingress of a stable Ingress.
func CanaryName(ro *v1alpha1.Rollout, stable string) string {
	return fmt.Sprintf("%s-%s-canary", ro.Name, stable)
}

func prefix(ro *v1alpha1.Rollout) string {
	if p := ro.Spec.Strategy.Canary.TrafficRouting.Nginx.AnnotationPrefix; p != "" {
		return p
	}
	return "nginx.ingress.kubernetes.io"
}

// stables reads the stable Ingresses; a missing one, or one without a
// backend for the stable Service, is invalid.
func (r *Router) stables(ctx context.Context, ro *v1alpha1.Rollout) ([]*networkingv1.Ingress, error) {
	var out []*networkingv1.Ingress
	stable := ro.Spec.Strategy.Canary.StableService
	for _, name := range StableIngresses(ro) {
		var ing networkingv1.Ingress
		err := r.client.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: name}, &ing)
		if apierrors.IsNotFound(err) {
			return nil, traffic.Invalid("Ingress %q named in spec.strategy.canary.trafficRouting.nginx was not found in namespace %s", name, ro.Namespace)
		}
		if err != nil {
			return nil, fmt.Errorf("getting ingress %s: %w", name, err)
		}
		if err := traffic.CheckOwner("Ingress", &ing, ro.Name); err != nil {
			return nil, err
		}
		if !replaceBackends(ing.Spec.DeepCopy(), stable, "") {
			return nil, traffic.Invalid("Ingress %q has no backend for the stable Service %q", name, stable)
		}
		out = append(out, &ing)
	}
	return out, nil
}

// replaceBackends points every backend of the stable Service at canary (when
// canary is set) and reports whether there was one.
func replaceBackends(spec *networkingv1.IngressSpec, stable, canary string) bool {
	found := false
	swap := func(b *networkingv1.IngressBackend) {
		if b != nil && b.Service != nil && b.Service.Name == stable {
			found = true
			if canary != "" {
				b.Service.Name = canary
			}
		}
	}
	swap(spec.DefaultBackend)
	for i := range spec.Rules {
		if spec.Rules[i].HTTP == nil {
			continue
		}
		for j := range spec.Rules[i].HTTP.Paths {
			swap(&spec.Rules[i].HTTP.Paths[j].Backend)
		}
	}
	return found
}

// Validate implements traffic.Router. NGINX cannot mirror traffic.
func (r *Router) Validate(ctx context.Context, ro *v1alpha1.Rollout) error {
	for _, s := range ro.Spec.Strategy.Canary.Steps {
		if s.SetMirrorRoute != nil {
			return traffic.Invalid("setMirrorRoute %q: the nginx router cannot mirror traffic", s.SetMirrorRoute.Name)
		}
	}
	if which := traffic.WeightedExperiment(ro); which != "" {
		return traffic.Invalid("experiment %s has a weight: NGINX canary Ingresses route to one canary Service only", which)
	}
	_, err := r.stables(ctx, ro)
	return err
}

// edit says what a write changes in the canary annotations (after the
// prefix); keys it does not mention keep their current value.
type edit map[string]*string

// sync makes each canary Ingress the clone of its stable Ingress with the
// canary annotations, applying e on top of the annotations it has now.
func (r *Router) sync(ctx context.Context, ro *v1alpha1.Rollout, e edit) error {
	stables, err := r.stables(ctx, ro)
	if err != nil {
		return err
	}
	c := ro.Spec.Strategy.Canary
	p := prefix(ro)
	for _, st := range stables {
		if err := r.claim(ctx, ro, st); err != nil {
			return err
		}
		var current networkingv1.Ingress
		key := client.ObjectKey{Namespace: ro.Namespace, Name: CanaryName(ro, st.Name)}
		err := r.client.Get(ctx, key, &current)
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("getting canary ingress %s: %w", key.Name, err)
		}
		want := desired(ro, st, p)
		for _, k := range []string{"canary-weight", "canary-by-header", "canary-by-header-value", "canary-by-header-pattern"} {
			if v, ok := current.Annotations[p+"/"+k]; ok && exists {
				want.Annotations[p+"/"+k] = v
			}
		}
		for k, v := range e {
			if v == nil {
				delete(want.Annotations, p+"/"+k)
			} else {
				want.Annotations[p+"/"+k] = *v
			}
		}
		if _, ok := want.Annotations[p+"/canary-weight"]; !ok {
			want.Annotations[p+"/canary-weight"] = "0"
		}
		replaceBackends(&want.Spec, c.StableService, c.CanaryService)
		if !exists {
			if err := r.client.Create(ctx, want, client.FieldOwner(v1alpha1.FieldManager)); err != nil {
				return fmt.Errorf("creating canary ingress %s: %w", want.Name, err)
			}
			continue
		}
		if err := r.patchCanary(ctx, &current, want); err != nil {
			return err
		}
	}
	return nil
}

// claim makes a stable Ingress name the Rollout, so that a second Rollout
// cannot add its own canary Ingress for the same hosts (NGINX takes one
// canary per host). The patch touches only the annotation.
func (r *Router) claim(ctx context.Context, ro *v1alpha1.Rollout, st *networkingv1.Ingress) error {
	if traffic.Owner(st) == ro.Name {
		return nil
	}
	ops, err := traffic.Claim("Ingress", st, ro.Name)
	if err != nil {
		return err
	}
	if err := jsonpatch.Apply(ctx, r.client, st, ops); err != nil {
		return fmt.Errorf("claiming ingress %s: %w", st.Name, err)
	}
	return nil
}

// canaryFields are the parts of a canary Ingress the router keeps in line
// with its stable Ingress.
var canaryFields = []string{"/metadata/labels", "/metadata/annotations", "/metadata/ownerReferences", "/spec"}

// patchCanary makes the canary Ingress current (as read) carry want's
// labels, annotations, owner and spec. The controller owns the canary
// Ingress, but it is still written by patch: an Update of the cached copy
// would clear what the cache trimmed, and another writer's fields.
func (r *Router) patchCanary(ctx context.Context, current, want *networkingv1.Ingress) error {
	var ops []jsonpatch.Op
	for _, root := range canaryFields {
		diff, err := jsonpatch.Diff(current, want, root)
		if err != nil {
			return err
		}
		ops = append(ops, diff...)
	}
	if err := jsonpatch.Apply(ctx, r.client, current, jsonpatch.Guard(ops, jsonpatch.TestResourceVersion(current))); err != nil {
		return fmt.Errorf("patching canary ingress %s: %w", current.Name, err)
	}
	return nil
}

// desired is the canary Ingress before the weight and header annotations:
// the stable Ingress's spec, labels and annotations (less any canary ones),
// canary: "true", the weight total, and the additional annotations.
func desired(ro *v1alpha1.Rollout, stable *networkingv1.Ingress, p string) *networkingv1.Ingress {
	annotations := map[string]string{}
	for k, v := range stable.Annotations {
		if !strings.HasPrefix(k, p+"/canary") && k != "kubectl.kubernetes.io/last-applied-configuration" && k != v1alpha1.ManagedByAnnotation {
			annotations[k] = v
		}
	}
	annotations[p+"/canary"] = "true"
	annotations[p+"/canary-weight-total"] = strconv.Itoa(int(ro.Spec.Strategy.Canary.TrafficRouting.MaxTrafficWeight))
	for k, v := range ro.Spec.Strategy.Canary.TrafficRouting.Nginx.AdditionalIngressAnnotations {
		annotations[p+"/"+k] = v
	}
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Name:            CanaryName(ro, stable.Name),
			Namespace:       ro.Namespace,
			Labels:          stable.DeepCopy().Labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, v1alpha1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: *stable.Spec.DeepCopy(),
	}
}

// SetWeight implements traffic.Router.
func (r *Router) SetWeight(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) error {
	if slices.ContainsFunc(weight.Extra, func(d traffic.Destination) bool { return d.Weight > 0 }) {
		return traffic.Invalid("NGINX canary Ingresses route to one canary Service only: experiment templates cannot take traffic")
	}
	w := strconv.Itoa(int(weight.Canary))
	return r.sync(ctx, ro, edit{"canary-weight": &w})
}

// Verify implements traffic.Router.
func (r *Router) Verify(ctx context.Context, ro *v1alpha1.Rollout, weight traffic.Weights) (bool, error) {
	for _, name := range StableIngresses(ro) {
		var ing networkingv1.Ingress
		if err := r.live.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: CanaryName(ro, name)}, &ing); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if ing.Annotations[prefix(ro)+"/canary-weight"] != strconv.Itoa(int(weight.Canary)) {
			return false, nil
		}
	}
	return true, nil
}

// SetManagedRoutes implements traffic.Router: the first header route's first
// header becomes the canary-by-header annotations (NGINX matches one header
// per canary Ingress). Mirror routes are refused by Validate.
func (r *Router) SetManagedRoutes(ctx context.Context, ro *v1alpha1.Rollout, routes []traffic.ManagedRoute) error {
	// Without a header route the header annotations are what the user's
	// additionalIngressAnnotations say (or absent).
	additional := ro.Spec.Strategy.Canary.TrafficRouting.Nginx.AdditionalIngressAnnotations
	e := edit{}
	for _, k := range []string{"canary-by-header", "canary-by-header-value", "canary-by-header-pattern"} {
		if v, ok := additional[k]; ok {
			e[k] = &v
		} else {
			e[k] = nil
		}
	}
	for _, mr := range routes {
		if mr.Mirror != nil {
			return traffic.Invalid("setMirrorRoute %q: the nginx router cannot mirror traffic", mr.Name)
		}
		if len(mr.Header) == 0 {
			continue
		}
		h := mr.Header[0]
		name := h.HeaderName
		e["canary-by-header"] = &name
		e["canary-by-header-value"], e["canary-by-header-pattern"] = nil, nil
		switch v := h.HeaderValue; {
		case v.Exact != "":
			e["canary-by-header-value"] = &v.Exact
		case v.Prefix != "":
			pattern := "^" + regexp.QuoteMeta(v.Prefix) + ".*"
			e["canary-by-header-pattern"] = &pattern
		default:
			e["canary-by-header-pattern"] = &v.Regex
		}
		break
	}
	return r.sync(ctx, ro, e)
}

// Release implements traffic.Router: the canary Ingresses are deleted, so
// traffic returns to the stable ones at once (their owner reference would
// have them garbage-collected only after the Rollout is gone), and the
// stable Ingresses no longer name the Rollout. NGINX has no extra
// destinations. A canary Ingress the Rollout does not control, or a stable
// Ingress another Rollout claims, is left alone; stable Ingresses already
// gone are reported together, as NotFound errors, once the others are done.
func (r *Router) Release(ctx context.Context, ro *v1alpha1.Rollout, _ []traffic.Destination) error {
	var gone []error
	for _, name := range StableIngresses(ro) {
		// The API server, not the cache: a canary Ingress created moments
		// ago and missed here would keep sending traffic to pods that the
		// cleanup is about to delete. Release runs once, so the read is cheap.
		var canary networkingv1.Ingress
		err := r.live.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: CanaryName(ro, name)}, &canary)
		if err == nil && metav1.IsControlledBy(&canary, ro) {
			err = r.client.Delete(ctx, &canary, client.Preconditions{UID: &canary.UID})
		}
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting canary ingress %s: %w", CanaryName(ro, name), err)
		}
		var stable networkingv1.Ingress
		err = r.client.Get(ctx, client.ObjectKey{Namespace: ro.Namespace, Name: name}, &stable)
		if err == nil {
			err = jsonpatch.Apply(ctx, r.client, &stable, traffic.Unclaim(&stable, ro.Name))
		}
		switch {
		case apierrors.IsNotFound(err):
			gone = append(gone, fmt.Errorf("ingress %s: %w", name, err))
		case err != nil:
			return fmt.Errorf("releasing ingress %s: %w", name, err)
		}
	}
	return errors.Join(gone...)
}
