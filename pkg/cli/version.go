package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeseed/rollouts/pkg/version"
)

// ControllerLabelSelector selects the controller Deployment of manifests/.
const ControllerLabelSelector = "app.kubernetes.io/name=rollouts-controller"

type versionOutput struct {
	Plugin     version.Info        `json:"plugin"`
	Controller []controllerVersion `json:"controller,omitempty"`
}

type controllerVersion struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Image     string `json:"image"`
}

func newVersionCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	var client bool
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version and the controller's",
		Example: `  # Plugin and controller versions
  kubectl rollouts version

  # Only the plugin, without contacting the cluster
  kubectl rollouts version --client -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := versionOutput{Plugin: version.Get()}
			var lookupErr error
			if !client {
				out.Controller, lookupErr = findControllers(cmd.Context(), flags)
			}
			if err := printVersion(streams.Out, out, output, client); err != nil {
				return err
			}
			if lookupErr != nil {
				return fmt.Errorf("looking up the controller: %w", lookupErr)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&client, "client", false, "Print only the plugin version; don't contact the cluster.")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json, or empty for text.")
	return cmd
}

func printVersion(w io.Writer, out versionOutput, format string, clientOnly bool) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "":
		var b strings.Builder
		fmt.Fprintf(&b, "kubectl-rollouts: %s\n", out.Plugin)
		if !clientOnly && len(out.Controller) == 0 {
			fmt.Fprintf(&b, "controller: not found (no Deployment labelled %s)\n", ControllerLabelSelector)
		}
		for _, c := range out.Controller {
			fmt.Fprintf(&b, "controller: %s/%s image %s\n", c.Namespace, c.Name, c.Image)
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	return fmt.Errorf("unknown output format %q: use json or leave it empty", format)
}

// findControllers lists the controller Deployments the cluster runs.
func findControllers(ctx context.Context, flags *genericclioptions.ConfigFlags) ([]controllerVersion, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	list, err := cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: ControllerLabelSelector})
	if err != nil {
		return nil, err
	}
	var out []controllerVersion
	for _, d := range list.Items {
		for _, c := range d.Spec.Template.Spec.Containers {
			out = append(out, controllerVersion{Namespace: d.Namespace, Name: d.Name, Image: c.Image})
		}
	}
	return out, nil
}
