package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

// What ships is only what runs: the tests below keep test and load-test code out of the shipped
// binaries. The services' tests need the dev components (deploy/local: kfake, ClickHouse,
// Prosody, test certificates) and the provider mocks (loadtest/mocks), so the services module
// requires both (Go has no test-only requirements); only the linker's view tells whether any of
// it reaches a binary.

// wakepush is the prefix of every module of this repository.
const wakepush = "github.com/wakepush/wakepush"

// serviceModules are the modules all four services link (the shared platform: kafka-go,
// OpenTelemetry, Prometheus, protobuf, schemas, services/internal).
var serviceModules = []string{
	"github.com/beorn7/perks",
	"github.com/cenkalti/backoff/v5",
	"github.com/cespare/xxhash/v2",
	"github.com/go-logr/logr",
	"github.com/go-logr/stdr",
	"github.com/google/uuid",
	"github.com/grpc-ecosystem/grpc-gateway/v2",
	"github.com/klauspost/compress",
	"github.com/munnerz/goautoneg",
	"github.com/pierrec/lz4/v4",
	"github.com/prometheus/client_golang",
	"github.com/prometheus/client_model",
	"github.com/prometheus/common",
	"github.com/prometheus/otlptranslator",
	"github.com/prometheus/procfs",
	"github.com/segmentio/kafka-go",
	"github.com/wakepush/wakepush/schemas",
	"github.com/wakepush/wakepush/services",
	"github.com/xdg-go/pbkdf2",
	"github.com/xdg-go/scram",
	"github.com/xdg-go/stringprep",
	"go.opentelemetry.io/auto/sdk",
	"go.opentelemetry.io/otel",
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp",
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace",
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp",
	"go.opentelemetry.io/otel/exporters/prometheus",
	"go.opentelemetry.io/otel/log",
	"go.opentelemetry.io/otel/metric",
	"go.opentelemetry.io/otel/sdk",
	"go.opentelemetry.io/otel/sdk/metric",
	"go.opentelemetry.io/otel/trace",
	"go.opentelemetry.io/proto/otlp",
	"golang.org/x/net",
	"golang.org/x/sys",
	"golang.org/x/text",
	"google.golang.org/genproto/googleapis/api",
	"google.golang.org/genproto/googleapis/rpc",
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
}

// shippedModules is the allow-list: exactly the modules each shipped binary links, as
// `go list -deps` sees them for the image build (GOOS=linux, CGO_ENABLED=0, -tags timetzdata,
// the workspace). A new dependency of a binary is a deliberate change: add it here, in the same
// commit, after checking it is production code.
var shippedModules = map[string][]string{
	"ingest": withModules(serviceModules,
		"golang.org/x/time",
		"gopkg.in/yaml.v3",
	),
	"coalescer": withModules(serviceModules,
		"gopkg.in/yaml.v3",
	),
	"sender": withModules(serviceModules,
		"github.com/golang-jwt/jwt/v4",
		"github.com/sideshow/apns2",
		"golang.org/x/crypto",
		"golang.org/x/oauth2",
		"gopkg.in/yaml.v3",
	),
	"recorder": withModules(serviceModules,
		"github.com/ClickHouse/ch-go",
		"github.com/ClickHouse/clickhouse-go/v2",
		"github.com/andybalholm/brotli",
		"github.com/go-faster/city",
		"github.com/go-faster/errors",
		"github.com/paulmach/orb",
		"github.com/segmentio/asm",
		"github.com/shopspring/decimal",
	),
	"wakepushctl": {
		"github.com/ClickHouse/ch-go",
		"github.com/ClickHouse/clickhouse-go/v2",
		"github.com/andybalholm/brotli",
		"github.com/cespare/xxhash/v2",
		"github.com/go-faster/city",
		"github.com/go-faster/errors",
		"github.com/go-logr/logr",
		"github.com/go-logr/stdr",
		"github.com/google/uuid",
		"github.com/klauspost/compress",
		"github.com/paulmach/orb",
		"github.com/pierrec/lz4/v4",
		"github.com/segmentio/asm",
		"github.com/segmentio/kafka-go",
		"github.com/shopspring/decimal",
		"github.com/wakepush/wakepush/schemas",
		"github.com/wakepush/wakepush/services",
		"github.com/xdg-go/pbkdf2",
		"github.com/xdg-go/scram",
		"github.com/xdg-go/stringprep",
		"go.opentelemetry.io/auto/sdk",
		"go.opentelemetry.io/otel",
		"go.opentelemetry.io/otel/log",
		"go.opentelemetry.io/otel/metric",
		"go.opentelemetry.io/otel/trace",
		"golang.org/x/sys",
		"golang.org/x/text",
		"google.golang.org/protobuf",
	},
}

