package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/argoproj/notifications-engine/pkg/services"
	"github.com/argoproj/notifications-engine/pkg/triggers"
	"github.com/argoproj/notifications-engine/pkg/util/misc"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/notifications"
)

// These commands are ours, not the engine's (its pkg/cmd
// NewToolsCommand): the engine's read the ConfigMap alone, without our
// built-in triggers and templates or the checks of ParseSettings, give
// templates the raw object instead of our Vars, report errors with exit
// code 0, and write to os.Stdout. Ours keep its command names, flags and
// output so that its users find their way.

// notificationsOptions say where the settings, the Rollout and the
// AnalysisRun come from.
type notificationsOptions struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	// configMap and secret are files ("-": stdin), or empty to read the
	// cluster; secret ":empty" is no Secret.
	configMap, secret string
	// namespace is the controller's, where the ConfigMap and Secret are.
	namespace string
	// sess is made when the cluster is first needed, so that files alone
	// need no kubeconfig.
	sess *session
}

// emptySecret is --secret's value for no Secret at all, as the engine's.
const emptySecret = ":empty"

func newNotificationsCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &notificationsOptions{flags: flags, streams: streams}
	cmd := &cobra.Command{
		Use:   "notifications",
		Short: "Preview notification templates and triggers",
		Long: `notifications shows the triggers and templates the controller uses, renders
a template for a Rollout, sends it, or evaluates a trigger's conditions, so
that messages can be previewed before a rollout sends them.

The settings are the ConfigMap ` + notifications.ConfigMapName + ` and the Secret
` + notifications.SecretName + ` in the controller's namespace, merged over
the built-in triggers and templates as the controller merges them; entries
the controller would leave out are printed as warnings. --config-map and
--secret read them from files instead (the objects of that name in a
manifest), so that nothing needs a cluster.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.configMap, "config-map", "", "File holding the ConfigMap "+notifications.ConfigMapName+` ("-" for stdin); default: read it from the cluster.`)
	pf.StringVar(&o.secret, "secret", "", "File holding the Secret "+notifications.SecretName+` ("-" for stdin), or `+emptySecret+" for none; default: read it from the cluster.")
	pf.StringVar(&o.namespace, "notifications-namespace", notifications.DefaultNamespace, "The controller's namespace, where the ConfigMap and Secret are read from.")

	template := &cobra.Command{Use: "template", Short: "Show, render and send notification templates"}
	template.AddCommand(o.newTemplateGetCommand(), o.newTemplateNotifyCommand())
	trigger := &cobra.Command{Use: "trigger", Short: "Show and evaluate notification triggers"}
	trigger.AddCommand(o.newTriggerGetCommand(), o.newTriggerRunCommand())
	cmd.AddCommand(template, trigger)
	return cmd
}

func (o *notificationsOptions) newTemplateGetCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List the notification templates, or show one",
		Example: `  # All templates, with the first line of each message
  kubectl rollouts notifications template get

  # One template in full, from a ConfigMap not yet applied
  kubectl rollouts notifications template get rollout-paused -o yaml --config-map cm.yaml --secret :empty`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.settings(cmd.Context())
			if err != nil {
				return err
			}
			items, err := pick(s.Config.Templates, "template", args)
			if err != nil {
				return err
			}
			return printItems(o.streams.Out, output, items, "NAME\tPREVIEW", func(name string, t services.Notification) []string {
				return []string{name + "\t" + t.Preview()}
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func (o *notificationsOptions) newTemplateNotifyCommand() *cobra.Command {
	var recipients []string
	var run string
	cmd := &cobra.Command{
		Use:   "notify TEMPLATE ROLLOUT",
		Short: "Render a template for a Rollout, and print or send it",
		Long: `notify renders a template with what the controller would give it for the
Rollout now: the Rollout, its current step, its weights, the AnalysisRun of
--analysis-run and the dashboard link. ROLLOUT is the name of a Rollout in the
namespace, or a file holding one ("-" for stdin).

The recipient console:stdout (the default) prints the message; any other,
SERVICE:RECIPIENT as in a subscription, sends it through that service of the
settings, once, without the controller's retries.`,
		Example: `  # Print the message the paused trigger would send about checkout
  kubectl rollouts notifications template notify rollout-paused checkout

  # Offline: the Rollout, the settings and an AnalysisRun from files
  kubectl rollouts notifications template notify analysis-run-failed ro.yaml \
      --analysis-run run.yaml --config-map cm.yaml --secret :empty

  # Send it to a Slack channel
  kubectl rollouts notifications template notify rollout-paused checkout --recipient slack:releases`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeSecondRollout(o.flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.notify(cmd.Context(), args[0], args[1], run, recipients)
		},
	}
	cmd.Flags().StringArrayVar(&recipients, "recipient", []string{"console:stdout"}, "SERVICE:RECIPIENT to send to; repeat for several.")
	cmd.Flags().StringVar(&run, "analysis-run", "", `AnalysisRun for the analysis variables: a name in the Rollout's namespace, or a file ("-" for stdin).`)
	return cmd
}

