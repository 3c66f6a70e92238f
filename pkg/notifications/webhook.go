package notifications

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/argoproj/notifications-engine/pkg/services"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// webhookTimeout bounds one webhook request.
const webhookTimeout = 30 * time.Second

// webhookService sends a notification as one HTTP request, in the engine's
// format (services.WebhookOptions; a template's webhook.<service> section
// sets the method, a path appended to the URL, and the body, which is
// otherwise the message, sent with GET).
//
// It replaces the engine's webhook service, whose HTTP client logs every
// request's URL to the process's standard error, outside the controller's
// structured log, and retries on its own: here an attempt is one request,
// retried by the Sender like every other service's. retryMax,
// retryWaitMin and retryWaitMax are accepted and have no effect.
type webhookService struct {
	name   string
	opts   services.WebhookOptions
	client *http.Client
}

// newWebhookService reads the options of the service key "service.webhook"
// or "service.webhook.<name>", with $key references replaced by the
// Secret's values.
func newWebhookService(key, value string, secret *corev1.Secret) (*webhookService, error) {
	name := strings.TrimPrefix(strings.TrimPrefix(key, "service."), "webhook.")
	var raw any
	if err := yaml.Unmarshal([]byte(value), &raw); err != nil {
		return nil, err
	}
	b, err := yaml.Marshal(withSecrets(raw, secret))
	if err != nil {
		return nil, err
	}
	var opts services.WebhookOptions
	if err := yaml.Unmarshal(b, &opts); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(opts.URL, "http://") && !strings.HasPrefix(opts.URL, "https://") {
		return nil, fmt.Errorf("url must be an absolute http(s) URL")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if opts.InsecureSkipVerify {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user's choice, per service
	}
	return &webhookService{name: name, opts: opts, client: &http.Client{Transport: transport, Timeout: webhookTimeout}}, nil
}

// withSecrets replaces $key in every string of v by the Secret's value of
// key, as the engine does for its services; a reference to a key the
// Secret lacks stays as written.
func withSecrets(v any, secret *corev1.Secret) any {
	switch v := v.(type) {
	case string:
		return secretRef.ReplaceAllStringFunc(v, func(ref string) string {
			if val, ok := secret.Data[ref[1:]]; ok {
				return string(val)
			}
			return ref
		})
	case map[string]any:
		for k, e := range v {
			v[k] = withSecrets(e, secret)
		}
	case []any:
		for i, e := range v {
			v[i] = withSecrets(e, secret)
		}
	}
	return v
}

// Send makes one request; any answer but 2xx is an error (with the
// answer's first 200 bytes).
func (s *webhookService) Send(n services.Notification, dest services.Destination) error {
	method, url, body := http.MethodGet, s.opts.URL, n.Message
	if w, ok := n.Webhook[dest.Service]; ok {
		body = w.Body
		if w.Method != "" {
			method = w.Method
		}
		if w.Path != "" {
			url = strings.TrimRight(url, "/") + "/" + strings.TrimLeft(w.Path, "/")
		}
	}
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", s.name, err)
	}
	for _, h := range s.opts.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	if a := s.opts.BasicAuth; a != nil {
		req.SetBasicAuth(a.Username, a.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", s.name, err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: %s %s answered %s: %s", s.name, method, req.URL.Redacted(), resp.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}
