//go:build integration

package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestIntegrationLintSpeaksForTheAPIServer sends every object of our group
// in the lint corpus and the examples to a real API server (a dry-run create
// with strict field validation, as kubectl apply does) and holds lint's
// schema and CEL findings to what the server says: lint finds nothing where
// the server accepts, and each of its messages is one the server gives. The
// server stops at unknown fields; then only those are compared.
func TestIntegrationLintSpeaksForTheAPIServer(t *testing.T) {
	schemas, err := loadCRDSchemas()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "lint", "*", "*.yaml"))
	examples, _ := filepath.Glob(filepath.Join("..", "..", "manifests", "examples", "*.yaml"))
	ns := env.Namespace(t)
	for _, f := range append(files, examples...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l := &linter{schemas: schemas}
		l.read(f, data)
		for _, o := range l.objects {
			if _, ok := schemas[o.gvk]; !ok {
				continue
			}
			l.problems = nil
			l.validateCustom(o)
			var unknown, others, all []string
			for _, p := range l.problems {
				all = append(all, p.String())
				if strings.HasPrefix(p.message, "unknown field ") {
					unknown = append(unknown, p.message)
				} else {
					others = append(others, p.message)
				}
			}
			u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(o.raw)}
			if o.gvk.Kind == "ClusterAnalysisTemplate" {
				u.SetName(ns + "-" + u.GetName())
			} else {
				u.SetNamespace(ns)
			}
			err := env.Client.Create(context.Background(), u, client.DryRunAll, client.FieldValidation("Strict"))
			want := others
			if len(unknown) > 0 {
				want = unknown
			}
			switch {
			case err == nil && len(l.problems) > 0:
				t.Errorf("%s %s: the API server accepts it, lint says:\n%s", f, o, strings.Join(all, "\n"))
			case err != nil && len(l.problems) == 0:
				t.Errorf("%s %s: lint finds nothing, the API server says: %v", f, o, err)
			}
			for _, msg := range want {
				if err != nil && !strings.Contains(err.Error(), msg) {
					t.Errorf("%s %s: lint says %q; the API server says: %v", f, o, msg, err)
				}
			}
		}
	}
}