func (o *notificationsOptions) newTriggerGetCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List the notification triggers, or show one",
		Example: `  # All triggers, one line per condition
  kubectl rollouts notifications trigger get

  # One trigger as YAML
  kubectl rollouts notifications trigger get on-rollout-aborted -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.settings(cmd.Context())
			if err != nil {
				return err
			}
			items, err := pick(s.Config.Triggers, "trigger", args)
			if err != nil {
				return err
			}
			return printItems(o.streams.Out, output, items, "NAME\tTEMPLATE\tCONDITION", func(name string, conditions []triggers.Condition) []string {
				var lines []string
				for i, c := range conditions {
					if i > 0 {
						name = ""
					}
					lines = append(lines, name+"\t"+strings.Join(c.Send, ", ")+"\t"+whenText(c.When))
				}
				return lines
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func (o *notificationsOptions) newTriggerRunCommand() *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "run TRIGGER ROLLOUT",
		Short: "Evaluate a trigger's conditions for a Rollout: which templates it would send",
		Long: `run evaluates each condition of a trigger with what the controller would give
it for the Rollout now, and prints whether it fires and the templates it would
send. A condition without "when" always fires: the transition that fires the
trigger is its condition. ROLLOUT is the name of a Rollout in the namespace, or
a file holding one ("-" for stdin).`,
		Example: `  kubectl rollouts notifications trigger run on-rollout-paused checkout

  # A trigger of a ConfigMap not yet applied, on a Rollout and AnalysisRun from files
  kubectl rollouts notifications trigger run on-analysis-run-failed ro.yaml \
      --analysis-run run.yaml --config-map cm.yaml --secret :empty`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeSecondRollout(o.flags),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runTrigger(cmd.Context(), args[0], args[1], run)
		},
	}
	cmd.Flags().StringVar(&run, "analysis-run", "", `AnalysisRun for the analysis variables: a name in the Rollout's namespace, or a file ("-" for stdin).`)
	return cmd
}

