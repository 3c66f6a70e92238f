package dashboard

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

func TestThresholds(t *testing.T) {
	got := append(thresholds("success", "result[0] < 0.05 && result[0] >= -1"), thresholds("failure", "result > 2e3")...)
	want := []Threshold{{"success", 0.05}, {"success", -1}, {"failure", 2000}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("thresholds (-want +got):\n%s", diff)
	}
	if got := thresholds("success", "result.status == 'ok'"); len(got) != 0 {
		t.Errorf("a condition without a number gave %v", got)
	}
}

func TestNumber(t *testing.T) {
	for v, want := range map[string]*float64{
		"0.25":                  ptr.To(0.25),
		"[0.23076923076923078]": ptr.To(0.23076923076923078),
		"[1, 2]":                nil,
		`{"score":75,"classification":"Marginal"}`: ptr.To(75.0),
		"ok": nil,
		"":   nil,
	} {
		if diff := cmp.Diff(want, number(v)); diff != "" {
			t.Errorf("number(%q) (-want +got):\n%s", v, diff)
		}
	}
}

func TestStepText(t *testing.T) {
	d, secs := intstr.FromString("30s"), intstr.FromInt32(45)
	for _, c := range []struct {
		step v1alpha1.CanaryStep
		want string
	}{
		{v1alpha1.CanaryStep{SetWeight: ptr.To[int32](20)}, "setWeight 20"},
		{v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{}}, "pause until promoted"},
		{v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{Duration: &d}}, "pause 30s"},
		{v1alpha1.CanaryStep{Pause: &v1alpha1.RolloutPause{Duration: &secs}}, "pause 45s"},
		{v1alpha1.CanaryStep{SetCanaryScale: &v1alpha1.SetCanaryScale{Replicas: ptr.To[int32](2)}}, "setCanaryScale 2 replicas"},
	} {
		if _, got := stepText(c.step); got != c.want {
			t.Errorf("stepText = %q, want %q", got, c.want)
		}
	}
}

func TestHosts(t *testing.T) {
	for addr, want := range map[string][]string{
		"127.0.0.1:3100": {"127.0.0.1:3100", "localhost:3100"},
		"[::1]:3100":     {"[::1]:3100", "localhost:3100"},
		"0.0.0.0:3100":   nil,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, Hosts(a)); diff != "" {
			t.Errorf("Hosts(%s) (-want +got):\n%s", addr, diff)
		}
	}
}