// withModules returns base and extra as one sorted list.
func withModules(base []string, extra ...string) []string {
	all := append(slices.Clone(base), extra...)
	sort.Strings(all)
	return all
}

// notShipped says why module path p must never be linked into a shipped binary, or "" when it
// may be. It holds whatever the allow-list says: an entry added by mistake is still refused.
func notShipped(p string) string {
	switch {
	case p == wakepush+"/loadtest" || strings.HasPrefix(p, wakepush+"/loadtest/"):
		return "load-test code or its provider mocks"
	case strings.HasPrefix(p, wakepush+"/deploy/"):
		return "deploy tooling: the dev stack and test helpers, the image builder, the monitoring checks"
	case strings.HasPrefix(p, "gonum.org/"):
		return "gonum: the load-test report's plots"
	case p == "github.com/twmb/franz-go/pkg/kfake":
		return "kfake: the in-process Kafka broker of the tests and the dev stack"
	}
	return ""
}

// linkProblems compares the modules a shipped binary links with its allow-list.
func linkProblems(name string, modules []string) []string {
	var problems []string
	allowed, ok := shippedModules[name]
	if !ok {
		return []string{fmt.Sprintf("%s: no allow-list in shippedModules", name)}
	}
	for _, m := range modules {
		if why := notShipped(m); why != "" {
			problems = append(problems, fmt.Sprintf("%s links %s (%s): only _test.go files and test helper packages may import it", name, m, why))
		} else if !slices.Contains(allowed, m) {
			problems = append(problems, fmt.Sprintf("%s links %s, which is not in its allow-list: if it is production code, add it to shippedModules[%q]", name, m, name))
		}
	}
	for _, m := range allowed {
		if why := notShipped(m); why != "" {
			problems = append(problems, fmt.Sprintf("shippedModules[%q] allows %s (%s)", name, m, why))
		} else if !slices.Contains(modules, m) {
			problems = append(problems, fmt.Sprintf("%s no longer links %s: remove it from shippedModules[%q]", name, m, name))
		}
	}
	return problems
}

// goCmd runs the go command in the repository root with env added, and returns its stdout.
func goCmd(t *testing.T, root string, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// linkedModules are the modules of every package each target's binary links, sorted, by target
// name, with the environment and build tags of BuildBinaries.
func linkedModules(t *testing.T, root string) map[string][]string {
	t.Helper()
	env := append(append([]string(nil), GoEnv...), "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK="+filepath.Join(root, "go.work"))
	args := []string{"list", "-deps", "-tags", BuildTags, "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}\t{{join .Deps \" \"}}"}
	for _, tg := range Targets {
		args = append(args, tg.Package)
	}
	type pkg struct {
		module string
		deps   []string
	}
	pkgs := map[string]pkg{}
	for _, l := range strings.Split(strings.TrimSpace(string(goCmd(t, root, env, args...))), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("go list printed %q", l)
		}
		pkgs[f[0]] = pkg{f[1], strings.Fields(f[2])}
	}
	out := map[string][]string{}
	for _, tg := range Targets {
		main := wakepush + "/services/" + tg.Name
		if tg.Package != "./services/"+tg.Name {
			t.Fatalf("target %s builds %s: modules_test.go expects ./services/%s", tg.Name, tg.Package, tg.Name)
		}
		seen := map[string]bool{}
		for _, p := range append([]string{main}, pkgs[main].deps...) {
			if m := pkgs[p].module; m != "" {
				seen[m] = true
			}
		}
		mods := make([]string, 0, len(seen))
		for m := range seen {
			mods = append(mods, m)
		}
		sort.Strings(mods)
		out[tg.Name] = mods
	}
	return out
}

// TestShippedBinariesLinkOnlyProductionModules lists, for every shipped binary, the modules of
// the packages it links and requires exactly its allow-list, which can hold no load-test code
// (loadtest, loadtest/mocks), no deploy module (deploy/local's dev components and test helpers),
// no gonum and no kfake. checkBinary (TestImages) checks the built binaries' own module list
// (debug/buildinfo) the same way.
func TestShippedBinariesLinkOnlyProductionModules(t *testing.T) {
	root := repoRoot(t)
	linked := linkedModules(t, root)
	for _, tg := range Targets {
		t.Run(tg.Name, func(t *testing.T) {
			for _, p := range linkProblems(tg.Name, linked[tg.Name]) {
				t.Error(p)
			}
		})
	}
	if len(shippedModules) != len(Targets) {
		t.Errorf("shippedModules has %d binaries, Targets %d", len(shippedModules), len(Targets))
	}
}