func (o *notificationsOptions) notify(ctx context.Context, template, rollout, run string, recipients []string) error {
	s, err := o.settings(ctx, rollout, run)
	if err != nil {
		return err
	}
	if _, err := pick(s.Config.Templates, "template", []string{template}); err != nil {
		return err
	}
	vars, err := o.vars(ctx, s, rollout, run)
	if err != nil {
		return err
	}
	// The preview's own service, as the engine's command has it; it
	// replaces any service of that name in the settings, so a preview
	// never sends.
	s.API.AddNotificationService("console", services.NewConsoleService(o.streams.Out))
	for _, r := range recipients {
		var dest services.Destination
		dest.Service, dest.Recipient, _ = strings.Cut(r, ":")
		if err := s.API.Send(vars, []string{template}, dest); err != nil {
			return fmt.Errorf("sending %s to %s: %s", template, r, s.Redact(err.Error()))
		}
		if dest.Service != "console" {
			if _, err := fmt.Fprintf(o.streams.Out, "sent %s to %s\n", template, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *notificationsOptions) runTrigger(ctx context.Context, trigger, rollout, run string) error {
	s, err := o.settings(ctx, rollout, run)
	if err != nil {
		return err
	}
	if _, err := pick(s.Config.Triggers, "trigger", []string{trigger}); err != nil {
		return err
	}
	vars, err := o.vars(ctx, s, rollout, run)
	if err != nil {
		return err
	}
	conditions, err := s.RunTrigger(trigger, vars)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(o.streams.Out, 5, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "CONDITION\tFIRES\tSENDS")
	for _, c := range conditions {
		sends := "-"
		if c.Fires {
			sends = strings.Join(c.Send, ", ")
		}
		_, _ = fmt.Fprintf(w, "%s\t%t\t%s\n", whenText(c.When), c.Fires, sends)
	}
	return w.Flush()
}

func whenText(when string) string {
	if when == "" {
		return "(always)"
	}
	return when
}

// settings reads the ConfigMap and Secret and parses them as the
// controller does; the entries it would leave out are warnings. files are
// the other files the command reads.
func (o *notificationsOptions) settings(ctx context.Context, files ...string) (*notifications.Settings, error) {
	if err := o.oneStdin(files...); err != nil {
		return nil, err
	}
	cm, err := o.configMapObject(ctx)
	if err != nil {
		return nil, err
	}
	secret, err := o.secretObject(ctx)
	if err != nil {
		return nil, err
	}
	s := notifications.ParseSettings(cm, secret)
	for _, p := range s.Problems {
		_, _ = fmt.Fprintf(o.streams.ErrOut, "Warning: %v\n", p)
	}
	if s.API == nil {
		return nil, errors.New("the notification settings are unusable")
	}
	return s, nil
}

// oneStdin refuses to read standard input for two files: the settings'
// and those given.
func (o *notificationsOptions) oneStdin(files ...string) error {
	n := 0
	for _, f := range append(files, o.configMap, o.secret) {
		if f == "-" {
			n++
		}
	}
	if n > 1 {
		return errors.New("only one file can be read from standard input")
	}
	return nil
}

func (o *notificationsOptions) configMapObject(ctx context.Context) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	if o.configMap != "" {
		if err := o.readObject(o.configMap, schema.GroupKind{Kind: "ConfigMap"}, notifications.ConfigMapName, &cm); err != nil {
			return nil, fmt.Errorf("--config-map: %w", err)
		}
		cm.Namespace = o.namespace
		return &cm, nil
	}
	found, err := o.getSetting(ctx, notifications.ConfigMapName, &cm)
	if !found || err != nil {
		return nil, err
	}
	return &cm, nil
}

func (o *notificationsOptions) secretObject(ctx context.Context) (*corev1.Secret, error) {
	var secret corev1.Secret
	switch o.secret {
	case emptySecret:
		return nil, nil
	case "":
		found, err := o.getSetting(ctx, notifications.SecretName, &secret)
		if !found || err != nil {
			return nil, err
		}
		return &secret, nil
	}
	if err := o.readObject(o.secret, schema.GroupKind{Kind: "Secret"}, notifications.SecretName, &secret); err != nil {
		return nil, fmt.Errorf("--secret: %w", err)
	}
	// The API server does this for an applied Secret.
	for k, v := range secret.StringData {
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[k] = []byte(v)
	}
	return &secret, nil
}

// getSetting reads the ConfigMap or Secret name from the controller's
// namespace; found is false when there is none, as the controller then
// runs with the built-ins.
func (o *notificationsOptions) getSetting(ctx context.Context, name string, obj client.Object) (found bool, err error) {
	sess, err := o.session()
	if err != nil {
		return false, err
	}
	kind := "ConfigMap"
	flag := "--config-map FILE"
	if _, ok := obj.(*corev1.Secret); ok {
		kind, flag = "Secret", "--secret FILE or --secret "+emptySecret
	}
	err = sess.client.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		_, _ = fmt.Fprintf(o.streams.ErrOut, "Warning: %s %s/%s not found: the built-in settings apply\n", kind, o.namespace, name)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %s/%s (%s reads a file instead): %w", kind, o.namespace, name, flag, err)
	}
	return true, nil
}

func (o *notificationsOptions) session() (*session, error) {
	if o.sess == nil {
		sess, err := newSession(o.flags)
		if err != nil {
			return nil, err
		}
		o.sess = sess
	}
	return o.sess, nil
}

// vars are what the controller gives templates for the Rollout ro and the
// AnalysisRun run: each a name in the cluster or a file.
func (o *notificationsOptions) vars(ctx context.Context, s *notifications.Settings, ro, run string) (map[string]any, error) {
	var rollout v1alpha1.Rollout
	if isFile(ro) {
		if err := o.readObject(ro, v1alpha1.GroupVersion.WithKind("Rollout").GroupKind(), "", &rollout); err != nil {
			return nil, err
		}
	} else {
		sess, err := o.session()
		if err != nil {
			return nil, err
		}
		got, err := sess.rollout(ctx, ro)
		if err != nil {
			return nil, err
		}
		rollout = *got
	}
	var analysisRun *v1alpha1.AnalysisRun
	if run != "" {
		analysisRun = &v1alpha1.AnalysisRun{}
		if err := o.analysisRun(ctx, run, rollout.Namespace, analysisRun); err != nil {
			return nil, fmt.Errorf("--analysis-run: %w", err)
		}
	}
	return notifications.Vars(&rollout, analysisRun, s.DashboardURL)
}

func (o *notificationsOptions) analysisRun(ctx context.Context, name, namespace string, run *v1alpha1.AnalysisRun) error {
	if isFile(name) {
		return o.readObject(name, v1alpha1.GroupVersion.WithKind("AnalysisRun").GroupKind(), "", run)
	}
	sess, err := o.session()
	if err != nil {
		return err
	}
	if namespace == "" {
		namespace = sess.namespace
	}
	if err := sess.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, run); err != nil {
		return fmt.Errorf("getting AnalysisRun %s/%s: %w", namespace, name, err)
	}
	return nil
}

