package notifications

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// eventually waits for cond, checked every millisecond, for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// failures collects OnFailure's calls.
type failures struct {
	mu  sync.Mutex
	all []Failure
}

func (f *failures) add(x Failure) { f.mu.Lock(); f.all = append(f.all, x); f.mu.Unlock() }
func (f *failures) get() []Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Failure(nil), f.all...)
}

func newTestSender(t *testing.T, opts SenderOptions) (*Sender, *failures) {
	t.Helper()
	f := &failures{}
	opts.OnFailure = f.add
	s, err := NewSender(prometheus.NewRegistry(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(nil) })
	return s, f
}

func (s *Sender) countOf(trigger, service, result string) int {
	return int(testutil.ToFloat64(s.deliveries.WithLabelValues(trigger, service, result)))
}

func TestSenderRetriesWithBackoff(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s, fails := newTestSender(t, SenderOptions{Clock: fc, InitialBackoff: time.Second, MaxBackoff: 3 * time.Second, MaxAttempts: 5})
	var mu sync.Mutex
	var at []time.Time
	send := func() error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, fc.Now())
		if len(at) <= 3 {
			return errors.New("refused: token s3cret")
		}
		return nil
	}
	attempts := func() int { mu.Lock(); defer mu.Unlock(); return len(at) }
	d := Delivery{Rollout: types.NamespacedName{Namespace: "ns", Name: "ro"}, Trigger: "on-rollout-paused", Service: "hook", Send: send,
		Redact: func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") }}
	if err := s.Enqueue(d); err != nil {
		t.Fatal(err)
	}
	// Backoffs 1s, 2s, then capped at 3s: each attempt waits for its step.
	for i, step := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		eventually(t, "a retry scheduled", func() bool { return attempts() == i+1 && fc.HasWaiters() })
		fc.Step(step - time.Millisecond)
		if got := attempts(); got != i+1 {
			t.Fatalf("attempt %d ran %v early", got, time.Millisecond)
		}
		fc.Step(time.Millisecond)
	}
	eventually(t, "the delivery", func() bool { return s.countOf("on-rollout-paused", "hook", ResultSuccess) == 1 })
	if got := s.countOf("on-rollout-paused", "hook", ResultRetry); got != 3 {
		t.Errorf("retry count = %d, want 3", got)
	}
	got := fails.get()
	if len(got) != 3 {
		t.Fatalf("OnFailure called %d times, want 3", len(got))
	}
	for i, f := range got {
		if f.Final || f.Attempt != i+1 || f.Err.Error() != "refused: token ***" {
			t.Errorf("failure %d = %+v, want attempt %d, not final, the token hidden", i, f, i+1)
		}
	}
}

func TestSenderGivesUp(t *testing.T) {
	s, fails := newTestSender(t, SenderOptions{InitialBackoff: time.Millisecond, MaxAttempts: 2})
	if err := s.Enqueue(Delivery{Trigger: "t", Service: "hook", Send: func() error { return errors.New("500") }}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "giving up", func() bool { return s.countOf("t", "hook", ResultFailed) == 1 })
	got := fails.get()
	if len(got) != 2 || got[0].Final || !got[1].Final {
		t.Errorf("failures = %+v, want one to retry then a final one", got)
	}
	// A delivery that cannot succeed fails at once, without an attempt.
	if err := s.Enqueue(Delivery{Trigger: "t", Service: "gone", Permanent: errors.New("no service"), Send: func() error { t.Error("sent"); return nil }}); err != nil {
		t.Fatal(err)
	}
	if s.countOf("t", "gone", ResultFailed) != 1 || !fails.get()[2].Final {
		t.Errorf("a permanent failure is not counted and final at once: %+v", fails.get())
	}
}

// A destination that never answers holds back neither Enqueue nor other
// destinations; its own later deliveries wait, in order; a full queue
// refuses new deliveries, all of them.
func TestSenderSlowDestination(t *testing.T) {
	s, _ := newTestSender(t, SenderOptions{Capacity: 3, Concurrency: 1, AttemptTimeout: 10 * time.Millisecond})
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	record := func(what string) func() error {
		return func() error { mu.Lock(); order = append(order, what); mu.Unlock(); return nil }
	}
	slow := Delivery{Trigger: "t", Service: "slow", Send: func() error { <-release; return record("slow-1")() }}
	start := time.Now()
	if err := s.Enqueue(slow, Delivery{Trigger: "t", Service: "slow", Send: record("slow-2")}); err != nil {
		t.Fatal(err)
	}
	// Two more do not fit: neither is queued.
	err := s.Enqueue(Delivery{Trigger: "t", Service: "other", Send: record("other")}, Delivery{Trigger: "t", Service: "fast", Send: record("fast")})
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("Enqueue on a full queue = %v, want ErrQueueFull", err)
	}
	if s.countOf("t", "other", ResultDropped) != 1 || s.countOf("t", "fast", ResultDropped) != 1 {
		t.Error("the refused deliveries are not counted as dropped")
	}
	if err := s.Enqueue(Delivery{Trigger: "t", Service: "fast", Send: record("fast")}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Enqueue took %v", took)
	}
	// One concurrency slot: fast goes once the slow attempt times out.
	eventually(t, "the fast destination", func() bool { return s.countOf("t", "fast", ResultSuccess) == 1 })
	close(release)
	eventually(t, "the slow destination", func() bool { return s.countOf("t", "slow", ResultSuccess) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "fast,slow-1,slow-2" {
		t.Errorf("order = %v, want fast,slow-1,slow-2", order)
	}
}
