package trafficsim

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeseed/rollouts/test/podsim"
)

// Behaviour is how the pods of one image answer.
type Behaviour struct {
	// ErrorShare is the share of requests answered with 500, from 0 to 1.
	ErrorShare float64
	// MeanLatency, in seconds, makes the pods report latencies normally
	// distributed around it, with a standard deviation of a tenth of it;
	// zero reports none.
	MeanLatency float64
}

// A Profile decides which pods get traffic and how they answer. The
// simulator asks it every tick for every Ready pod, with the image of the
// pod's first container; pods it does not serve get no traffic and have no
// series.
type Profile interface {
	Behaviour(namespace, image string) (b Behaviour, served bool)
}

// Table is a Profile set at run time, per namespace and exact image, as the
// end-to-end tests do: each test serves its own namespace and breaks the
// versions it wants. Images without settings answer every request at once.
// It is safe for concurrent use; the zero value serves nothing.
type Table struct {
	mu sync.Mutex
	// images holds, per served namespace, the settings per image.
	images map[string]map[string]Behaviour
}

// Serve gives the pods of namespace traffic.
func (t *Table) Serve(namespace string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.namespace(namespace)
}

// Forget stops the traffic of namespace and drops its settings.
func (t *Table) Forget(namespace string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.images, namespace)
}

// SetErrorShare makes the pods of image in namespace answer this share of
// their requests with 500 from the next tick on (serving namespace).
func (t *Table) SetErrorShare(namespace, image string, share float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.namespace(namespace)[image]
	b.ErrorShare = share
	t.images[namespace][image] = b
}

// SetLatency makes the pods of image in namespace report latencies around
// mean seconds from the next tick on (serving namespace).
func (t *Table) SetLatency(namespace, image string, mean float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.namespace(namespace)[image]
	b.MeanLatency = mean
	t.images[namespace][image] = b
}

// Behaviour implements Profile.
func (t *Table) Behaviour(namespace, image string) (Behaviour, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	images, served := t.images[namespace]
	return images[image], served
}

// namespace returns the settings of a namespace, serving it. t.mu is held.
func (t *Table) namespace(ns string) map[string]Behaviour {
	if t.images == nil {
		t.images = map[string]map[string]Behaviour{}
	}
	if t.images[ns] == nil {
		t.images[ns] = map[string]Behaviour{}
	}
	return t.images[ns]
}

// Rules is a fixed Profile, as the demo's flags give it: the first rule
// whose pattern matches an image's tag decides how its pods answer; images
// no rule matches answer every request. Namespaces, when not empty, are the
// only ones served.
type Rules struct {
	Namespaces []string
	Rules      []Rule
}

// Rule gives the images whose tag matches Tag a Behaviour.
type Rule struct {
	// Tag is a path.Match pattern, such as "*bad*", matched against the
	// image's tag ("latest" for an image without one).
	Tag string
	Behaviour
}

// Behaviour implements Profile.
func (r Rules) Behaviour(namespace, image string) (Behaviour, bool) {
	if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, namespace) {
		return Behaviour{}, false
	}
	tag := podsim.Tag(image)
	for _, rule := range r.Rules {
		if ok, _ := path.Match(rule.Tag, tag); ok {
			return rule.Behaviour, true
		}
	}
	return Behaviour{}, true
}

// ParseRule reads a rule written as PATTERN:KEY=VALUE[,KEY=VALUE], where
// the keys are errors (a share such as 0.3 or 30%) and latency (a
// duration such as 250ms), e.g. "*bad*:errors=30%" or "*:latency=50ms".
func ParseRule(s string) (Rule, error) {
	pattern, settings, ok := strings.Cut(s, ":")
	if !ok || settings == "" {
		return Rule{}, fmt.Errorf("rule %q: want PATTERN:errors=SHARE,latency=DURATION", s)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return Rule{}, fmt.Errorf("rule %q: tag pattern %q: %w", s, pattern, err)
	}
	r := Rule{Tag: pattern}
	for setting := range strings.SplitSeq(settings, ",") {
		key, value, _ := strings.Cut(setting, "=")
		switch key {
		case "errors":
			share, err := parseShare(value)
			if err != nil {
				return Rule{}, fmt.Errorf("rule %q: errors: %w", s, err)
			}
			r.ErrorShare = share
		case "latency":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return Rule{}, fmt.Errorf("rule %q: latency %q: want a positive duration such as 250ms", s, value)
			}
			r.MeanLatency = d.Seconds()
		default:
			return Rule{}, fmt.Errorf("rule %q: unknown setting %q (want errors or latency)", s, key)
		}
	}
	return r, nil
}

// parseShare reads 0.3 or 30% as 0.3, refusing values outside [0, 1].
func parseShare(s string) (float64, error) {
	v, percent := strings.CutSuffix(s, "%")
	share, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if percent {
		share /= 100
	}
	if share < 0 || share > 1 {
		return 0, fmt.Errorf("%q is not between 0 and 1 (0 %% and 100 %%)", s)
	}
	return share, nil
}
