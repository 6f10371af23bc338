package apps

import (
	"os"
	"strings"
	"testing"
)

// The examples in docs/apps.md are real apps files: each YAML block that lists apps parses and
// validates, so the documentation cannot drift from the parser.
func TestDocumentedExamplesParse(t *testing.T) {
	b, err := os.ReadFile("../../../docs/apps.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for i, part := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatalf("yaml block %d is not closed", i+1)
		}
		if !strings.Contains(block, "apps:") {
			continue
		}
		blocks++
		if _, err := Parse([]byte(block), "docs/apps.md"); err != nil {
			t.Errorf("docs/apps.md example %d: %v", i+1, err)
		}
	}
	if blocks < 2 {
		t.Fatalf("found %d example apps files in docs/apps.md, want at least 2", blocks)
	}
}
