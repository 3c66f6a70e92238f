package rollout

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestSequenceRestartAt(t *testing.T) {
	s := newSim(t, canaryRollout(5, "0", "2", setWeight(50), pause("")))
	s.until("Healthy", 10, healthyPhase)
	s.wait(2)
	at := metav1.NewTime(s.now)
	s.ro.Spec.RestartAt = &at
	s.say("user: restartAt now")
	s.until("restarted", 30, func(st v1alpha1.RolloutStatus) bool { return st.RestartedAt != nil })
	if len(s.evicted) != 5 {
		t.Errorf("%d pods evicted, want 5: %v", len(s.evicted), s.evicted)
	}
	for _, pod := range s.allPods() {
		if pod.CreationTimestamp.Before(&at) {
			t.Errorf("pod %s from before restartAt survived", pod.Name)
		}
	}
	s.until("Healthy", 10, healthyPhase)
	// The same restartAt again does nothing.
	s.evicted = nil
	s.wait(3)
	if len(s.evicted) != 0 {
		t.Errorf("a completed restart evicted %v", s.evicted)
	}
	s.golden()
}
