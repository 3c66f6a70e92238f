package main

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeseed/rollouts/test/load"
)

// split describes the requests of one period, for a person watching the
// demo: how many there were, the share each image answered (test/podsim's
// X-Image, the registry left out), the share no pod answered with the
// statuses they got instead, and the share of 5xx answers, such as
//
//	last 5s: 200 requests, 75.0 % answered by web:1, 25.0 % by web:2, 0.0 % 5xx
func split(period time.Duration, rs load.Results) string {
	head := fmt.Sprintf("last %s: %d requests", period, len(rs))
	if len(rs) == 0 {
		return head
	}
	type answerer struct {
		name     string
		n        int
		statuses []string
	}
	var by []*answerer
	fivexx := 0
	for _, r := range rs {
		name := r.Image[strings.LastIndex(r.Image, "/")+1:]
		if r.Image == "" {
			name = noPod
		}
		i := slices.IndexFunc(by, func(a *answerer) bool { return a.name == name })
		if i < 0 {
			i = len(by)
			by = append(by, &answerer{name: name})
		}
		by[i].n++
		if r.Image == "" {
			status := "no answer"
			if r.Status != 0 {
				status = strconv.Itoa(r.Status)
			}
			if !slices.Contains(by[i].statuses, status) {
				by[i].statuses = append(by[i].statuses, status)
			}
		}
		if r.Status >= 500 {
			fivexx++
		}
	}
	// The pods' images in name order, which is version order in the demo,
	// and requests no pod answered last.
	last := func(a *answerer) int {
		if a.name == noPod {
			return 1
		}
		return 0
	}
	slices.SortFunc(by, func(a, b *answerer) int { return cmp.Or(cmp.Compare(last(a), last(b)), cmp.Compare(a.name, b.name)) })
	parts := []string{head}
	for i, a := range by {
		verb := "by"
		if i == 0 {
			verb = "answered by"
		}
		part := fmt.Sprintf("%s %s %s", percent(a.n, len(rs)), verb, a.name)
		if len(a.statuses) > 0 {
			slices.Sort(a.statuses)
			part += " (" + strings.Join(a.statuses, ", ") + ")"
		}
		parts = append(parts, part)
	}
	parts = append(parts, percent(fivexx, len(rs))+" 5xx")
	return strings.Join(parts, ", ")
}

// noPod stands for the requests no pod answered: Traefik did (404 without
// a route, 502 or 503 without a backend), or nothing did.
const noPod = "no pod"

func percent(n, of int) string { return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of)) }
