// Package notifications tells people about Rollout transitions through
// github.com/argoproj/notifications-engine (DESIGN.md §16): ParseSettings
// reads the ConfigMap and Secret, in the engine's format, over built-in
// triggers and templates; Destinations reads subscriptions from the
// ConfigMap and from annotations on the Rollout and its Namespace; Vars are
// what templates see; a Notifier turns a transition into deliveries, and a
// Sender delivers them off the reconcile path, retried with backoff.
package notifications
