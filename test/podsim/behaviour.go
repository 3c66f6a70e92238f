package podsim

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Behaviour is how the pods of an image answer. The zero value answers
// every request at once with 200.
type Behaviour struct {
	// ErrorShare is the share of requests answered with 500, from 0 to 1.
	ErrorShare float64
	// Latency is how long every answer waits.
	Latency time.Duration
}

const (
	// defaultErrorShare is what "bad" without a number fails: the demo's
	// bad releases (web:3-bad) have always failed 30 %.
	defaultErrorShare = 0.3
	// defaultLatency is what "slow" without a duration adds.
	defaultLatency = 100 * time.Millisecond
)

// ParseImage reads the behaviour of an image from its tag, a list of words
// joined by "-". Two words have a meaning, each optionally followed by its
// value as the next word:
//
//	bad [PERCENT]    answer PERCENT % of requests with 500 (default 30)
//	slow [DURATION]  wait DURATION before every answer (default 100ms)
//
// so web:bad-30, web:3-bad, web:slow-200ms and web:2-bad-5-slow-50ms all
// work; other words (versions) are ignored, and web:1 answers every request.
func ParseImage(image string) (Behaviour, error) {
	var b Behaviour
	words := strings.Split(Tag(image), "-")
	for i := 0; i < len(words); i++ {
		next := ""
		if i+1 < len(words) {
			next = words[i+1]
		}
		switch words[i] {
		case "bad":
			b.ErrorShare = defaultErrorShare
			if percent, err := strconv.ParseFloat(next, 64); err == nil {
				if !(percent <= 100) { // and NaN; never negative, as "-" separates the words
					return Behaviour{}, fmt.Errorf("image %s: bad-%s: want a percentage from 0 to 100", image, next)
				}
				b.ErrorShare = percent / 100
				i++
			}
		case "slow":
			b.Latency = defaultLatency
			// "-" separates the words, so d is never negative.
			if d, err := time.ParseDuration(next); err == nil {
				b.Latency = d
				i++
			}
		}
	}
	return b, nil
}

// Tag is the tag of an image reference: "3" for registry:5000/web:3,
// "latest" when it has none. A digest is not a tag.
func Tag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	name := image[strings.LastIndex(image, "/")+1:]
	if _, tag, ok := strings.Cut(name, ":"); ok {
		return tag
	}
	return "latest"
}

// SetBehaviour makes the pods of image in namespace answer as b from their
// next request on, whatever the image's tag says: the application starting
// to fail or to slow down, as tests need it at a moment of their choosing.
func (s *Simulator) SetBehaviour(namespace, image string, b Behaviour) error {
	if !(b.ErrorShare >= 0 && b.ErrorShare <= 1) || b.Latency < 0 {
		return fmt.Errorf("behaviour %+v of %s in %s: want an error share from 0 to 1 and a latency of at least 0", b, image, namespace)
	}
	s.overrides.set(namespace, image, b)
	s.log.Info("Behaviour set", "namespace", namespace, "image", image, "errorShare", b.ErrorShare, "latency", b.Latency.String())
	return nil
}

// ResetBehaviours drops the behaviours set for namespace: its pods answer
// as their images' tags say again.
func (s *Simulator) ResetBehaviours(namespace string) {
	s.overrides.reset(namespace)
	s.log.Info("Behaviours reset", "namespace", namespace)
}

// overrides are the behaviours set per namespace and image.
type overrides struct {
	mu sync.RWMutex
	m  map[string]map[string]Behaviour
}

func (o *overrides) set(namespace, image string, b Behaviour) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]map[string]Behaviour{}
	}
	if o.m[namespace] == nil {
		o.m[namespace] = map[string]Behaviour{}
	}
	o.m[namespace][image] = b
}

func (o *overrides) reset(namespace string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, namespace)
}

// get is the behaviour set for image in namespace, or tag's.
func (o *overrides) get(namespace, image string, tag Behaviour) Behaviour {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if b, ok := o.m[namespace][image]; ok {
		return b
	}
	return tag
}
