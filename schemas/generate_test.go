package schemas_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bufVersion is the pinned buf release that generates gen/ (see the Makefile's proto target).
const bufVersion = "v1.75.0"

// TestGeneratedCodeIsFresh regenerates the protobuf Go code into a temporary directory with the
// pinned generators and fails when it differs from the committed gen/ tree.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", "github.com/bufbuild/buf/cmd/buf@"+bufVersion, "generate", "--output", out)
	cmd.Dir = "."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	want := readTree(t, filepath.Join(out, "gen"))
	got := readTree(t, "gen")
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("gen/%s is missing: run `make proto` and commit", name)
		case !bytes.Equal(g, w):
			t.Errorf("gen/%s is stale: run `make proto` and commit", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("gen/%s is not generated from any .proto: delete it", name)
		}
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", root, err)
	}
	return files
}
