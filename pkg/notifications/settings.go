package notifications

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/argoproj/notifications-engine/pkg/api"
	"github.com/argoproj/notifications-engine/pkg/services"
	"github.com/argoproj/notifications-engine/pkg/subscriptions"
	"github.com/argoproj/notifications-engine/pkg/templates"
	"github.com/argoproj/notifications-engine/pkg/triggers"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/internal/redaction"
)

const (
	// ConfigMapName holds the settings, in the engine's own format, in
	// the controller's namespace.
	ConfigMapName = "rollouts-notification-configmap"
	// SecretName holds the values the settings refer to as $key.
	SecretName = "rollouts-notification-secret"
	// DefaultNamespace holds them when the controller's namespace is not
	// known (DESIGN.md §16: $POD_NAMESPACE first).
	DefaultNamespace = "rollouts-system"

	// keyDashboardURL is our one key beyond the engine's: the dashboard's
	// base URL, for the dashboardURL template variable.
	keyDashboardURL = "dashboardURL"
)

// Settings are the parsed ConfigMap and Secret: the engine's config and an
// API built from it, with every entry that could not be used left out and
// named in Problems. One bad entry never disables the others: the engine
// parses and builds a whole config or nothing, so each entry is parsed and
// built on its own first.
type Settings struct {
	Config       api.Config
	API          api.API
	DashboardURL string
	// Problems name each ConfigMap key left out, and why; Secret values
	// are hidden in them.
	Problems []error
	hide     *strings.Replacer
}

// Redact hides the Secret's values in s.
func (s *Settings) Redact(str string) string { return redaction.String(s.hide, str) }

// ParseSettings reads the ConfigMap and the Secret, either of which may be
// nil (not found), merged over the built-in triggers and templates.
func ParseSettings(cm *corev1.ConfigMap, secret *corev1.Secret) *Settings {
	if secret == nil {
		secret = &corev1.Secret{}
	}
	var values []string
	for _, v := range secret.Data {
		values = append(values, string(v))
	}
	p := &parser{
		Settings: Settings{hide: redaction.Replacer(values)},
		secret:   secret,
		builtIns: defaults,
		user:     map[string]string{},
		services: map[string]services.NotificationService{},
	}
	if cm != nil {
		p.user = cm.Data
		p.Config.Namespace = cm.Namespace
	}
	p.Config.Services = map[string]api.ServiceFactory{}
	p.Config.Triggers = map[string][]triggers.Condition{}
	p.Config.Templates = map[string]services.Notification{}
	p.Config.ServiceDefaultTriggers = map[string][]string{}
	p.parse()
	built, err := api.NewAPI(p.Config, func(obj map[string]any, _ services.Destination) map[string]any { return obj })
	if err != nil {
		// Unreachable while each entry is checked as NewAPI checks it.
		p.problem("", err)
		return &p.Settings
	}
	p.API = built
	return &p.Settings
}

type parser struct {
	Settings
	secret   *corev1.Secret
	builtIns map[string]string
	user     map[string]string
	services map[string]services.NotificationService
}

func (p *parser) problem(key string, err error) {
	msg := p.Redact(err.Error())
	if key == "" {
		p.Problems = append(p.Problems, fmt.Errorf("%s: %s", ConfigMapName, msg))
		return
	}
	p.Problems = append(p.Problems, fmt.Errorf("%s key %q: %s", ConfigMapName, key, msg))
}

// keyKinds are the key prefixes known, in the order they are parsed.
var keyKinds = []string{"service.", "template.", "trigger.", "defaultTriggers", "subscriptions", keyDashboardURL}

// parse goes kind by kind, so that triggers can be checked against the
// templates and subscriptions against the services and triggers.
func (p *parser) parse() {
	all := maps.Clone(p.builtIns)
	maps.Copy(all, p.user)
	sorted := slices.Sorted(maps.Keys(all))
	for _, kind := range keyKinds {
		for _, k := range sorted {
			if strings.HasPrefix(k, kind) {
				p.entry(k)
			}
		}
	}
	for _, k := range sorted {
		if !slices.ContainsFunc(keyKinds, func(kind string) bool { return strings.HasPrefix(k, kind) }) {
			p.problem(k, fmt.Errorf("unknown key: expected service.<type>[.<name>], template.<name>, trigger.<name>, defaultTriggers[.<service>], subscriptions or %s", keyDashboardURL))
		}
	}
}

