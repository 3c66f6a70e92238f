//go:build soak

package soak

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"time"
)

// config is what a run is made of. Everything random in the run draws from
// seed, through one stream per purpose (streams), so that a replay with the
// same seed, duration and fleet size makes the same fleet, the same
// schedule for every Rollout and the same fault plan (kill times, outage
// windows, and the same sequence of proxy decisions). What no seed fixes is
// the interleaving of those with the cluster's own timing.
type config struct {
	seed     uint64
	duration time.Duration
	rollouts int

	// writeFaults is the share of writes (POST, PUT, PATCH, DELETE) of the
	// controller that the API proxy answers itself with 409, 500 or 503.
	writeFaults float64
	// delayShare of the controller's other requests wait up to maxDelay.
	delayShare float64
	maxDelay   time.Duration
	// watchLife is the mean lifetime of a watch before the proxy drops it.
	watchLife time.Duration
	// cutEvery is the mean time between cuts of the controller's connections.
	cutEvery time.Duration
	// settle bounds the wait for the end state once the faults stop.
	settle time.Duration
}

// Environment knobs; `make soak` passes SEED, SOAK_DURATION and
// SOAK_ROLLOUTS through.
const (
	envSeed        = "SOAK_SEED"
	envDuration    = "SOAK_DURATION"
	envRollouts    = "SOAK_ROLLOUTS"
	envWriteFaults = "SOAK_WRITE_FAULTS"
	envDelayShare  = "SOAK_DELAY_SHARE"
	envWatchLife   = "SOAK_WATCH_LIFE"
	envCutEvery    = "SOAK_CUT_EVERY"
	envSettle      = "SOAK_SETTLE"
)

func loadConfig() (config, error) {
	c := config{
		duration:    20 * time.Minute,
		rollouts:    50,
		writeFaults: 0.05,
		delayShare:  0.10,
		maxDelay:    time.Second,
		watchLife:   30 * time.Second,
		cutEvery:    45 * time.Second,
		settle:      5 * time.Minute,
	}
	var err error
	if c.seed, err = seedFromEnv(); err != nil {
		return c, err
	}
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{{envDuration, &c.duration}, {envWatchLife, &c.watchLife}, {envCutEvery, &c.cutEvery}, {envSettle, &c.settle}} {
		if v := os.Getenv(d.env); v != "" {
			if *d.to, err = time.ParseDuration(v); err != nil || *d.to <= 0 {
				return c, fmt.Errorf("%s=%q: want a positive Go duration", d.env, v)
			}
		}
	}
	if v := os.Getenv(envRollouts); v != "" {
		if c.rollouts, err = strconv.Atoi(v); err != nil || c.rollouts < 3 {
			return c, fmt.Errorf("%s=%q: want an integer of at least 3 (one Rollout of each kind)", envRollouts, v)
		}
	}
	for _, s := range []struct {
		env string
		to  *float64
	}{{envWriteFaults, &c.writeFaults}, {envDelayShare, &c.delayShare}} {
		if v := os.Getenv(s.env); v != "" {
			if *s.to, err = strconv.ParseFloat(v, 64); err != nil || *s.to < 0 || *s.to > 1 {
				return c, fmt.Errorf("%s=%q: want a share between 0 and 1", s.env, v)
			}
		}
	}
	return c, nil
}

func seedFromEnv() (uint64, error) {
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: want an unsigned integer", envSeed, v)
		}
		return s, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	// Kept below 2^53 so that it survives any tool that reads it as a float.
	return binary.LittleEndian.Uint64(b[:]) & (1<<53 - 1), nil
}

// replay is the command that runs this configuration again.
func (c config) replay() string {
	return fmt.Sprintf("make soak SEED=%d SOAK_DURATION=%s SOAK_ROLLOUTS=%d", c.seed, c.duration, c.rollouts)
}

// Streams of randomness, one per purpose, so that adding draws to one
// purpose leaves the others' sequences as they were.
const (
	streamFleet uint64 = iota + 1
	streamKills
	streamProxy
	streamPrometheusOutages
	streamWebOutages
	streamCuts
	// streamSchedule is the first of one stream per Rollout.
	streamSchedule = 1000
)

func (c config) rng(stream uint64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(c.seed, stream))
}

// kills is how many times the controller is killed: at least 20 in 20
// minutes, in proportion to the duration, and at least once.
func (c config) kills() int {
	return max(1, int(math.Ceil(c.duration.Minutes()*1.2)))
}

// uniform is a duration drawn uniformly from [lo, hi).
func uniform(r *mrand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// exponential is a duration drawn from the exponential distribution of the
// given mean: the gaps of events that happen at random moments.
func exponential(r *mrand.Rand, mean time.Duration) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(mean))
}
