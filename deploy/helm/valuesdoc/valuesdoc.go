// Package valuesdoc documents a Helm chart's values: it reads values.yaml with its comments and
// values.schema.json, checks that the two describe the same keys, and writes the values table of
// the chart's README.md between the markers
//
//	<!-- values:begin -->
//	<!-- values:end -->
//
// A value's description is the comment above its key that starts with `# --` (helm-docs style),
// continued by the comment lines below it:
//
//	# -- Partitions of every topic when created (WAKEPUSH_KAFKA_PARTITIONS);
//	# all topics share it.
//	partitions: 24
//
// Plain comments (without `--`) are notes that the table does not show. A key with a `# --`
// comment is one row of the table, whatever its value: a scalar, a list, or a mapping documented
// as a whole (`resources`, `podSecurityContext`). A mapping without one is a group: each of its
// keys is documented on its own, under the dotted path (`kafka.tls.enabled`). The type column
// comes from values.schema.json, the default column from values.yaml.
//
// `GOWORK=off go run ./cmd/chart-readme` (in deploy/helm, a module outside go.work) rewrites the table; the package's tests fail when
// README.md is stale or when a key lacks a description or is missing from the schema (or the
// schema has a property values.yaml does not).
package valuesdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Markers delimit the generated table in README.md.
const (
	BeginMarker = "<!-- values:begin -->"
	EndMarker   = "<!-- values:end -->"
)

// RegenerateCommand is how to rewrite the table (from deploy/helm).
const RegenerateCommand = "cd deploy/helm && GOWORK=off go run ./cmd/chart-readme"

// Value is one documented value of values.yaml.
type Value struct {
	Path        string // dotted key path, e.g. kafka.tls.enabled
	Type        string // from the schema, e.g. "string", "integer", "object", "string | integer"
	Default     string // the value in values.yaml, as compact JSON
	Description string // the `# --` comment, lines joined
	Line        int    // line in values.yaml
}

// Chart is a chart directory's values.yaml, values.schema.json and README.md.
type Chart struct {
	Dir    string
	values *yaml.Node // the document's top mapping
	schema map[string]any
	readme []byte
}

// Load reads the chart in dir.
func Load(dir string) (*Chart, error) {
	c := &Chart{Dir: dir}
	vb, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(vb, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: want a mapping at the top")
	}
	c.values = doc.Content[0]
	sb, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(sb, &c.schema); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	if c.readme, err = os.ReadFile(filepath.Join(dir, "README.md")); err != nil {
		return nil, err
	}
	return c, nil
}

// Values walks values.yaml and the schema together. It returns the documented values in file
// order and every inconsistency: a value without a description, a key the schema does not
// have, a schema property values.yaml does not have, a group the schema does not describe as an
// object with properties.
func (c *Chart) Values() ([]Value, []error) {
	var out []Value
	var errs []error
	var walk func(prefix string, m *yaml.Node, schema map[string]any)
	walk = func(prefix string, m *yaml.Node, schema map[string]any) {
		props, _ := c.resolve(schema)["properties"].(map[string]any)
		seen := map[string]bool{}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			seen[k.Value] = true
			sub, ok := props[k.Value].(map[string]any)
			if !ok {
				errs = append(errs, fmt.Errorf("values.yaml:%d: %s is not in values.schema.json", k.Line, path))
			}
			desc, documented := description(k.HeadComment)
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 && !documented {
				if ok {
					if _, has := c.resolve(sub)["properties"]; !has {
						errs = append(errs, fmt.Errorf("values.yaml:%d: %s is a group of keys without a `# --` description, but values.schema.json has no properties for it (document it as a whole with `# --`, or describe its keys in the schema)", k.Line, path))
					}
				}
				walk(path, v, sub)
				continue
			}
			if !documented || strings.TrimSpace(desc) == "" {
				errs = append(errs, fmt.Errorf("values.yaml:%d: %s has no description (a `# -- …` comment above it)", k.Line, path))
			}
			out = append(out, Value{Path: path, Type: c.typeOf(sub), Default: compact(v), Description: desc, Line: k.Line})
		}
		var missing []string
		for name := range props {
			if !seen[name] {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		for _, name := range missing {
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			errs = append(errs, fmt.Errorf("values.schema.json has %s, which values.yaml does not (add it with a default and a `# --` description)", p))
		}
	}
	walk("", c.values, c.schema)
	return out, errs
}

// resolve follows a local "$ref" (#/definitions/… or #/$defs/…) and an allOf of one ref.
func (c *Chart) resolve(s map[string]any) map[string]any {
	for range 10 {
		if s == nil {
			return nil
		}
		ref, ok := s["$ref"].(string)
		if !ok {
			if all, ok := s["allOf"].([]any); ok && len(all) == 1 && s["properties"] == nil {
				if one, ok := all[0].(map[string]any); ok {
					merged := map[string]any{}
					for k, v := range c.resolve(one) {
						merged[k] = v
					}
					for k, v := range s {
						if k != "allOf" {
							merged[k] = v
						}
					}
					return merged
				}
			}
			return s
		}
		node := any(c.schema)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := node.(map[string]any)
			node = m[part]
		}
		s, _ = node.(map[string]any)
	}
	return s
}