// entry uses the user's value of k, or the built-in one when the user has
// none or the user's cannot be used.
func (p *parser) entry(k string) {
	v, mine := p.user[k]
	if mine {
		err := p.use(k, v)
		if err == nil {
			return
		}
		p.problem(k, err)
		if _, ok := p.builtIns[k]; ok {
			p.problem(k, fmt.Errorf("the built-in definition is used instead"))
		} else {
			return
		}
	}
	if err := p.use(k, p.builtIns[k]); err != nil {
		p.problem(k, fmt.Errorf("built-in: %w", err))
	}
}

// use parses one entry through the engine, alone, and checks it the way
// api.NewAPI would, plus the references the engine leaves to send time.
func (p *parser) use(k, v string) error {
	if k == keyDashboardURL {
		u, err := url.Parse(strings.TrimSpace(v))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("want an absolute http(s) URL, got %q", v)
		}
		p.DashboardURL = strings.TrimRight(u.String(), "/")
		return nil
	}
	if k == "service.webhook" || strings.HasPrefix(k, "service.webhook.") {
		svc, err := newWebhookService(k, v, p.secret)
		if err != nil {
			return err
		}
		p.services[svc.name] = svc
		p.Config.Services[svc.name] = func() (services.NotificationService, error) { return svc, nil }
		return nil
	}
	one, err := api.ParseConfig(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Config.Namespace}, Data: map[string]string{k: v}}, p.secret)
	if err != nil {
		return err
	}
	for name, factory := range one.Services {
		svc, err := factory()
		if err != nil {
			return err
		}
		p.services[name] = svc
		p.Config.Services[name] = func() (services.NotificationService, error) { return svc, nil }
	}
	for name, t := range one.Templates {
		if _, err := templates.NewService(map[string]services.Notification{name: t}); err != nil {
			return err
		}
		p.Config.Templates[name] = t
	}
	for name, conditions := range one.Triggers {
		if err := p.checkTrigger(name, conditions); err != nil {
			return err
		}
		p.Config.Triggers[name] = conditions
	}
	for svc, names := range one.ServiceDefaultTriggers {
		if err := p.checkTriggerNames(names); err != nil {
			return err
		}
		p.Config.ServiceDefaultTriggers[svc] = names
	}
	if one.DefaultTriggers != nil {
		if err := p.checkTriggerNames(one.DefaultTriggers); err != nil {
			return err
		}
		p.Config.DefaultTriggers = one.DefaultTriggers
	}
	if one.Subscriptions != nil {
		if err := p.checkSubscriptions(one.Subscriptions); err != nil {
			return err
		}
		p.Config.Subscriptions = one.Subscriptions
	}
	return nil
}

func (p *parser) checkTrigger(name string, conditions []triggers.Condition) error {
	if len(conditions) == 0 {
		return fmt.Errorf("trigger %q has no conditions", name)
	}
	if _, err := triggers.NewService(map[string][]triggers.Condition{name: conditions}); err != nil {
		return err
	}
	for i, c := range conditions {
		if len(c.Send) == 0 {
			return fmt.Errorf("condition %d sends no template", i)
		}
		for _, t := range c.Send {
			if _, ok := p.Config.Templates[t]; !ok {
				return fmt.Errorf("condition %d sends template %q, which is not defined (or could not be used)", i, t)
			}
		}
	}
	return nil
}

func (p *parser) checkTriggerNames(names []string) error {
	for _, n := range names {
		if _, ok := p.Config.Triggers[n]; !ok {
			return fmt.Errorf("trigger %q is not defined (or could not be used)", n)
		}
	}
	return nil
}

func (p *parser) checkSubscriptions(subs subscriptions.DefaultSubscriptions) error {
	for i, s := range subs {
		if err := p.checkTriggerNames(s.Triggers); err != nil {
			return fmt.Errorf("subscription %d: %w", i, err)
		}
		for _, r := range s.Recipients {
			svc, _, _ := strings.Cut(r, ":")
			if _, ok := p.services[svc]; !ok {
				return fmt.Errorf("subscription %d: service %q is not defined (or could not be used)", i, svc)
			}
		}
	}
	return nil
}

// secretRef is the engine's reference to a Secret key in a service's
// settings.
var secretRef = regexp.MustCompile(`[$][\w-]+`)
