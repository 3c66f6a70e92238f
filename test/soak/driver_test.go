//go:build soak

package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/kubeseed/rollouts/pkg/cli"
)

// waitTimeout bounds each wait of a driver for a state of its Rollout:
// long enough for a few controller kills and a run of failed writes.
const waitTimeout = 4 * time.Minute

// cliRunner runs the kubectl plugin's commands in process, as a person
// would run `kubectl rollouts …`: same code path, same checks, same request
// annotations. It talks to the API server directly, not through the
// controller's faulty proxy.
type cliRunner struct {
	kubeconfig string
}

func (c *cliRunner) run(ctx context.Context, ns string, args ...string) error {
	var errOut bytes.Buffer
	cmd := cli.NewRootCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: &errOut})
	cmd.SetArgs(append(args, "--kubeconfig="+c.kubeconfig, "--namespace="+ns))
	if err := cmd.ExecuteContext(ctx); err != nil {
		return fmt.Errorf("kubectl rollouts %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// driver plays one Rollout's schedule and keeps the model of what the
// Rollout must end as.
type driver struct {
	m     *member
	sched schedule
	w     *watcher
	cli   *cliRunner
	admin client.Client
	tally *tally
	logf  func(string, ...any)

	next   int            // the next image number
	stable int            // image of the stable revision
	hashes map[int]string // revision of each image
	// attempts counts the attempts of each revision: its update and every
	// retry the controller took.
	attempts map[string]int
	// expect is the end state, set once the final update is played.
	expect *expectation
	// problem says why the schedule stopped early.
	problem string
}

// expectation is a Rollout's end state as its schedule implies it.
type expectation struct {
	healthy      bool // Healthy; else Degraded after an abort
	stableImage  int
	currentImage int
	// revision is the final update's; runs is how many analysis runs it
	// must have had, all ending runPhase.
	revision string
	runs     int
	runPhase v1alpha1.AnalysisPhase
}

func newDriver(m *member, s schedule, w *watcher, c *cliRunner, admin client.Client, t *tally, logf func(string, ...any)) *driver {
	return &driver{m: m, sched: s, w: w, cli: c, admin: admin, tally: t, logf: logf, next: 1, hashes: map[int]string{}, attempts: map[string]int{}}
}

func (d *driver) analysed() bool { return d.m.strategy != strategyCanary }

// play runs the updates until the deadline, then the final update.
func (d *driver) play(ctx context.Context, deadline time.Time) {
	ro := d.w.rollout(d.m.key)
	if ro == nil {
		d.problem = "the Rollout is not there"
		return
	}
	d.hashes[0] = ro.Status.StableRS
	for i, u := range d.sched.updates {
		if time.Now().After(deadline) {
			d.tally.add("schedule: updates left out at the deadline", len(d.sched.updates)-i)
			break
		}
		if err := d.intermediate(ctx, u); err != nil {
			d.stop(fmt.Sprintf("update %d (%s): %v", i+1, u, err))
			return
		}
	}
	if err := d.finalUpdate(ctx, d.sched.final); err != nil {
		d.stop(fmt.Sprintf("final update (%s): %v", d.sched.final, err))
	}
}

// stop ends the schedule early: the Rollout did not do what it must.
func (d *driver) stop(problem string) {
	d.problem = problem
	d.logf("%s: schedule stopped: %s", d.m.key, problem)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// begin waits the update's think time, then releases the next image: its
// number and the revision the Rollout will call it.
func (d *driver) begin(ctx context.Context, u update) (int, string, error) {
	if err := sleep(ctx, u.think); err != nil {
		return 0, "", err
	}
	n := d.next
	rev, err := d.release(ctx, n, u.bad)
	return n, rev, err
}

// intermediate plays an update of the chaos part of the schedule.
func (d *driver) intermediate(ctx context.Context, u update) error {
	n, rev, err := d.begin(ctx, u)
	if err != nil {
		return err
	}
	for _, a := range u.actions {
		if err := sleep(ctx, a.after); err != nil {
			return err
		}
		if _, err := d.request(ctx, a.kind); err != nil {
			return err
		}
	}
	d.tally.inc("schedule: endings " + string(u.ending))
	switch u.ending {
	case endSupersede:
		return nil
	case endComplete:
		ro, err := d.waitFor(ctx, "the controller to take up the update", func(ro *v1alpha1.Rollout) bool { return ro.Status.CurrentPodHash == rev })
		if err != nil {
			return err
		}
		if ro.Status.Abort {
			if err := d.must(ctx, requestRetry); err != nil {
				return err
			}
		}
		if err := d.must(ctx, requestPromoteFull); err != nil {
			return err
		}
		if _, err := d.waitFor(ctx, "Healthy on image "+fmt.Sprint(n), healthy(rev)); err != nil {
			return err
		}
		d.stable = n
	case endAbort:
		ro, err := d.waitFor(ctx, "the controller to take up the update", func(ro *v1alpha1.Rollout) bool { return ro.Status.CurrentPodHash == rev })
		if err != nil {
			return err
		}
		// A failing release aborts by itself, at its analysis.
		if !u.bad && !ro.Status.Abort {
			if err := d.must(ctx, requestAbort); err != nil {
				return err
			}
		}
		if _, err := d.waitFor(ctx, "Degraded, aborted", degraded(rev)); err != nil {
			return err
		}
	case endRollback:
		return d.rollback(ctx)
	}
	return nil
}

// finalUpdate plays the last update in order, each step waiting for the
// state it needs, and records the end state it implies.
func (d *driver) finalUpdate(ctx context.Context, u update) error {
	n, rev, err := d.begin(ctx, u)
	if err != nil {
		return err
	}
	exp := &expectation{healthy: false, stableImage: d.stable, currentImage: n, revision: rev}
	if d.analysed() {
		exp.runs, exp.runPhase = 1+u.cycles, v1alpha1.AnalysisPhaseSuccessful
	}
	if u.bad {
		exp.runPhase = v1alpha1.AnalysisPhaseFailed
		if _, err := d.waitFor(ctx, "Degraded by the failing analysis", degraded(rev)); err != nil {
			return err
		}
		for range u.cycles {
			if err := d.must(ctx, requestRetry); err != nil {
				return err
			}
			if _, err := d.waitFor(ctx, "Degraded again by the failing analysis", degraded(rev)); err != nil {
				return err
			}
		}
	} else {
		if _, err := d.waitFor(ctx, "paused after the analysis", d.held(rev)); err != nil {
			return err
		}
		for range u.cycles {
			if err := d.must(ctx, requestAbort); err != nil {
				return err
			}
			if _, err := d.waitFor(ctx, "Degraded, aborted", degraded(rev)); err != nil {
				return err
			}
			if err := d.must(ctx, requestRetry); err != nil {
				return err
			}
			if _, err := d.waitFor(ctx, "paused after the analysis again", d.held(rev)); err != nil {
				return err
			}
		}
	}
	d.tally.inc("schedule: final endings " + string(u.ending))
	switch u.ending {
	case endComplete:
		if d.m.strategy != strategyBlueGreen {
			// At the first of the two indefinite pauses: the first promote
			// moves on to the second, the next one finishes.
			if err := d.must(ctx, requestPromote); err != nil {
				return err
			}
			if _, err := d.waitFor(ctx, "at the second pause", func(ro *v1alpha1.Rollout) bool {
				return ptr.Deref(ro.Status.CurrentStepIndex, 0) == holdStep+1 && ro.Status.Phase == v1alpha1.RolloutPhasePaused
			}); err != nil {
				return err
			}
		}
		if err := d.must(ctx, requestPromote); err != nil {
			return err
		}
		exp.healthy, exp.stableImage = true, n
	case endCompleteFull:
		if err := d.must(ctx, requestPromoteFull); err != nil {
			return err
		}
		exp.healthy, exp.stableImage = true, n
	case endAbort:
		if !u.bad {
			if err := d.must(ctx, requestAbort); err != nil {
				return err
			}
		}
	case endRollback:
		exp.healthy, exp.currentImage = true, d.stable
		if err := d.rollback(ctx); err != nil {
			return err
		}
	}
	if exp.healthy {
		if _, err := d.waitFor(ctx, "Healthy", healthy(d.hashes[exp.stableImage])); err != nil {
			return err
		}
		d.stable = exp.stableImage
	} else if _, err := d.waitFor(ctx, "Degraded, aborted", degraded(rev)); err != nil {
		return err
	}
	d.expect = exp
	return nil
}

// release sets the verdict and the image of update n (the CLI's set image)
// and returns the revision.
func (d *driver) release(ctx context.Context, n int, bad bool) (string, error) {
	d.next = max(d.next, n+1)
	verdict := verdictGood
	if bad {
		verdict = verdictBad
		d.tally.inc("schedule: failing releases")
	}
	ro := &v1alpha1.Rollout{}
	ro.Namespace, ro.Name = d.m.key.Namespace, d.m.key.Name
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, verdictAnnotation, verdict)
	if err := d.admin.Patch(ctx, ro, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return "", fmt.Errorf("setting the verdict: %w", err)
	}
	if err := d.cli.run(ctx, d.m.key.Namespace, "set", "image", d.m.key.Name, container+"="+image(n)); err != nil {
		return "", err
	}
	d.tally.inc("schedule: updates")
	if err := d.admin.Get(ctx, d.m.key, ro); err != nil {
		return "", err
	}
	rev := specHash(ro)
	d.hashes[n] = rev
	if rev != d.hashes[d.stable] {
		d.attempts[rev]++
	}
	return rev, nil
}

// rollback puts the stable image back: the controller skips the steps.
func (d *driver) rollback(ctx context.Context) error {
	d.tally.inc("schedule: rollbacks")
	rev, err := d.release(ctx, d.stable, false)
	if err != nil {
		return err
	}
	if rev != d.hashes[d.stable] {
		return fmt.Errorf("the stable image %d has revision %s now, %s before", d.stable, rev, d.hashes[d.stable])
	}
	_, err = d.waitFor(ctx, "Healthy on the stable image again", healthy(rev))
	return err
}

// must makes a request the schedule knows to be valid now.
func (d *driver) must(ctx context.Context, r request) error {
	ok, err := d.request(ctx, r)
	if err == nil && !ok {
		err = fmt.Errorf("the CLI refused %s", r)
	}
	return err
}

// request makes a request with the CLI and, if the CLI sent it, waits
// until the controller has handled its token (recorded it in
// status.lastHandled), so that the next request sees its effect. It
// reports whether the CLI sent it: the CLI refuses requests that make no
// sense for the Rollout's status (nothing to promote, nothing to retry),
// which the schedule's random requests often are.
func (d *driver) request(ctx context.Context, r request) (bool, error) {
	err := d.cli.run(ctx, d.m.key.Namespace, r.args(d.m.key.Name)...)
	if err != nil {
		if strings.Contains(err.Error(), fmt.Sprintf("rollout %q: ", d.m.key.Name)) {
			d.tally.inc("schedule: requests refused by the CLI " + string(r))
			return false, nil
		}
		return false, err
	}
	d.tally.inc("schedule: requests " + string(r))
	var ro v1alpha1.Rollout
	if err := d.admin.Get(ctx, d.m.key, &ro); err != nil {
		return true, err
	}
	token := ro.Annotations[r.annotation()]
	if _, err := d.waitFor(ctx, fmt.Sprintf("the %s request %s to be handled", r, token), func(ro *v1alpha1.Rollout) bool {
		return r.handled(ro) == token
	}); err != nil {
		return true, err
	}
	if r == requestRetry {
		d.attempts[specHash(&ro)]++
	}
	return true, nil
}

// args are the CLI's arguments for the request.
func (r request) args(name string) []string {
	if r == requestPromoteFull {
		return []string{"promote", name, "--full"}
	}
	return []string{string(r), name}
}

// annotation carries the request's token (DESIGN §1).
func (r request) annotation() string {
	return map[request]string{
		requestPromote: v1alpha1.PromoteAnnotation, requestPromoteFull: v1alpha1.PromoteFullAnnotation,
		requestAbort: v1alpha1.AbortAnnotation, requestRetry: v1alpha1.RetryAnnotation,
	}[r]
}

// handled is the last token of the request's kind the controller consumed.
func (r request) handled(ro *v1alpha1.Rollout) string {
	h := ro.Status.LastHandled
	return map[request]string{requestPromote: h.Promote, requestPromoteFull: h.PromoteFull, requestAbort: h.Abort, requestRetry: h.Retry}[r]
}

var errTimeout = errors.New("timed out")

// waitFor polls the watcher's view of the Rollout until cond holds.
func (d *driver) waitFor(ctx context.Context, what string, cond func(*v1alpha1.Rollout) bool) (*v1alpha1.Rollout, error) {
	deadline := time.Now().Add(waitTimeout)
	for {
		ro := d.w.rollout(d.m.key)
		if ro != nil && cond(ro) {
			return ro, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("waiting %s for %s: %w; last seen: %s", waitTimeout, what, errTimeout, summarize(ro))
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func summarize(ro *v1alpha1.Rollout) string {
	if ro == nil {
		return "nothing"
	}
	return fmt.Sprintf("phase=%s stable=%s current=%s step=%d abort=%t pauses=%v message=%q", ro.Status.Phase, ro.Status.StableRS, ro.Status.CurrentPodHash,
		ptr.Deref(ro.Status.CurrentStepIndex, -1), ro.Status.Abort, ro.Status.PauseConditions, ro.Status.Message)
}

func healthy(rev string) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.RolloutPhaseHealthy && ro.Status.StableRS == rev && ro.Status.CurrentPodHash == rev
	}
}

func degraded(rev string) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.RolloutPhaseDegraded && ro.Status.Abort && ro.Status.CurrentPodHash == rev
	}
}

// held: the update waits for a person after its analysis — the canaries at
// the first indefinite pause, blue-green with its preview ready and its
// pre-promotion analysis passed.
func (d *driver) held(rev string) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		if ro.Status.CurrentPodHash != rev || ro.Status.Abort || ro.Status.Phase != v1alpha1.RolloutPhasePaused {
			return false
		}
		if d.m.strategy != strategyBlueGreen {
			return ptr.Deref(ro.Status.CurrentStepIndex, 0) == holdStep
		}
		run := ro.Status.BlueGreen.PrePromotionAnalysisRun
		return run != nil && run.Phase == v1alpha1.AnalysisPhaseSuccessful &&
			slices.ContainsFunc(ro.Status.PauseConditions, func(p v1alpha1.PauseCondition) bool { return p.Reason == v1alpha1.PauseReasonBlueGreenPause })
	}
}