// goMod is what `go mod edit -json` prints of a go.mod.
type goMod struct {
	Module  struct{ Path string }
	Require []struct {
		Path     string
		Indirect bool
	}
	Replace []struct {
		Old struct{ Path string }
	}
}

func readGoMod(t *testing.T, root, dir string) goMod {
	t.Helper()
	var m goMod
	out := goCmd(t, root, []string{"GOFLAGS=", "GOWORK=off"}, "mod", "edit", "-json", filepath.Join(dir, "go.mod"))
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s/go.mod: %v", dir, err)
	}
	return m
}

// wakepushRequires are the repository's modules m requires.
func wakepushRequires(m goMod) []string {
	var rs []string
	for _, r := range m.Require {
		if r.Path == wakepush || strings.HasPrefix(r.Path, wakepush+"/") {
			rs = append(rs, r.Path)
		}
	}
	sort.Strings(rs)
	return rs
}

// TestModuleGraphKeepsTestCodeOut holds the module graph to its shape: schemas requires no
// module of this repository (not even for a test), services requires schemas and, for its tests
// only, deploy/local and loadtest/mocks (services/go.mod says so above them), loadtest/mocks
// requires only deploy/local, and deploy/local none (no cycle back to the services or the load
// test, which wakepush-dev only builds by package path through the workspace). No module on the
// services' path requires the loadtest module or gonum/plot, and neither appears anywhere in the
// services module's own graph (`go mod graph` without the workspace).
func TestModuleGraphKeepsTestCodeOut(t *testing.T) {
	root := repoRoot(t)
	want := map[string][]string{
		"schemas":        nil,
		"services":       {wakepush + "/deploy/local", wakepush + "/loadtest/mocks", wakepush + "/schemas"},
		"loadtest/mocks": {wakepush + "/deploy/local"},
		"deploy/local":   nil,
	}
	for _, dir := range []string{"schemas", "services", "loadtest/mocks", "deploy/local"} {
		m := readGoMod(t, root, dir)
		if m.Module.Path != wakepush+"/"+dir {
			t.Errorf("%s/go.mod is module %s", dir, m.Module.Path)
		}
		if got := wakepushRequires(m); !slices.Equal(got, want[dir]) {
			t.Errorf("%s/go.mod requires the repository's modules %q, want %q", dir, got, want[dir])
		}
		for _, r := range m.Require {
			if strings.HasPrefix(r.Path, "gonum.org/") {
				t.Errorf("%s/go.mod requires %s (the load-test report's plots)", dir, r.Path)
			}
		}
		if dir == "schemas" && len(m.Replace) > 0 {
			t.Errorf("schemas/go.mod has replace directives %v: it must build on its own", m.Replace)
		}
	}
	graph := goCmd(t, filepath.Join(root, "services"), []string{"GOFLAGS=", "GOWORK=off"}, "mod", "graph")
	for _, l := range strings.Split(string(graph), "\n") {
		for _, node := range strings.Fields(l) {
			if strings.HasPrefix(node, wakepush+"/loadtest@") || strings.HasPrefix(node, "gonum.org/v1/plot@") {
				t.Errorf("the services module's graph holds %s (%q)", node, l)
			}
		}
	}
}

func TestLinkProblems(t *testing.T) {
	ok := slices.Clone(shippedModules["wakepushctl"])
	if p := linkProblems("wakepushctl", ok); len(p) != 0 {
		t.Errorf("the allow-list itself: %q", p)
	}
	for _, c := range []struct {
		name    string
		modules []string
		want    string
	}{
		{"mock", append(slices.Clone(ok), wakepush+"/loadtest/mocks"), "load-test code"},
		{"loadtest", append(slices.Clone(ok), wakepush+"/loadtest"), "load-test code"},
		{"dev stack", append(slices.Clone(ok), wakepush+"/deploy/local"), "deploy tooling"},
		{"gonum", append(slices.Clone(ok), "gonum.org/v1/plot"), "gonum"},
		{"kfake", append(slices.Clone(ok), "github.com/twmb/franz-go/pkg/kfake"), "kfake"},
		{"new dependency", append(slices.Clone(ok), "example.com/new"), "not in its allow-list"},
		{"dropped dependency", ok[1:], "no longer links " + ok[0]},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := linkProblems("wakepushctl", c.modules)
			if len(p) != 1 || !strings.Contains(p[0], c.want) {
				t.Errorf("linkProblems = %q, want one problem with %q", p, c.want)
			}
		})
	}
	if p := linkProblems("mystery", nil); len(p) != 1 {
		t.Errorf("unknown binary: %q", p)
	}
}
