package rollout

import (
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// planServices points the strategy's Services at the right pods by injecting
// the hash label into their selectors: the stable Service at the stable
// revision, the canary Service at the current revision while an update runs
// (and back at the stable one once it is aborted or done). spec.paused
// freezes them.
func planServices(p *Plan, in Input, st *v1alpha1.RolloutStatus) {
	ro := in.Rollout
	c := ro.Spec.Strategy.Canary
	if ro.Spec.Paused || c == nil {
		return
	}
	canaryHash := st.CurrentPodHash
	if st.Abort || st.StableRS == st.CurrentPodHash {
		canaryHash = st.StableRS
	}
	for _, want := range []ServiceChange{{c.StableService, st.StableRS}, {c.CanaryService, canaryHash}} {
		if want.Name == "" || want.Hash == "" {
			continue
		}
		if svc := in.Services[want.Name]; svc != nil && svc.Spec.Selector[v1alpha1.PodTemplateHashLabel] != want.Hash {
			p.Services = append(p.Services, want)
		}
	}
}
