// Package apis assembles the runtime scheme of every kind the controller and
// the CLI read or write: the built-in Kubernetes kinds, our own, and the route
// kinds of the traffic routers (Istio networking, Gateway API).
package apis

import (
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// AddToScheme registers every kind the project uses.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		v1alpha1.AddToScheme,
		istionetworkingv1.AddToScheme,
		gatewayv1.Install,
	} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// NewScheme returns a scheme with every kind the project uses.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(AddToScheme(s))
	return s
}
