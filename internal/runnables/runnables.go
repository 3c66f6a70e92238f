// Package runnables holds the manager Runnables the controller's parts
// share.
package runnables

import "context"

// EveryReplica runs on every replica, whether or not it leads:
// controller-runtime starts a Runnable that does not say so only on the
// leader.
type EveryReplica func(context.Context) error

// Start runs f until ctx ends.
func (f EveryReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: every replica runs it.
func (EveryReplica) NeedLeaderElection() bool { return false }
