package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// countingCache counts what reaches the real cache.
type countingCache struct {
	cache.Cache
	calls int
}

func (c *countingCache) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	c.calls++
	return nil
}

func (c *countingCache) List(context.Context, client.ObjectList, ...client.ListOption) error {
	c.calls++
	return nil
}

func (c *countingCache) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	c.calls++
	return nil, nil
}

func (c *countingCache) IndexField(context.Context, client.Object, string, client.IndexerFunc) error {
	c.calls++
	return nil
}

// TestNamespacedCacheRefusesClusterScopedKinds: in namespaced mode no read,
// informer or index of a cluster-scoped kind reaches the cache (which would
// start a cluster-wide informer the Role cannot feed); namespaced kinds do.
func TestNamespacedCacheRefusesClusterScopedKinds(t *testing.T) {
	inner := &countingCache{}
	c := &namespacedCache{Cache: inner, namespace: "team-a", scheme: apis.NewScheme(),
		isNamespaced: func(gvk schema.GroupVersionKind) (bool, error) {
			return gvk.Kind != "ClusterAnalysisTemplate", nil
		},
	}
	ctx := context.Background()
	index := func(client.Object) []string { return nil }
	for name, err := range map[string]error{
		"get":      c.Get(ctx, client.ObjectKey{Name: "shared"}, &v1alpha1.ClusterAnalysisTemplate{}),
		"list":     c.List(ctx, &v1alpha1.ClusterAnalysisTemplateList{}),
		"index":    c.IndexField(ctx, &v1alpha1.ClusterAnalysisTemplate{}, "x", index),
		"informer": func() error { _, err := c.GetInformer(ctx, &v1alpha1.ClusterAnalysisTemplate{}); return err }(),
		"kind": func() error {
			_, err := c.GetInformerForKind(ctx, v1alpha1.GroupVersion.WithKind("ClusterAnalysisTemplate"))
			return err
		}(),
	} {
		if err == nil || !strings.Contains(err.Error(), "ClusterAnalysisTemplate is cluster-scoped and the controller watches only namespace team-a") {
			t.Errorf("%s: error %v, want a refusal", name, err)
		}
	}
	if inner.calls != 0 {
		t.Errorf("%d calls reached the cache", inner.calls)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "web"}, &v1alpha1.AnalysisTemplate{}); err != nil {
		t.Error(err)
	}
	if err := c.List(ctx, &corev1.PodList{}); err != nil {
		t.Error(err)
	}
	if err := c.IndexField(ctx, &v1alpha1.Rollout{}, "x", index); err != nil {
		t.Error(err)
	}
	if inner.calls != 3 {
		t.Errorf("%d calls of namespaced kinds reached the cache, want 3", inner.calls)
	}
}

func TestNamespacedModeUsesTheGuardedCache(t *testing.T) {
	o, err := parse(t, "--namespace=team-a")
	if err != nil {
		t.Fatal(err)
	}
	if managerOptions(o).NewCache == nil {
		t.Error("namespaced mode uses the plain cache")
	}
	all, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if managerOptions(all).NewCache != nil {
		t.Error("cluster mode guards its cache")
	}
}
