package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantOnly []string
		wantErr  string
	}{
		{name: "defaults", args: nil},
		{name: "only", args: []string{"-only", "kafka, clickhouse"}, wantOnly: []string{"kafka", "clickhouse"}},
		{name: "unknown component", args: []string{"-only", "kafka,zookeeper"}, wantErr: `unknown component "zookeeper"`},
		{name: "offset too large", args: []string{"-port-offset", "50000"}, wantErr: "outside 1-65535"},
		{name: "stray argument", args: []string{"run"}, wantErr: "unexpected arguments"},
		{name: "traces off", args: []string{"-traces", "off"}},
		{name: "unknown traces mode", args: []string{"-traces", "maybe"}, wantErr: "is not auto, wait or off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) = %v, want error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.only, tc.wantOnly) {
				t.Fatalf("only = %q, want %q", o.only, tc.wantOnly)
			}
		})
	}
}

func TestSelectComponents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		only []string
		want []string
	}{
		{only: nil, want: []string{"jaeger", "kafka", "clickhouse", "apns-mock", "ingest", "coalescer", "sender", "recorder"}},
		{only: []string{"clickhouse", "kafka"}, want: []string{"kafka", "clickhouse"}}, // table order
		{only: []string{"recorder"}, want: []string{"recorder"}},
	}
	for _, tc := range tests {
		if got := names(selectComponents(tc.only)); !slices.Equal(got, tc.want) {
			t.Errorf("selectComponents(%q) = %q, want %q", tc.only, got, tc.want)
		}
	}
}

