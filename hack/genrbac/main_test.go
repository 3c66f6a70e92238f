package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestNamespaceRules(t *testing.T) {
	scoped := map[string]bool{"clusteranalysistemplates.rollouts.kubeseed.io": true}
	rule := func(group string, resources ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: resources, Verbs: []string{"get"}}
	}
	for _, tc := range []struct {
		name    string
		in      []rbacv1.PolicyRule
		want    []rbacv1.PolicyRule
		wantErr bool
	}{{
		name: "cluster-scoped rule dropped, order kept",
		in:   []rbacv1.PolicyRule{rule("apps", "replicasets"), rule("rollouts.kubeseed.io", "clusteranalysistemplates"), rule("", "pods")},
		want: []rbacv1.PolicyRule{rule("apps", "replicasets"), rule("", "pods")},
	}, {
		name: "subresource of a cluster-scoped resource dropped",
		in:   []rbacv1.PolicyRule{rule("rollouts.kubeseed.io", "clusteranalysistemplates/status")},
	}, {
		name: "same plural in another group kept",
		in:   []rbacv1.PolicyRule{rule("example.com", "clusteranalysistemplates")},
		want: []rbacv1.PolicyRule{rule("example.com", "clusteranalysistemplates")},
	}, {
		name: "non-resource URLs dropped",
		in:   []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}, {
		name:    "mixed rule refused",
		in:      []rbacv1.PolicyRule{rule("rollouts.kubeseed.io", "analysistemplates", "clusteranalysistemplates")},
		wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := namespaceRules(tc.in, scoped)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %t", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}
