package schemas_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bufVersion is the pinned buf release that generates gen/ (the Makefile's BUF_VERSION).
const bufVersion = "v1.75.0"

// sumFile records what gen/ was generated from and what it held: `make proto` writes it (this
// test with -update) and TestGeneratedCodeIsFresh checks it.
const sumFile = "gen/generated.sum"

// protobufModule provides protoc-gen-go.
const protobufModule = "google.golang.org/protobuf"

var (
	update         = flag.Bool("update", false, "regenerate gen/ into a temporary directory with the cached buf, require it to equal gen/, then record "+sumFile+" (make proto)")
	makeBufVersion = flag.String("buf-version", bufVersion, "with -update: the Makefile's BUF_VERSION, which must equal bufVersion")
)

// TestGeneratedCodeIsFresh fails when gen/ does not match schemas/proto: a .proto, buf.yaml,
// buf.gen.yaml or a generator version changed since `make proto` recorded gen/generated.sum,
// or a generated file differs from what it recorded. It builds no generator: when the pinned
// buf that `make proto` builds is in the cache (<cache>/bin/buf-VERSION), it also regenerates
// gen/ into a temporary directory and compares it file by file.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if *update && *makeBufVersion != bufVersion {
		t.Fatalf("the Makefile's BUF_VERSION is %s but bufVersion in generate_test.go is %s: change both", *makeBufVersion, bufVersion)
	}
	buf, err := cachedBuf()
	if err != nil {
		t.Fatal(err)
	}
	_, statErr := os.Stat(buf)
	switch {
	case statErr == nil:
		regenerate(t, buf)
	case *update:
		t.Fatalf("no cached buf to check gen/ with: %v (make proto builds it)", statErr)
	default:
		t.Logf("regeneration skipped, only the hashes are checked: no %s (make proto builds it)", buf)
	}
	got := currentSums(t)
	if *update {
		if t.Failed() {
			return
		}
		if err := os.WriteFile(sumFile, []byte(formatSums(got)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", sumFile)
		return
	}
	b, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatalf("%v: run `make proto` and commit", err)
	}
	want, err := parseSums(b)
	if err != nil {
		t.Fatalf("%s: %v: run `make proto` and commit", sumFile, err)
	}
	for _, problem := range compareSums(want, got) {
		t.Error(problem)
	}
}

// regenerate runs buf generate into a temporary directory and compares the result with gen/.
func regenerate(t *testing.T, buf string) {
	t.Helper()
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), buf, "generate", "--output", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s generate: %v\n%s", buf, err, b)
	}
	want := readTree(t, filepath.Join(out, "gen"))
	got := readTree(t, "gen")
	delete(got, strings.TrimPrefix(sumFile, "gen/"))
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

// cachedBuf is where `make proto` keeps the pinned buf: <cache>/bin/buf-<bufVersion>, the
// cache being $WAKEPUSH_CACHE_DIR or else <user cache dir>/wakepush (the Makefile's
// WAKEPUSH_CACHE_DIR, deploy/local/chdb.CacheDir: the schemas module requires no wakepush
// module, so this is the same rule written out).
func cachedBuf() (string, error) {
	cache := os.Getenv("WAKEPUSH_CACHE_DIR")
	if cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory (set WAKEPUSH_CACHE_DIR): %w", err)
		}
		cache = filepath.Join(d, "wakepush")
	}
	cache, err := filepath.Abs(cache)
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "bin", "buf-"+bufVersion), nil
}

// sums are the lines of gen/generated.sum by their first two fields: "generator NAME" →
// version, "input PATH" and "output PATH" → sha256 (paths relative to schemas/).
type sums map[string]string

// currentSums are the generator versions and the hashes of gen/'s inputs and outputs now.
func currentSums(t *testing.T) sums {
	t.Helper()
	s := sums{"generator buf": bufVersion}
	// protoc-gen-go runs with `go run` (buf.gen.yaml): its version is the one the go command
	// selects for this module in the workspace.
	cmd := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Version}}", protobufModule)
	v, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", protobufModule, err)
	}
	s["generator protoc-gen-go"] = strings.TrimSpace(string(v))
	for _, input := range []string{"buf.yaml", "buf.gen.yaml"} {
		s["input "+input] = hashFile(t, input)
	}
	for name, b := range readTree(t, "proto") {
		s["input "+filepath.ToSlash(filepath.Join("proto", name))] = hashBytes(b)
	}
	for name, b := range readTree(t, "gen") {
		if p := filepath.ToSlash(filepath.Join("gen", name)); p != sumFile {
			s["output "+p] = hashBytes(b)
		}
	}
	return s
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return hashBytes(b)
}

func hashBytes(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func formatSums(s sums) string {
	var b strings.Builder
	b.WriteString("# Written by `make proto`; checked by TestGeneratedCodeIsFresh (generate_test.go).\n" +
		"# generator NAME VERSION | input|output PATH SHA256, paths relative to schemas/\n")
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s %s\n", k, s[k])
	}
	return b.String()
}

