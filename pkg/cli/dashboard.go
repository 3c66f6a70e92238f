package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/dashboard"
)

// DashboardActions are the plugin's actions as the dashboard runs them:
// the same checks, the same patches (Act).
func DashboardActions() dashboard.Actions {
	return dashboard.Actions{
		Names: ActionNames,
		Check: func(name string, ro *v1alpha1.Rollout) string { return Actions[name].Check(ro) },
		Act:   Act,
	}
}

func newDashboardCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	var address string
	var port int
	var all bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a live web UI of the Rollouts, with their steps, traffic and analysis",
		Long: `dashboard serves a web UI on your machine: the Rollouts of a namespace (or of
all, with -A), each with its steps, traffic split, revisions, analysis runs,
conditions and events, updated live, and buttons for promote, abort, retry,
pause, resume and restart. It reads and acts with your kubeconfig's identity:
what your RBAC forbids, the page shows forbidden. Everything it serves is in
this binary; it reaches nothing but the cluster.`,
		Example: `  # The Rollouts of the current namespace, at http://127.0.0.1:3100/
  kubectl rollouts dashboard

  # Every namespace, on another port
  kubectl rollouts dashboard -A --port 8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.ToRESTConfig()
			if err != nil {
				return err
			}
			ns := ""
			if !all {
				if ns, _, err = flags.ToRawKubeConfigLoader().Namespace(); err != nil {
					return err
				}
			}
			l, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			defer func() { _ = l.Close() }()
			srv, err := dashboard.New(cfg, dashboard.Options{
				Namespace: ns, Hosts: dashboard.Hosts(l.Addr()), Actions: DashboardActions(),
				// A line on stderr per action and per refused request.
				Log: funcr.New(func(_, args string) { _, _ = fmt.Fprintln(streams.ErrOut, args) }, funcr.Options{}),
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := srv.Start(ctx); err != nil {
				return fmt.Errorf("reading the cluster: %w", err)
			}
			scope := "namespace " + ns
			if ns == "" {
				scope = "all namespaces"
			}
			if _, err := fmt.Fprintf(streams.Out, "Dashboard of %s at http://%s/ (Ctrl-C to stop)\n", scope, l.Addr()); err != nil {
				return err
			}
			return serve(ctx, l, srv)
		},
	}
	cmd.Flags().StringVar(&address, "address", "127.0.0.1", "Address to listen on.")
	cmd.Flags().IntVar(&port, "port", 3100, "Port to listen on.")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "Show the Rollouts of every namespace.")
	return cmd
}

// serve answers on l until ctx ends.
func serve(ctx context.Context, l net.Listener, h http.Handler) error {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}
