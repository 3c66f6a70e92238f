package cli

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// ExitError ends the plugin with a specific exit code (status: 1 for a
// Degraded or aborted Rollout, 2 on timeout).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit code for an error returned by a command.
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if err != nil {
		return 1
	}
	return 0
}

// session is a client for the cluster the standard flags point at, and the
// namespace they select.
type session struct {
	client    client.WithWatch
	namespace string
}

func newSession(flags *genericclioptions.ConfigFlags) (*session, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: apis.NewScheme()})
	if err != nil {
		return nil, err
	}
	return &session{client: c, namespace: ns}, nil
}

// rollout reads a Rollout; a missing one is a clear error.
func (s *session) rollout(ctx context.Context, name string) (*v1alpha1.Rollout, error) {
	var ro v1alpha1.Rollout
	err := s.client.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &ro)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("rollout %q not found in namespace %q", name, s.namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("getting rollout %s: %w", name, err)
	}
	return &ro, nil
}

// rawFrom lists or watches from a resourceVersion.
func rawFrom(resourceVersion string) *metav1.ListOptions {
	return &metav1.ListOptions{ResourceVersion: resourceVersion}
}
