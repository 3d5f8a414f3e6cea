package main

// Custom resources (the operator kinds the prod overlay expects: RabbitmqCluster,
// MongoDBCommunity). They are not in k8s.io/api, so they are checked against the
// CustomResourceDefinitions in crds/, embedded in the binary. Those CRDs are NOT the
// operators' published ones (which cannot be fetched here): they are minimal subsets,
// written by hand from the operators' documented APIs, of exactly the fields this
// project uses. A field outside a subset therefore fails here even where the real CRD
// would accept it; what passes uses only field names, types and values the real CRDs
// define. Checked as the API server checks a custom resource under
// `--validate=strict`: unknown fields (outside x-kubernetes-preserve-unknown-fields)
// are errors, so are wrong types, missing required fields, values outside an enum,
// a pattern or a range.
//
// One keyword is this checker's own: x-k8scheck-go-type names the core API type the
// real CRD embeds the generated schema of (e.g. Affinity, ResourceRequirements); the
// value is decoded strictly into that Go type instead of being described twice.

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// jsonSchema is the part of OpenAPI v3 a CRD schema may use here. Decoding a CRD is
// strict: a keyword this checker does not implement fails at load instead of being
// silently ignored.
type jsonSchema struct {
	Type                 string                 `json:"type,omitempty"`
	Description          string                 `json:"description,omitempty"`
	Properties           map[string]*jsonSchema `json:"properties,omitempty"`
	AdditionalProperties *jsonSchema            `json:"additionalProperties,omitempty"`
	Items                *jsonSchema            `json:"items,omitempty"`
	Required             []string               `json:"required,omitempty"`
	Enum                 []any                  `json:"enum,omitempty"`
	Pattern              string                 `json:"pattern,omitempty"`
	Format               string                 `json:"format,omitempty"`
	Minimum              *float64               `json:"minimum,omitempty"`
	Maximum              *float64               `json:"maximum,omitempty"`
	MinLength            *int                   `json:"minLength,omitempty"`
	MaxLength            *int                   `json:"maxLength,omitempty"`
	MinItems             *int                   `json:"minItems,omitempty"`
	MaxItems             *int                   `json:"maxItems,omitempty"`
	Default              any                    `json:"default,omitempty"`
	PreserveUnknown      bool                   `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
	IntOrString          bool                   `json:"x-kubernetes-int-or-string,omitempty"`
	GoType               string                 `json:"x-k8scheck-go-type,omitempty"`
}

type crd struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			ListKind   string   `json:"listKind,omitempty"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular,omitempty"`
			ShortNames []string `json:"shortNames,omitempty"`
		} `json:"names"`
		Scope    string `json:"scope"`
		Versions []struct {
			Name    string `json:"name"`
			Served  bool   `json:"served"`
			Storage bool   `json:"storage"`
			Schema  struct {
				OpenAPIV3Schema *jsonSchema `json:"openAPIV3Schema"`
			} `json:"schema"`
			Subresources map[string]any `json:"subresources,omitempty"`
		} `json:"versions"`
	} `json:"spec"`
}

type customKind struct {
	namespaced bool
	schema     *jsonSchema
	source     string
}

// goTypes: the core types a vendored schema may delegate to (x-k8scheck-go-type).
var goTypes = map[string]func() any{
	"Affinity":              func() any { return &corev1.Affinity{} },
	"ResourceRequirements":  func() any { return &corev1.ResourceRequirements{} },
	"Tolerations":           func() any { return &[]corev1.Toleration{} },
	"LocalObjectReferences": func() any { return &[]corev1.LocalObjectReference{} },
	"StatefulSetSpec":       func() any { return &appsv1.StatefulSetSpec{} },
}