// TestComponentTable checks the table: unique names and binaries, known
// placeholders, a readiness check for each, distinct ports.
func TestComponentTable(t *testing.T) {
	t.Parallel()
	s := &stack{opts: options{data: "/d", root: "/r"}, vars: map[string]string{"chdb-lib": "/lib.so", "jaeger-bin": "/jaeger"}}
	seenName, seenBin := map[string]bool{}, map[string]bool{}
	for _, c := range components {
		if seenName[c.name] || seenBin[filepath.Base(c.pkg)] {
			t.Errorf("duplicate component %s / binary %s", c.name, filepath.Base(c.pkg))
		}
		seenName[c.name], seenBin[filepath.Base(c.pkg)] = true, true
		if c.ready == "" {
			t.Errorf("%s has no readiness check", c.name)
		}
		if (c.pkg == "") == (c.bin == "") {
			t.Errorf("%s: want exactly one of pkg and bin", c.name)
		}
		all := append(append(append(append(append([]string{c.ready, c.readyCA, c.bin}, c.args...), c.env...), c.pinned...), stackEnv...), traceEnv...)
		for _, v := range all {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s: %v", c.name, r)
					}
				}()
				if got := s.expand(v); strings.ContainsAny(got, "{}") {
					t.Errorf("%s: %q expands to %q", c.name, v, got)
				}
			}()
		}
	}
	seenPort := map[int]string{}
	for name, p := range ports {
		if other, dup := seenPort[p]; dup {
			t.Errorf("port %d used by %s and %s", p, name, other)
		}
		seenPort[p] = name
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	s := &stack{opts: options{data: "/data", root: "/root", portOffset: 5}, vars: map[string]string{"chdb-lib": "/c/libchdb.so"}}
	tests := []struct{ in, want string }{
		{"{data}/kafka", "/data/kafka"},
		{"-addr={addr:kafka}", "-addr=127.0.0.1:19097"},
		{"{port:clickhouse-http}", "18128"},
		{"http://{addr:ingest-admin}/readyz", "http://127.0.0.1:18096/readyz"},
		{"{chdb-lib}", "/c/libchdb.so"},
		{"A:B:{data}/dev/k.p8", "A:B:/data/dev/k.p8"},
		{"no placeholders", "no placeholders"},
		{"unclosed {brace", "unclosed {brace"},
	}
	for _, tc := range tests {
		if got := s.expand(tc.in); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEnviron(t *testing.T) {
	t.Parallel()
	s := &stack{opts: options{data: "/data"}}
	c := component{
		env:    []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://{addr:clickhouse-tcp}/wakepush"},
		pinned: []string{"WAKEPUSH_ADMIN_ADDR={addr:recorder-admin}"},
	}
	parent := []string{"WAKEPUSH_LOG_FORMAT=json", "WAKEPUSH_ADMIN_ADDR=127.0.0.1:1", "HOME=/home/dev"}
	got := lastValues(s.environ(c, parent))
	want := map[string]string{
		"WAKEPUSH_KAFKA_BROKERS":  "127.0.0.1:19092",
		"WAKEPUSH_APPS_FILE":      "deploy/local/apps.yaml",
		"WAKEPUSH_LOG_FORMAT":     "json", // the parent overrides stack defaults
		"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://127.0.0.1:19000/wakepush",
		"WAKEPUSH_ADMIN_ADDR":     "127.0.0.1:18094", // pinned beats the parent
		"HOME":                    "/home/dev",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// With Jaeger in the stack, the services (and only they) export their spans to it, and the
// supervisor's environment still wins.
func TestEnvironTraces(t *testing.T) {
	t.Parallel()
	s := &stack{opts: options{data: "/data", portOffset: 1}, traces: true}
	byName := map[string]component{}
	for _, c := range components {
		byName[c.name] = c
	}
	got := lastValues(s.environ(byName["sender"], nil))
	if got["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != "http://127.0.0.1:18319/v1/traces" || got["OTEL_BSP_SCHEDULE_DELAY"] == "" {
		t.Errorf("sender env %v: want OTLP traces to the stack's Jaeger", got)
	}
	if got := lastValues(s.environ(byName["kafka"], nil)); got["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != "" {
		t.Errorf("kafka gets an OTLP endpoint")
	}
	got = lastValues(s.environ(byName["ingest"], []string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio"}))
	if got["OTEL_TRACES_SAMPLER"] != "parentbased_traceidratio" {
		t.Errorf("supervisor env does not reach the service: %v", got)
	}
	s.traces = false
	if got := lastValues(s.environ(byName["ingest"], nil)); got["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != "" {
		t.Errorf("OTLP endpoint set without Jaeger in the stack")
	}
	for _, name := range []string{"ingest", "coalescer", "sender", "recorder"} {
		if !byName[name].traced {
			t.Errorf("%s is not traced", name)
		}
	}
}

// The generated Jaeger configuration uses the stack's (offset) ports.
func TestPrepareJaeger(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := &stack{opts: options{data: data, portOffset: 7}}
	if err := prepareJaeger(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(data, "jaeger", "jaeger.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"jaeger-otlp", "jaeger-query", "jaeger-grpc", "jaeger-health"} {
		if want := "127.0.0.1:" + strconv.Itoa(ports[p]+7); !strings.Contains(string(b), want) {
			t.Errorf("config lacks %s (%s):\n%s", want, p, b)
		}
	}
}

// lastValues resolves an env list the way os/exec does: the last value wins.
func lastValues(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestFindRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.work"), []byte("go 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{root, deep} {
		if got, err := findRoot(dir); err != nil || got != root {
			t.Errorf("findRoot(%s) = %s, %v; want %s", dir, got, err, root)
		}
	}
	if _, err := findRoot(t.TempDir()); err == nil {
		t.Error("findRoot outside a workspace succeeded")
	}
}

func TestEnsureAPNsKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dev", "apns-key.p8")
	created, err := ensureAPNsKey(path)
	if err != nil || !created {
		t.Fatalf("ensureAPNsKey = %v, %v; want created", created, err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(first)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("not a PKCS#8 PEM key:\n%s", first)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", key)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	created, err = ensureAPNsKey(path)
	if err != nil || created {
		t.Fatalf("second ensureAPNsKey = %v, %v; want kept", created, err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Fatal("the key changed on the second call")
	}
}

func TestLineWriter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &prefixer{w: &buf}
	w := p.writer("kafka")
	fmt.Fprint(w, "one\ntw")
	fmt.Fprint(w, "o\r\nthree")
	w.Flush()
	if got, want := buf.String(), "[kafka] one\n[kafka] two\n[kafka] three\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// freeOffset picks a -port-offset under which every port of the stack is
// free, so the test never meets a running `make run`, and lies below the
// kernel's ephemeral range, so no outgoing connection on the machine can take
// one of them as its source port before the child binds it (CI once saw
// chdb-server fail with "Address already in use" on 127.0.0.1:59852).
func freeOffset(t *testing.T) int {
	t.Helper()
	bases := make([]int, 0, len(ports))
	for _, p := range ports {
		bases = append(bases, p)
	}
	off, err := freeport.Offset(bases)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := findRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestSupervisor runs the real supervisor with Kafka and ClickHouse: both
// become ready and SIGTERM stops them in reverse order; a child that dies
// takes the stack down with exit status 1.
func TestSupervisor(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/deploy/local/cmd/wakepush-dev")
	root := repoRoot(t)
	pidRE := regexp.MustCompile(`\[dev\] kafka started \(pid (\d+)\)`)

	tests := []struct {
		name     string
		stop     func(t *testing.T, p *stacktest.Process)
		wantCode int
		wantLine string
	}{
		{
			name:     "SIGTERM stops in reverse order",
			stop:     func(t *testing.T, p *stacktest.Process) { p.Signal(syscall.SIGTERM) },
			wantCode: 0,
			wantLine: "[dev] stopped",
		},
		{
			name: "a dying child stops the stack",
			stop: func(t *testing.T, p *stacktest.Process) {
				m := pidRE.FindStringSubmatch(p.WaitLine("[dev] kafka started", time.Second))
				pid, _ := strconv.Atoi(m[1])
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			},
			wantCode: 1,
			wantLine: "kafka EXITED UNEXPECTEDLY",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			off := freeOffset(t)
			data := t.TempDir()
			p := stacktest.StartProcess(t, "dev", bin, nil,
				"-root", root, "-data", data, "-only", "kafka,clickhouse", "-port-offset", strconv.Itoa(off))
			p.WaitLine("[dev] all 2 components ready", 3*time.Minute)

			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ports["kafka"]+off), time.Second)
			if err != nil {
				t.Fatalf("kafka: %v", err)
			}
			c.Close()
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(ports["clickhouse-http"]+off) + "/ping")
			if err != nil {
				t.Fatalf("clickhouse: %v", err)
			}
			resp.Body.Close()
			if _, err := os.Stat(filepath.Join(data, "bin", "kafka-broker")); err != nil {
				t.Errorf("binaries not in -data/bin: %v", err)
			}

			tc.stop(t, p)
			p.Wait(time.Minute)
			if got := p.ExitCode(); got != tc.wantCode {
				t.Fatalf("exit code %d, want %d", got, tc.wantCode)
			}
			p.WaitLine(tc.wantLine, time.Second)
			out := p.Output()
			if !strings.Contains(out, "[dev] clickhouse stopped") {
				t.Errorf("clickhouse was not stopped:\n%s", out)
			}
			if tc.wantCode == 0 && strings.Index(out, "[dev] stopping clickhouse") > strings.Index(out, "[dev] stopping kafka") {
				t.Errorf("kafka stopped before clickhouse:\n%s", out)
			}
			if !strings.Contains(out, "[clickhouse] chdb-server:") || !strings.Contains(out, "[kafka] ") {
				t.Errorf("children's output is not prefixed:\n%s", out)
			}
		})
	}
}
