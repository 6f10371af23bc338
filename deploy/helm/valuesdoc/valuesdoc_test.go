package valuesdoc_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/deploy/helm/valuesdoc"
)

const chartDir = "../wakepush"

// TestValuesDocumented: every value in values.yaml has a `# --` description and is in
// values.schema.json, and every schema property is in values.yaml.
func TestValuesDocumented(t *testing.T) {
	c, err := valuesdoc.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, errs := c.Values()
	for _, err := range errs {
		t.Error(err)
	}
	if len(vals) < 50 {
		t.Errorf("only %d documented values: the walk is broken", len(vals))
	}
	for _, v := range vals {
		if v.Type == "" {
			t.Errorf("values.yaml:%d: %s has no type in values.schema.json", v.Line, v.Path)
		}
	}
}

// TestREADMEUpToDate: the values table in README.md is what values.yaml and the schema give.
func TestREADMEUpToDate(t *testing.T) {
	c, err := valuesdoc.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, c.README()) {
		t.Fatalf("%s is not up to date with values.yaml and values.schema.json; regenerate it: %s",
			filepath.Join("deploy/helm/wakepush", "README.md"), valuesdoc.RegenerateCommand)
	}
}

// TestDetectsProblems runs the checks on a small chart with one of each mistake.
func TestDetectsProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("values.yaml", `# file header, not a description

# -- Documented.
a: 1
b: 2
group:
  # -- Nested | with a pipe,
  # continued.
  c: "x"
# A plain note.
# -- Documented as a whole.
res:
  requests: {cpu: 1}
# -- Not in the schema.
extra: []
`)
	write("values.schema.json", `{"type": "object", "additionalProperties": false, "properties": {
  "a": {"type": "integer"}, "b": {"type": "integer"}, "onlyInSchema": {"type": "string"},
  "group": {"type": "object", "properties": {"c": {"$ref": "#/definitions/s"}}},
  "res": {"type": "object"}},
  "definitions": {"s": {"type": "string", "enum": ["x", "y"]}}}`)
	write("README.md", "# t\n\n<!-- values:begin -->\nold\n<!-- values:end -->\n\nafter\n")
	c, err := valuesdoc.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	vals, errs := c.Values()
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"b has no description", "extra is not in values.schema.json", "values.schema.json has onlyInSchema"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing problem %q in:\n%s", want, all)
		}
	}
	if len(errs) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(errs), all)
	}
	got := valuesdoc.Table(vals)
	want := "| Key | Type | Default | Description |\n|---|---|---|---|\n" +
		"| `a` | integer | `1` | Documented. |\n" +
		"| `b` | integer | `2` |  |\n" +
		"| `group.c` | string (\"x\", \"y\") | `\"x\"` | Nested \\| with a pipe, continued. |\n" +
		"| `res` | object | `{\"requests\":{\"cpu\":1}}` | Documented as a whole. |\n" +
		"| `extra` |  | `[]` | Not in the schema. |\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	out, err := valuesdoc.Replace(c.README(), "T\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.HasPrefix(s, "# t\n\n<!-- values:begin -->\n") || !strings.HasSuffix(s, "T\n\n<!-- values:end -->\n\nafter\n") || strings.Contains(s, "old") {
		t.Errorf("replaced README:\n%s", s)
	}
	if _, err := valuesdoc.Replace([]byte("no markers"), "T"); err == nil {
		t.Error("Replace without markers: no error")
	}
}
