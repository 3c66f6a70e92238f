//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// access is what one API request does: a verb on a resource (or
// resource/subresource) of an API group.
type access struct{ verb, group, resource string }

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		base, sub, ok := strings.Cut(r, "/")
		r = base + "." + a.group
		if ok {
			r += "/" + sub
		}
	}
	return a.verb + " " + r
}

// keptPrefix starts the comment above a rule the e2e run does not use but
// the controller needs; the rest of the comment says why.
const keptPrefix = "Kept:"

// grants expands the rules of a Role or ClusterRole manifest into the
// accesses they grant, each with the reason it is kept when its rule has a
// "# Kept: why" comment. Non-resource rules are left out.
func grants(path string) (map[access]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var rules *yaml.Node
	if root := doc.Content; len(root) == 1 && root[0].Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root[0].Content); i += 2 {
			if root[0].Content[i].Value == "rules" {
				rules = root[0].Content[i+1]
			}
		}
	}
	if rules == nil {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	out := map[access]string{}
	for _, n := range rules.Content {
		var r struct {
			APIGroups []string `yaml:"apiGroups"`
			Resources []string `yaml:"resources"`
			Verbs     []string `yaml:"verbs"`
		}
		if err := n.Decode(&r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n.Line, err)
		}
		kept := keptReason(n)
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[access{v, g, res}] = kept
				}
			}
		}
	}
	return out, nil
}

// keptReason is the text after "Kept:" in the comment above a rule.
func keptReason(n *yaml.Node) string {
	comment := n.HeadComment
	if len(n.Content) > 0 {
		comment += "\n" + n.Content[0].HeadComment
	}
	for _, line := range strings.Split(comment, "\n") {
		if _, why, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#")), keptPrefix); ok {
			return strings.TrimSpace(why)
		}
	}
	return ""
}

// auditedAccesses reads the audit log and returns the accesses of each
// user the audit policy logged, with one example request of each.
func auditedAccesses(path string) (map[string]map[access]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	out := map[string]map[access]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			User      struct{ Username string } `json:"user"`
			Verb      string                    `json:"verb"`
			URI       string                    `json:"requestURI"`
			ObjectRef *struct {
				APIGroup    string `json:"apiGroup"`
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// Discovery (/api, /apis, /version) is every authenticated user's.
		if e.ObjectRef == nil || e.ObjectRef.Resource == "" {
			continue
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		if out[e.User.Username] == nil {
			out[e.User.Username] = map[access]string{}
		}
		a := access{e.Verb, e.ObjectRef.APIGroup, res}
		if _, seen := out[e.User.Username][a]; !seen {
			out[e.User.Username][a] = e.URI
		}
	}
	return out, sc.Err()
}

// checkRBACAgainstAudit compares what the controllers of the run did, as
// the API server's audit log saw it, with what the manifests grant them:
// every request must be granted, and every access the ClusterRole grants
// must have been used, or its rule carry a "# Kept: why" comment. The
// namespaced controllers are held to the namespaced Role; the Role is the
// ClusterRole's rules (hack/genrbac), so unused rules show up in cluster mode.
// Only a complete run (every test) can show a rule unused.
func checkRBACAgainstAudit(logPath string, complete bool) error {
	root := cl.Root
	clusterRole, err := grants(filepath.Join(root, "manifests", "rbac", "cluster", "cluster_role.yaml"))
	if err != nil {
		return err
	}
	role, err := grants(filepath.Join(root, "manifests", "namespaced", "role.yaml"))
	if err != nil {
		return err
	}
	leader, err := grants(filepath.Join(root, "manifests", "rbac", "common", "leader_election_role.yaml"))
	if err != nil {
		return err
	}
	notify, err := grants(filepath.Join(root, "manifests", "rbac", "common", "notifications_role.yaml"))
	if err != nil {
		return err
	}
	used, err := auditedAccesses(logPath)
	if err != nil {
		return err
	}
	clusterUser := fmt.Sprintf("system:serviceaccount:%s:%s", controllerNS, controllerSA)
	if len(used[clusterUser]) == 0 {
		return fmt.Errorf("the audit log %s holds no request of %s", logPath, clusterUser)
	}
	var problems []string
	check := func(user string, granted ...map[access]string) map[access]bool {
		seen := map[access]bool{}
		for a, example := range used[user] {
			seen[a] = true
			if !slices.ContainsFunc(granted, func(g map[access]string) bool { _, ok := g[a]; return ok }) {
				problems = append(problems, fmt.Sprintf("%s used %s (e.g. %s), which its RBAC does not grant", user, a, example))
			}
		}
		return seen
	}
	seen := check(clusterUser, clusterRole, leader, notify)
	namespaced := 0
	for user := range used {
		ns, ok := strings.CutPrefix(user, "system:serviceaccount:")
		if !ok || !strings.HasSuffix(ns, ":"+controllerSA) || user == clusterUser {
			continue
		}
		namespaced++
		check(user, role, leader, notify)
	}
	var unused []string
	for _, g := range []map[access]string{clusterRole, leader, notify} {
		for a, kept := range g {
			if !seen[a] && kept == "" {
				unused = append(unused, fmt.Sprintf("granted but never used: %s (prune it, or say why it is kept with a %q comment above its rule)", a, "# "+keptPrefix))
			}
		}
	}
	if !complete {
		if len(unused) > 0 {
			slices.Sort(unused)
			fmt.Fprintf(os.Stderr, "e2e: a run of some tests cannot show a rule unused; these were not used by this one:\n%s\n", strings.Join(unused, "\n"))
		}
		return problemsErr(problems)
	}
	if namespaced == 0 {
		problems = append(problems, "no namespaced controller's request in the audit log")
	}
	return problemsErr(append(problems, unused...))
}

func problemsErr(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	slices.Sort(problems)
	return errors.New(strings.Join(problems, "\n"))
}