// isFile says whether a command's argument names a file rather than an
// object in the cluster, as the engine's commands decide.
func isFile(arg string) bool {
	if arg == "-" {
		return true
	}
	info, err := os.Stat(arg)
	return err == nil && !info.IsDir()
}

// readObject decodes into obj the first object of kind gk (and of that
// name, unless empty) of a YAML or JSON file of one or more documents.
func (o *notificationsOptions) readObject(path string, gk schema.GroupKind, name string, obj any) error {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(o.streams.In)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	for i, doc := range splitYAMLDocuments(data) {
		var head struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if head.GroupVersionKind().GroupKind() != gk || (name != "" && head.Name != name) {
			continue
		}
		if err := yaml.Unmarshal(doc, obj); err != nil {
			return fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		return nil
	}
	want := gk.Kind
	if name != "" {
		want += " " + name
	}
	return fmt.Errorf("%s holds no %s", path, want)
}

// pick is all of items, or the one named by args; an unknown name is an
// error naming those defined.
func pick[T any](items map[string]T, what string, args []string) (map[string]T, error) {
	if len(args) == 0 {
		return items, nil
	}
	item, ok := items[args[0]]
	if !ok {
		return nil, fmt.Errorf("%s %q is not defined (or could not be used); defined: %s", what, args[0], strings.Join(slices.Sorted(maps.Keys(items)), ", "))
	}
	return map[string]T{args[0]: item}, nil
}

func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "wide", "Output format: wide, name, json or yaml.")
}

// printItems prints items sorted by name: a table under header with the
// lines row gives each, their names, or JSON or YAML.
func printItems[T any](w io.Writer, output string, items map[string]T, header string, row func(string, T) []string) error {
	names := slices.Sorted(maps.Keys(items))
	switch output {
	case "wide":
		tw := tabwriter.NewWriter(w, 5, 0, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, header)
		for _, n := range names {
			for _, line := range row(n, items[n]) {
				_, _ = fmt.Fprintln(tw, line)
			}
		}
		return tw.Flush()
	case "name":
		_, err := io.WriteString(w, strings.Join(names, "\n")+"\n")
		return err
	case "json", "yaml":
		return misc.PrintFormatted(items, output, w)
	}
	return fmt.Errorf("unknown output format %q: use wide, name, json or yaml", output)
}

// completeSecondRollout completes Rollout names, and files, for the
// second argument.
func completeSecondRollout(flags *genericclioptions.ConfigFlags) func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	rollouts := completeRollouts(flags)
	return func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, _ := rollouts(cmd, nil, prefix)
		return names, cobra.ShellCompDirectiveDefault
	}
}
