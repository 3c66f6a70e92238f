package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	apiservercel "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/kubeseed/rollouts/manifests/crds"
	"github.com/kubeseed/rollouts/pkg/apis"
	"github.com/kubeseed/rollouts/pkg/apis/rollouts/v1alpha1"
)

// crdSchema is what the API server derives from one version of a CRD to
// validate a custom object.
type crdSchema struct {
	namespaced bool
	// status: with the status subresource a create ignores status.
	status     bool
	structural *structuralschema.Structural
	openAPI    apiservervalidation.SchemaValidator
	cel        *apiservercel.Validator
}

// crdSchemas are the schemas of the served versions of our CRDs.
type crdSchemas map[schema.GroupVersionKind]*crdSchema

// loadCRDSchemas builds the schemas from the CRDs embedded from
// manifests/crds once per process: compiling the CEL rules takes a moment.
var loadCRDSchemas = sync.OnceValues(func() (crdSchemas, error) { return newCRDSchemas(crds.FS) })

func newCRDSchemas(fsys fs.FS) (crdSchemas, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading the embedded CRDs: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("no CRDs embedded")
	}
	out := crdSchemas{}
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			return nil, fmt.Errorf("reading CRD %s: %w", f, err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			s, err := newCRDSchema(v.Schema.OpenAPIV3Schema)
			if err != nil {
				return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, v.Name, err)
			}
			s.namespaced = crd.Spec.Scope == apiextensionsv1.NamespaceScoped
			s.status = v.Subresources != nil && v.Subresources.Status != nil
			out[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = s
		}
	}
	return out, nil
}

// newCRDSchema prepares a schema the way the API server's CRD handler does.
func newCRDSchema(v1 *apiextensionsv1.JSONSchemaProps) (*crdSchema, error) {
	var props apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1, &props, nil); err != nil {
		return nil, err
	}
	s, err := structuralschema.NewStructural(&props)
	if err != nil {
		return nil, err
	}
	s = s.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		return nil, err
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(&props)
	if err != nil {
		return nil, err
	}
	return &crdSchema{structural: s, openAPI: validator, cel: apiservercel.NewValidator(s, true, celconfig.PerCallLimit)}, nil
}

// validateCustom checks one of our objects as the API server checks a create
// with strict field validation: unknown fields, then, after defaulting, the
// metadata, the OpenAPI schema, embedded metadata, list types and the CEL
// rules (which, as on the server, are skipped after a type error). The
// object is then decoded into its Go type for the checks that follow.
func (l *linter) validateCustom(o *lintObject) {
	if o.gvk.Group != v1alpha1.GroupVersion.Group {
		return
	}
	s := l.schemas[o.gvk]
	if s == nil {
		l.unknownKind(o)
		return
	}
	obj := runtime.DeepCopyJSON(o.raw)
	if s.status {
		delete(obj, "status")
	}
	meta, _, unknown, err := objectmeta.GetObjectMetaWithOptions(obj, objectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		l.problem(o, "metadata", "%v", err)
		return
	}
	unknown = append(unknown, pruning.PruneWithOptions(obj, s.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, s.structural)
	var errs field.ErrorList
	coerceErr, embeddedUnknown := objectmeta.CoerceWithOptions(nil, obj, s.structural, false, objectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if coerceErr != nil {
		errs = append(errs, coerceErr)
	}
	unknown = append(unknown, embeddedUnknown...)
	slices.Sort(unknown)
	for _, path := range unknown {
		l.add(o, path, fmt.Sprintf("unknown field %q", path))
	}
	structuraldefaulting.Default(obj, s.structural)

	if meta == nil {
		meta = &metav1.ObjectMeta{}
	}
	if s.namespaced && meta.Namespace == "" {
		meta.Namespace = "default" // kubectl fills in its namespace
	} else if !s.namespaced {
		meta.Namespace = "" // the API server drops it on cluster-scoped objects
	}
	errs = append(errs, apivalidation.ValidateObjectMeta(meta, s.namespaced, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, s.openAPI)...)
	errs = append(errs, objectmeta.Validate(context.Background(), nil, obj, s.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, obj)...)
	blocked := slices.ContainsFunc(errs, func(e *field.Error) bool {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
		return false
	})
	if !blocked {
		celErrs, _ := s.cel.Validate(context.Background(), nil, s.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	for _, e := range errs {
		msg := e.Error()
		if e.Field == "" {
			msg = e.ErrorBody()
		}
		l.add(o, e.Field, msg)
	}
	if blocked {
		l.add(o, "", "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")
	}
	o.typed = decodeTyped(o.gvk, obj)
}

// unknownKind reports a kind or version of our group the plugin does not
// know, with kubectl's words and what it does know.
func (l *linter) unknownKind(o *lintObject) {
	var kinds, versions []string
	for gvk := range l.schemas {
		kinds = append(kinds, gvk.Kind)
		if gvk.Kind == o.gvk.Kind {
			versions = append(versions, gvk.GroupVersion().String())
		}
	}
	msg := fmt.Sprintf("no matches for kind %q in version %q", o.gvk.Kind, o.gvk.GroupVersion())
	if len(versions) > 0 {
		slices.Sort(versions)
		l.add(o, "apiVersion", fmt.Sprintf("%s: use apiVersion %s", msg, strings.Join(versions, " or ")))
		return
	}
	slices.Sort(kinds)
	l.add(o, "kind", fmt.Sprintf("%s: the kinds are %s", msg, strings.Join(slices.Compact(kinds), ", ")))
}

var lintScheme = apis.NewScheme()

// decodeTyped decodes a (defaulted) object into the Go type of its kind, or
// returns nil when the scheme lacks the kind or the object does not fit.
func decodeTyped(gvk schema.GroupVersionKind, obj map[string]any) any {
	typed, err := lintScheme.New(gvk)
	if err != nil {
		return nil
	}
	raw, err := json.Marshal(obj)
	if err != nil || json.Unmarshal(raw, typed) != nil {
		return nil
	}
	typed.GetObjectKind().SetGroupVersionKind(gvk)
	return typed
}
