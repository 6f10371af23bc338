// Package crdvalidate checks custom resources against their CustomResourceDefinitions offline, the
// way kube-apiserver's apiextensions server does on create: unknown fields (pruning), structural
// defaulting, the OpenAPI schema (types, enums, patterns, bounds), list-type rules and the CRD's
// CEL rules (x-kubernetes-validations), with k8s.io/apiextensions-apiserver.
//
// Objects must be decoded with DecodeYAML (or k8s.io/apimachinery/pkg/util/json) so that integers
// stay int64: with float64 numbers the CEL rules fail with "expected int, got float64".
package crdvalidate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// Set holds the served versions of a set of CRDs.
type Set struct {
	CRDs     []*apiextv1.CustomResourceDefinition
	versions map[schema.GroupVersionKind]*version
}

type version struct {
	crd        string
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// LoadDir reads every *.yaml file in dir as one or more CustomResourceDefinitions.
func LoadDir(dir string) (*Set, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD files in %s", dir)
	}
	sort.Strings(files)
	s := &Set{versions: map[schema.GroupVersionKind]*version{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if j, err := yaml.YAMLToJSON(doc); err != nil || string(bytes.TrimSpace(j)) == "null" {
				continue // empty or comments only (a YAML error shows in the strict unmarshal below)
			}
			var crd apiextv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s: kind %q, want CustomResourceDefinition", f, crd.Kind)
			}
			if err := s.add(&crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	return s, nil
}

func (s *Set) add(crd *apiextv1.CustomResourceDefinition) error {
	s.CRDs = append(s.CRDs, crd)
	for i := range crd.Spec.Versions {
		v := &crd.Spec.Versions[i]
		if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return fmt.Errorf("%s %s: convert schema: %w", crd.Name, v.Name, err)
		}
		st, err := structuralschema.NewStructural(&internal)
		if err != nil {
			return fmt.Errorf("%s %s: structural schema: %w", crd.Name, v.Name, err)
		}
		sv, _, err := apiservervalidation.NewSchemaValidator(&internal)
		if err != nil {
			return fmt.Errorf("%s %s: schema validator: %w", crd.Name, v.Name, err)
		}
		gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
		s.versions[gvk] = &version{crd: crd.Name, structural: st, validator: sv, cel: cel.NewValidator(st, true, celconfig.PerCallLimit)}
	}
	return nil
}

// Has reports whether the set has a served version for gvk.
func (s *Set) Has(gvk schema.GroupVersionKind) bool { _, ok := s.versions[gvk]; return ok }

// Groups lists the API groups of the set's CRDs.
func (s *Set) Groups() map[string]bool {
	g := map[string]bool{}
	for _, c := range s.CRDs {
		g[c.Spec.Group] = true
	}
	return g
}

// DecodeYAML decodes one YAML document into a JSON object whose integers are int64.
func DecodeYAML(doc []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// Validate checks one custom resource. It does not modify obj (defaulting runs on a copy). The
// error lists every problem found: unknown fields, schema, list-type and CEL violations.
func (s *Set) Validate(ctx context.Context, obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return err
	}
	gvk := gv.WithKind(kind)
	v, ok := s.versions[gvk]
	if !ok {
		return fmt.Errorf("no CRD serves %s", gvk)
	}
	o := deepCopyJSON(obj)
	var msgs []string
	if unknown := pruning.PruneWithOptions(o, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(unknown) > 0 {
		sort.Strings(unknown)
		for _, u := range unknown {
			msgs = append(msgs, fmt.Sprintf("unknown field %q (not declared in the CRD schema)", u))
		}
	}
	if md, ok := o["metadata"].(map[string]any); ok {
		var bad []string
		for k := range md {
			if !objectMetaFields[k] {
				bad = append(bad, k)
			}
		}
		sort.Strings(bad)
		for _, k := range bad {
			msgs = append(msgs, fmt.Sprintf("unknown field %q", "metadata."+k))
		}
	}
	var errs field.ErrorList
	structuraldefaulting.Default(o, v.structural)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, o, v.validator)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, o)...)
	if len(errs) == 0 && len(msgs) == 0 { // CEL runs on a schema-valid object
		celErrs, _ := v.cel.Validate(ctx, nil, v.structural, o, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s (CRD %s): %s", gvk.Kind, v.crd, strings.Join(msgs, "; "))
}

// objectMetaFields are the fields of metav1.ObjectMeta in JSON.
var objectMetaFields = map[string]bool{
	"name": true, "generateName": true, "namespace": true, "selfLink": true, "uid": true,
	"resourceVersion": true, "generation": true, "creationTimestamp": true, "deletionTimestamp": true,
	"deletionGracePeriodSeconds": true, "labels": true, "annotations": true, "ownerReferences": true,
	"finalizers": true, "managedFields": true,
}

func deepCopyJSON(v map[string]any) map[string]any {
	return deepCopyValue(v).(map[string]any)
}

func deepCopyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopyValue(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopyValue(e)
		}
		return l
	default:
		return v
	}
}
