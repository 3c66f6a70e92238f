package notifications

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kubeseed/rollouts/internal/runnables"
)

// ReasonNotificationConfigInvalid is the Warning event on the ConfigMap
// when some of its entries cannot be used.
const ReasonNotificationConfigInvalid = "NotificationConfigInvalid"

// WatchSettings keeps d's settings in step with the ConfigMap and Secret
// in namespace: it watches those two objects alone (by name: no other
// Secret is read or cached) and parses them again on every change. The
// problems of a new version are logged and, when the ConfigMap exists,
// told in a Warning event on it; the entries without problems are used.
func (d *Dispatcher) WatchSettings(mgr manager.Manager, namespace string) error {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", ConfigMapName)},
			&corev1.Secret{}:    {Field: fields.OneTermEqualSelector("metadata.name", SecretName)},
		},
	})
	if err != nil {
		return fmt.Errorf("notification settings cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	onChange := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	ctx := context.Background()
	for _, obj := range []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("notification settings informer: %w", err)
		}
		if _, err := inf.AddEventHandler(onChange); err != nil {
			return err
		}
	}
	// On every replica, so that a standby has the settings when it leads.
	return mgr.Add(runnables.EveryReplica(func(ctx context.Context) error {
		if !c.WaitForCacheSync(ctx) {
			return nil
		}
		problems := d.load(ctx, c, namespace, nil)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				problems = d.load(ctx, c, namespace, problems)
			}
		}
	}))
}

// load reads and parses the settings and puts them in force, and returns
// their problems; it reports them unless they are those of the last load.
func (d *Dispatcher) load(ctx context.Context, c client.Reader, namespace string, last []string) []string {
	cm, secret := &corev1.ConfigMap{}, &corev1.Secret{}
	cmFound, err := getOptional(ctx, c, types.NamespacedName{Namespace: namespace, Name: ConfigMapName}, cm)
	if err != nil {
		d.log.Error(err, "Reading the notification ConfigMap: keeping the settings in force")
		return last
	}
	secretFound, err := getOptional(ctx, c, types.NamespacedName{Namespace: namespace, Name: SecretName}, secret)
	if err != nil {
		d.log.Error(err, "Reading the notification Secret: keeping the settings in force")
		return last
	}
	if !cmFound {
		cm = nil
	}
	if !secretFound {
		secret = nil
	}
	s := ParseSettings(cm, secret)
	d.SetSettings(s)
	var problems []string
	for _, p := range s.Problems {
		problems = append(problems, p.Error())
	}
	d.log.Info("Notification settings loaded", "namespace", namespace, "configMap", cm != nil, "secret", secret != nil,
		"services", len(s.Config.Services), "triggers", len(s.Config.Triggers), "templates", len(s.Config.Templates), "problems", len(problems))
	if slices.Equal(problems, last) {
		return problems
	}
	for _, p := range problems {
		d.log.Error(errors.New(p), "Notification settings entry left out")
	}
	if cm != nil && len(problems) > 0 {
		d.recorder.Eventf(cm, nil, corev1.EventTypeWarning, ReasonNotificationConfigInvalid, ReasonNotificationConfigInvalid,
			"%d entries left out, the others are in force: %s", len(problems), strings.Join(problems, "; "))
	}
	return problems
}

// getOptional reads obj; an object that does not exist is not an error.
func getOptional(ctx context.Context, c client.Reader, key types.NamespacedName, obj client.Object) (bool, error) {
	err := c.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