// loadCustomKinds reads the embedded CRDs; an error here is a bug in crds/.
func loadCustomKinds() (map[schema.GroupVersionKind]*customKind, error) {
	kinds := map[schema.GroupVersionKind]*customKind{}
	err := fs.WalkDir(crdFiles, "crds", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := crdFiles.ReadFile(path)
		if err != nil {
			return err
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if err != nil {
				break
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			var c crd
			strictErrs, err := kjson.UnmarshalStrict(js, &c, kjson.DisallowUnknownFields)
			if err == nil && len(strictErrs) > 0 {
				err = strictErrs[0]
			}
			if err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			if c.APIVersion != "apiextensions.k8s.io/v1" || c.Kind != "CustomResourceDefinition" {
				return fmt.Errorf("%s: not an apiextensions.k8s.io/v1 CustomResourceDefinition", path)
			}
			for _, v := range c.Spec.Versions {
				if !v.Served || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				if err := checkSchema(v.Schema.OpenAPIV3Schema, "openAPIV3Schema"); err != nil {
					return fmt.Errorf("%s: %s: %v", path, v.Name, err)
				}
				gvk := schema.GroupVersionKind{Group: c.Spec.Group, Version: v.Name, Kind: c.Spec.Names.Kind}
				kinds[gvk] = &customKind{c.Spec.Scope == "Namespaced", v.Schema.OpenAPIV3Schema, path}
			}
		}
		return nil
	})
	return kinds, err
}

// checkSchema rejects schemas this checker would misread.
func checkSchema(s *jsonSchema, path string) error {
	if s.GoType != "" {
		if goTypes[s.GoType] == nil {
			return fmt.Errorf("%s: x-k8scheck-go-type %q is not one of the known core types", path, s.GoType)
		}
		return nil
	}
	switch s.Type {
	case "object", "array", "string", "integer", "number", "boolean":
	case "":
		if !s.IntOrString && !s.PreserveUnknown {
			return fmt.Errorf("%s: type is required (structural schema)", path)
		}
	default:
		return fmt.Errorf("%s: type %q", path, s.Type)
	}
	if s.Pattern != "" {
		if _, err := regexp.Compile(s.Pattern); err != nil {
			return fmt.Errorf("%s: pattern: %v", path, err)
		}
	}
	for _, k := range sortedKeys(s.Properties) {
		if err := checkSchema(s.Properties[k], path+"."+k); err != nil {
			return err
		}
	}
	if s.Items != nil {
		if err := checkSchema(s.Items, path+"[]"); err != nil {
			return err
		}
	}
	if s.AdditionalProperties != nil {
		return checkSchema(s.AdditionalProperties, path+".*")
	}
	return nil
}

// decodeCustom checks a document of a custom kind against its schema.
func decodeCustom(o *object, ck *customKind, js []byte) {
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		o.fail("not a JSON object: %v", err)
		return
	}
	if !ck.namespaced && o.ns != "" {
		o.fail("metadata.namespace: %s is cluster-scoped", o.gvk.Kind)
	}
	// metadata is ObjectMeta for every kind, whatever the CRD says
	if raw, ok := v["metadata"]; ok {
		mjs, _ := json.Marshal(raw)
		var meta metav1.ObjectMeta
		strictErrs, err := kjson.UnmarshalStrict(mjs, &meta, kjson.DisallowUnknownFields)
		if err != nil {
			o.fail("metadata: %v", err)
		}
		for _, e := range strictErrs {
			o.fail("metadata: strict decoding: %v", e)
		}
		checkMeta(o, &meta)
	} else {
		o.fail("metadata: required")
	}
	rest := map[string]any{}
	for k, val := range v {
		if k != "apiVersion" && k != "kind" && k != "metadata" {
			rest[k] = val
		}
	}
	top := *ck.schema
	props := map[string]*jsonSchema{}
	for k, p := range top.Properties {
		if k != "apiVersion" && k != "kind" && k != "metadata" {
			props[k] = p
		}
	}
	top.Properties = props
	validateValue(o, "", rest, &top)
}

// validateValue checks v against s; path names v in messages ("" is the document).
func validateValue(o *object, path string, v any, s *jsonSchema) {
	at := path
	if at == "" {
		at = "(root)"
	}
	switch {
	case s.GoType != "":
		validateGoType(o, at, v, s.GoType)
		return
	case s.IntOrString:
		validateIntOrString(o, at, v, s)
		return
	}
	var ok bool
	switch s.Type {
	case "object":
		ok = validateObject(o, path, at, v, s)
	case "array":
		ok = validateArray(o, at, v, s)
	case "string":
		ok = validateString(o, at, v, s)
	case "integer", "number":
		ok = validateNumber(o, at, v, s)
	case "boolean":
		_, ok = v.(bool)
		if !ok {
			o.fail("%s: want a boolean, got %s", at, jsonKind(v))
		}
	default: // no type: preserve-unknown-fields, anything goes
		ok = true
	}
	if ok && len(s.Enum) > 0 && !inEnum(v, s.Enum) {
		o.fail("%s: %v is not one of %v", at, v, s.Enum)
	}
}

