package main

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// namespacedCache is the cache of a controller that watches one namespace.
// It refuses cluster-scoped kinds: their informers list and watch across
// the cluster, which the namespaced Role cannot grant, so a read would wait
// for a first sync that never comes and hold its worker until shutdown.
// The reconcilers do not read such kinds in this mode (a clusterScope
// reference is InvalidSpec); this makes a slip an error, not a hang.
type namespacedCache struct {
	cache.Cache
	namespace string
	scheme    *runtime.Scheme
	// isNamespaced reports a kind's scope from the API server's discovery.
	isNamespaced func(schema.GroupVersionKind) (bool, error)
}

// newNamespacedCache returns a cache.NewCacheFunc for namespaced mode.
func newNamespacedCache(namespace string) cache.NewCacheFunc {
	return func(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
		c, err := cache.New(cfg, opts)
		if err != nil {
			return nil, err
		}
		return &namespacedCache{
			Cache:     c,
			namespace: namespace,
			scheme:    opts.Scheme,
			isNamespaced: func(gvk schema.GroupVersionKind) (bool, error) {
				return apiutil.IsGVKNamespaced(gvk, opts.Mapper)
			},
		}, nil
	}
}

// refuse returns an error for a cluster-scoped kind. A kind the API server
// does not serve is left to the cache, which reports it as such.
func (c *namespacedCache) refuse(obj runtime.Object) error {
	// A type the scheme lacks is left to the cache, which reports it.
	gvk, err := apiutil.GVKForObject(obj, c.scheme)
	if err == nil {
		gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
		return c.refuseKind(gvk)
	}
	return nil
}

func (c *namespacedCache) refuseKind(gvk schema.GroupVersionKind) error {
	if namespaced, err := c.isNamespaced(gvk); err == nil && !namespaced {
		return fmt.Errorf("%s is cluster-scoped and the controller watches only namespace %s (--namespace): not cached", gvk.Kind, c.namespace)
	}
	return nil
}

func (c *namespacedCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.refuse(obj); err != nil {
		return err
	}
	return c.Cache.Get(ctx, key, obj, opts...)
}

func (c *namespacedCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.refuse(list); err != nil {
		return err
	}
	return c.Cache.List(ctx, list, opts...)
}

func (c *namespacedCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.refuse(obj); err != nil {
		return nil, err
	}
	return c.Cache.GetInformer(ctx, obj, opts...)
}

func (c *namespacedCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.refuseKind(gvk); err != nil {
		return nil, err
	}
	return c.Cache.GetInformerForKind(ctx, gvk, opts...)
}

func (c *namespacedCache) IndexField(ctx context.Context, obj client.Object, field string, extract client.IndexerFunc) error {
	if err := c.refuse(obj); err != nil {
		return err
	}
	return c.Cache.IndexField(ctx, obj, field, extract)
}
