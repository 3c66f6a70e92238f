package podsim

import (
	"fmt"
	"strconv"
	"strings"
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