// validateGoType: the value decodes strictly into the core type the real CRD embeds.
func validateGoType(o *object, at string, v any, goType string) {
	js, _ := json.Marshal(v)
	strictErrs, err := kjson.UnmarshalStrict(js, goTypes[goType](), kjson.DisallowUnknownFields)
	if err != nil {
		o.fail("%s: does not match the %s type: %v", at, goType, err)
	}
	for _, e := range strictErrs {
		o.fail("%s: strict decoding (%s): %v", at, goType, e)
	}
}

func validateIntOrString(o *object, at string, v any, s *jsonSchema) {
	switch x := v.(type) {
	case string:
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(x) {
			o.fail("%s: %q does not match %s", at, x, s.Pattern)
		}
	case json.Number:
		if _, err := x.Int64(); err != nil {
			o.fail("%s: %v is neither an integer nor a string", at, x)
		}
	default:
		o.fail("%s: want an integer or a string, got %s", at, jsonKind(v))
	}
}

// validateObject: required fields, known fields (what pruning would drop is an error
// under strict validation), each field against its schema.
func validateObject(o *object, path, at string, v any, s *jsonSchema) bool {
	m, ok := v.(map[string]any)
	if !ok {
		o.fail("%s: want an object, got %s", at, jsonKind(v))
		return false
	}
	for _, r := range s.Required {
		if _, ok := m[r]; !ok {
			o.fail("%s: required field %q missing", at, r)
		}
	}
	for _, k := range sortedKeys(m) {
		sub := join(path, k)
		if p, ok := s.Properties[k]; ok {
			validateValue(o, sub, m[k], p)
		} else if s.AdditionalProperties != nil {
			validateValue(o, sub, m[k], s.AdditionalProperties)
		} else if !s.PreserveUnknown {
			o.fail("%s: unknown field (the schema has %s)", sub, strings.Join(sortedKeys(s.Properties), ", "))
		}
	}
	return true
}

func validateArray(o *object, at string, v any, s *jsonSchema) bool {
	a, ok := v.([]any)
	if !ok {
		o.fail("%s: want an array, got %s", at, jsonKind(v))
		return false
	}
	if s.MinItems != nil && len(a) < *s.MinItems {
		o.fail("%s: at least %d items", at, *s.MinItems)
	}
	if s.MaxItems != nil && len(a) > *s.MaxItems {
		o.fail("%s: at most %d items", at, *s.MaxItems)
	}
	if s.Items != nil {
		for i, item := range a {
			validateValue(o, fmt.Sprintf("%s[%d]", at, i), item, s.Items)
		}
	}
	return true
}

func validateString(o *object, at string, v any, s *jsonSchema) bool {
	str, ok := v.(string)
	if !ok {
		o.fail("%s: want a string, got %s", at, jsonKind(v))
		return false
	}
	if s.MinLength != nil && len(str) < *s.MinLength {
		o.fail("%s: shorter than %d", at, *s.MinLength)
	}
	if s.MaxLength != nil && len(str) > *s.MaxLength {
		o.fail("%s: longer than %d", at, *s.MaxLength)
	}
	if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(str) {
		o.fail("%s: %q does not match %s", at, str, s.Pattern)
	}
	return true
}

// validateNumber: an integer has no fraction and no exponent in the document, as the
// API server's JSON decoding requires.
func validateNumber(o *object, at string, v any, s *jsonSchema) bool {
	n, ok := v.(json.Number)
	if !ok {
		o.fail("%s: want %s, got %s", at, s.Type, jsonKind(v))
		return false
	}
	f, err := n.Float64()
	if err != nil || (s.Type == "integer" && (f != math.Trunc(f) || strings.ContainsAny(n.String(), ".eE"))) {
		o.fail("%s: %s is not an %s", at, n, s.Type)
		return false
	}
	if s.Minimum != nil && f < *s.Minimum {
		o.fail("%s: %s below the minimum %v", at, n, *s.Minimum)
	}
	if s.Maximum != nil && f > *s.Maximum {
		o.fail("%s: %s above the maximum %v", at, n, *s.Maximum)
	}
	return true
}

func inEnum(v any, enum []any) bool {
	for _, e := range enum {
		if fmt.Sprint(e) == fmt.Sprint(v) {
			return true
		}
	}
	return false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