func parseSums(b []byte) (sums, error) {
	s := sums{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "generator" && f[0] != "input" && f[0] != "output") {
			return nil, fmt.Errorf("line %d: want `generator|input|output NAME VALUE`: %q", n, line)
		}
		s[f[0]+" "+f[1]] = f[2]
	}
	return s, sc.Err()
}

// compareSums describes every difference between the recorded sums and the current ones.
func compareSums(recorded, now sums) []string {
	var problems []string
	const fix = "run `make proto` and commit gen/"
	all := maps.Clone(recorded)
	maps.Copy(all, now)
	for _, k := range slices.Sorted(maps.Keys(all)) {
		r, inR := recorded[k]
		n, inN := now[k]
		kind, name, _ := strings.Cut(k, " ")
		switch {
		case inR && inN && r == n:
		case kind == "generator":
			problems = append(problems, fmt.Sprintf("%s is %s but gen/ was generated with %s: %s", name, n, r, fix))
		case kind == "input" && !inR:
			problems = append(problems, fmt.Sprintf("%s is new since gen/ was generated: %s", name, fix))
		case kind == "input" && !inN:
			problems = append(problems, fmt.Sprintf("%s was removed since gen/ was generated: %s", name, fix))
		case kind == "input":
			problems = append(problems, fmt.Sprintf("%s changed since gen/ was generated: %s", name, fix))
		case !inR:
			problems = append(problems, fmt.Sprintf("%s was not generated by `make proto`: delete it or %s", name, fix))
		case !inN:
			problems = append(problems, fmt.Sprintf("%s is missing: %s", name, fix))
		default:
			problems = append(problems, fmt.Sprintf("%s differs from what `make proto` generated (edited by hand?): %s", name, fix))
		}
	}
	return problems
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

func TestCompareSums(t *testing.T) {
	recorded := sums{
		"generator buf":                      "v1.75.0",
		"generator protoc-gen-go":            "v1.36.12",
		"input buf.yaml":                     "aa",
		"input proto/wakepush/v1/wake.proto": "bb",
		"output gen/wakepushv1/wake.pb.go":   "cc",
	}
	for _, c := range []struct {
		name   string
		change func(s sums)
		want   []string // one substring per problem, in order
	}{
		{"unchanged", func(sums) {}, nil},
		{"proto edited", func(s sums) { s["input proto/wakepush/v1/wake.proto"] = "bx" },
			[]string{"proto/wakepush/v1/wake.proto changed since gen/ was generated"}},
		{"proto added", func(s sums) { s["input proto/wakepush/v1/new.proto"] = "dd" },
			[]string{"proto/wakepush/v1/new.proto is new"}},
		{"proto removed", func(s sums) { delete(s, "input proto/wakepush/v1/wake.proto") },
			[]string{"proto/wakepush/v1/wake.proto was removed"}},
		{"protoc-gen-go bumped", func(s sums) { s["generator protoc-gen-go"] = "v1.36.13" },
			[]string{"protoc-gen-go is v1.36.13 but gen/ was generated with v1.36.12"}},
		{"generated file edited", func(s sums) { s["output gen/wakepushv1/wake.pb.go"] = "cx" },
			[]string{"gen/wakepushv1/wake.pb.go differs from what `make proto` generated"}},
		{"stray file in gen", func(s sums) { s["output gen/wakepushv1/extra.go"] = "ee" },
			[]string{"gen/wakepushv1/extra.go was not generated"}},
		{"generated file deleted", func(s sums) { delete(s, "output gen/wakepushv1/wake.pb.go") },
			[]string{"gen/wakepushv1/wake.pb.go is missing"}},
		{"two changes", func(s sums) { s["input buf.yaml"] = "ax"; s["output gen/wakepushv1/wake.pb.go"] = "cx" },
			[]string{"buf.yaml changed", "wake.pb.go differs"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := maps.Clone(recorded)
			c.change(now)
			got := compareSums(recorded, now)
			if len(got) != len(c.want) {
				t.Fatalf("compareSums = %q, want %d problems like %q", got, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) || !strings.Contains(got[i], "make proto") {
					t.Errorf("problem %d = %q, want it to contain %q and say to run make proto", i, got[i], w)
				}
			}
		})
	}
}

func TestSumsRoundTrip(t *testing.T) {
	s := sums{"generator buf": "v1.75.0", "input proto/a.proto": "00ff", "output gen/a.pb.go": "ff00"}
	got, err := parseSums([]byte(formatSums(s)))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, s) {
		t.Fatalf("parseSums(formatSums(%v)) = %v", s, got)
	}
	for _, bad := range []string{"input proto/a.proto\n", "checksum a b\n", "input a b c\n"} {
		if _, err := parseSums([]byte(bad)); err == nil {
			t.Errorf("parseSums(%q) accepted it", bad)
		}
	}
}