// typeOf is the schema type of a value: "string", "integer | string", "list of object" ….
func (c *Chart) typeOf(s map[string]any) string {
	s = c.resolve(s)
	if s == nil {
		return ""
	}
	var types []string
	switch t := s["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, fmt.Sprint(x))
		}
	}
	if len(types) == 1 && types[0] == "array" {
		if items, ok := s["items"].(map[string]any); ok {
			if it := c.typeOf(items); it != "" {
				return "list of " + it
			}
		}
		return "list"
	}
	if len(types) == 0 && s["properties"] != nil {
		return "object"
	}
	if e, ok := s["enum"].([]any); ok && len(types) == 1 && types[0] == "string" {
		var vals []string
		for _, x := range e {
			vals = append(vals, fmt.Sprintf("%q", x))
		}
		return "string (" + strings.Join(vals, ", ") + ")"
	}
	return strings.Join(types, " | ")
}

// description returns the text of the `# --` comment in a head comment (from its last `# --`
// line on), and whether there was one.
func description(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	start := -1
	for i, l := range lines {
		if t := strings.TrimSpace(l); t == "# --" || strings.HasPrefix(t, "# -- ") {
			start = i
		}
	}
	if start < 0 {
		return "", false
	}
	var parts []string
	for i, l := range lines[start:] {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if i == 0 {
			t = strings.TrimSpace(strings.TrimPrefix(t, "--"))
		}
		if t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, " "), true
}

// compact renders a YAML value as one-line JSON.
func compact(n *yaml.Node) string {
	var v any
	if err := n.Decode(&v); err != nil {
		return "?"
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return "?"
	}
	return string(b)
}

// jsonable turns yaml.v3's map[string]any (and nested lists) into what encoding/json takes.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
	}
	return v
}

// Table is the markdown table of vals.
func Table(vals []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, v := range vals {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", v.Path, cell(v.Type), code(v.Default), cell(v.Description))
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// code puts s in a code span, with a longer fence when s contains backticks.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + cell(s) + pad + fence
}

// Render returns README.md with the table between the markers replaced by the current one.
func (c *Chart) Render() ([]byte, error) {
	vals, errs := c.Values()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return Replace(c.readme, Table(vals))
}

// Replace puts table between the markers of readme.
func Replace(readme []byte, table string) ([]byte, error) {
	begin := bytes.Index(readme, []byte(BeginMarker))
	end := bytes.Index(readme, []byte(EndMarker))
	if begin < 0 || end < 0 || end < begin {
		return nil, fmt.Errorf("README.md needs the markers %s and %s, in that order", BeginMarker, EndMarker)
	}
	var out bytes.Buffer
	out.Write(readme[:begin+len(BeginMarker)])
	out.WriteString("\n<!-- generated from values.yaml and values.schema.json: " + RegenerateCommand + " -->\n\n")
	out.WriteString(table)
	out.WriteString("\n")
	out.Write(readme[end:])
	return out.Bytes(), nil
}

// README is the README.md as read.
func (c *Chart) README() []byte { return c.readme }
