package v1alpha1

import (
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Duration is a Go duration string such as "30s", "5m" or "1h30m".
// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$`
type Duration string

// Parse returns the duration; the empty Duration is zero.
func (d Duration) Parse() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", string(d), err)
	}
	return v, nil
}

// ParseSecondsOrDuration reads an integer number of seconds or a Go duration
// string, as accepted by a pause step.
func ParseSecondsOrDuration(v intstr.IntOrString) (time.Duration, error) {
	if v.Type == intstr.Int {
		return time.Duration(v.IntVal) * time.Second, nil
	}
	if n, err := strconv.Atoi(v.StrVal); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return Duration(v.StrVal).Parse()
}
