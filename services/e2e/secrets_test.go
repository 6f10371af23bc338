package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

// helpSecrets are every secret of every binary, set to recognisable values (each contains
// "HELPSECRET"). Some are malformed on purpose, so that validation reports them.
var helpSecrets = map[string]string{
	"WAKEPUSH_KAFKA_SASL_PASSWORD": "HELPSECRET-sasl-pw",
	"WAKEPUSH_CLICKHOUSE_DSN":      "clickhouse://rec:HELPSECRET-dsn-pw@bad host:9000/wakepush",
	"WAKEPUSH_NODE_KEYS":           "k1:HELPSECRETnodekey",
	"WAKEPUSH_DEVICE_ID_KEY":       "HELPSECRET-device-id-key",
	"WAKEPUSH_INGEST_EVENT_TOKENS": "acme:HELPSECRET-ev",
	"WAKEPUSH_COMPONENT_SECRET":    "HELPSECRET-component",
	"WAKEPUSH_COMPONENT_SECRETS":   "push.example.org=HELPSECRET-components",
	"WAKEPUSH_DEMO_EVENT_TOKEN":    "HELPSECRET-demo-token",
}

var binaries = []string{"ingest", "coalescer", "sender", "recorder", "wakepushctl"}

func buildAll(t *testing.T) map[string]string {
	bins := map[string]string{}
	for _, b := range binaries {
		bins[b] = stacktest.Build(t, "github.com/wakepush/wakepush/services/"+b)
	}
	return bins
}

// runOut runs bin with args and env (added to the test's environment) and returns its combined
// output and whether it exited 0.
func runOut(t *testing.T, bin string, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill(); close(done) })
	out, err := cmd.CombinedOutput()
	if !timer.Stop() {
		<-done
		t.Fatalf("%s %v did not exit within 30s:\n%s", filepath.Base(bin), args, out)
	}
	return string(out), err == nil
}

func noSecret(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, "HELPSECRET") {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "HELPSECRET") {
				t.Errorf("%s shows a secret: %s", what, l)
			}
		}
	}
}

// secretEnv is helpSecrets as environment entries, or, with files, as VAR_FILE entries naming
// files that hold the values.
func secretEnv(t *testing.T, files bool) []string {
	var env []string
	dir := t.TempDir()
	for k, v := range helpSecrets {
		if !files {
			env = append(env, k+"="+v)
			continue
		}
		p := filepath.Join(dir, k)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, k+"=", k+"_FILE="+p)
	}
	return env
}

// TestHelpAndErrorsHideSecrets runs every binary's -h, and a start with a configuration that
// fails validation, with every secret set (from the environment, then from files), and checks
// that no secret value appears in what they print; -h names every secret's variables.
func TestHelpAndErrorsHideSecrets(t *testing.T) {
	bins := buildAll(t)
	// A query and its parameters, so that wakepushctl gets as far as the DSN.
	query := chschema.Queries()[0]
	text, err := chschema.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	queryArgs := []string{"query", query}
	for _, m := range regexp.MustCompile(`\{(\w+):`).FindAllStringSubmatch(text, -1) {
		queryArgs = append(queryArgs, m[1]+"=1")
	}
	for _, files := range []bool{false, true} {
		src := "env"
		if files {
			src = "file"
		}
		env := secretEnv(t, files)
		helps := map[string][]string{
			"ingest": {"-h"}, "coalescer": {"-h"}, "sender": {"-h"}, "recorder": {"-h"},
			"wakepushctl": {"-h"}, "wakepushctl demo": {"demo", "-h"}, "wakepushctl query": {"query", "-h"},
		}
		for name, args := range helps {
			bin := bins[strings.Fields(name)[0]]
			out, _ := runOut(t, bin, env, args...)
			noSecret(t, src+": "+name+" -h", out)
			if name == "wakepushctl" {
				continue
			}
			want := map[string]string{
				"ingest": "WAKEPUSH_NODE_KEYS or WAKEPUSH_NODE_KEYS_FILE", "recorder": "WAKEPUSH_CLICKHOUSE_DSN or WAKEPUSH_CLICKHOUSE_DSN_FILE",
				"wakepushctl demo": "WAKEPUSH_DEMO_EVENT_TOKEN or WAKEPUSH_DEMO_EVENT_TOKEN_FILE", "wakepushctl query": "WAKEPUSH_CLICKHOUSE_DSN or WAKEPUSH_CLICKHOUSE_DSN_FILE",
				"coalescer": "WAKEPUSH_KAFKA_SASL_PASSWORD or WAKEPUSH_KAFKA_SASL_PASSWORD_FILE", "sender": "WAKEPUSH_KAFKA_SASL_PASSWORD or WAKEPUSH_KAFKA_SASL_PASSWORD_FILE",
			}[name]
			if !strings.Contains(out, "(secret: set via "+want+")") {
				t.Errorf("%s: %s -h does not name %s:\n%s", src, name, want, out)
			}
			if strings.Contains(out, "-kafka-sasl-password") || strings.Contains(out, "-clickhouse-dsn") {
				t.Errorf("%s: %s -h offers a secret as a flag", src, name)
			}
		}

		// Validation fails (bad drain timeout, SASL mechanism, keys, DSN …): every problem is
		// printed, no secret.
		bad := append([]string{"WAKEPUSH_DRAIN_TIMEOUT=-1s", "WAKEPUSH_KAFKA_SASL_MECHANISM=bogus", "WAKEPUSH_APPS_FILE=/nonexistent/apps.yaml",
			"WAKEPUSH_COMPONENTS=push.other.org@127.0.0.1:5347"}, env...)
		for _, b := range []string{"ingest", "coalescer", "sender", "recorder"} {
			out, ok := runOut(t, bins[b], bad)
			if ok || !strings.Contains(out, "invalid configuration") {
				t.Errorf("%s: %s accepted a broken configuration (exit ok=%v):\n%s", src, b, ok, out)
			}
			noSecret(t, src+": "+b+" validation errors", out)
		}
		out, ok := runOut(t, bins["recorder"], append([]string{"WAKEPUSH_DRAIN_TIMEOUT=1s"}, env...))
		if ok || !strings.Contains(out, "WAKEPUSH_CLICKHOUSE_DSN") {
			t.Errorf("%s: recorder did not report the broken DSN:\n%s", src, out)
		}
		noSecret(t, src+": recorder DSN error", out)
		out, ok = runOut(t, bins["wakepushctl"], env, queryArgs...)
		if ok || !strings.Contains(out, "WAKEPUSH_CLICKHOUSE_DSN") {
			t.Errorf("%s: wakepushctl query did not report the broken DSN:\n%s", src, out)
		}
		noSecret(t, src+": wakepushctl query error", out)
		out, ok = runOut(t, bins["wakepushctl"], append([]string{"WAKEPUSH_DEMO_INGEST_URL=http://127.0.0.1:1", "WAKEPUSH_DEMO_TIMEOUT=2s"}, env...), "demo")
		if ok {
			t.Errorf("%s: wakepushctl demo succeeded without an ingest:\n%s", src, out)
		}
		noSecret(t, src+": wakepushctl demo error", out)
	}
}

// TestStartupLogsHideSecrets starts ingest and the recorder with valid configurations whose
// secrets are recognisable, against a Kafka and a ClickHouse that do not answer, and checks
// that their start-up and retry log lines (DEBUG) carry no secret.
func TestStartupLogsHideSecrets(t *testing.T) {
	bins := buildAll(t)
	dead := stacktest.FreeAddr(t) // nothing listens there
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps.yaml")
	if err := os.WriteFile(apps, []byte("apps:\n  - id: im.example.app\n    platform: fcm\n    fcm: {project_id: example}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + dead, "WAKEPUSH_KAFKA_SASL_MECHANISM=scram-sha-512", "WAKEPUSH_KAFKA_SASL_USERNAME=wakepush",
		"WAKEPUSH_KAFKA_SASL_PASSWORD=HELPSECRET-sasl-pw", "WAKEPUSH_LOG_LEVEL=debug", "WAKEPUSH_LOG_FORMAT=json",
	}
	runs := []struct {
		bin string
		env []string
	}{
		{"ingest", []string{
			"WAKEPUSH_APPS_FILE=" + apps,
			"WAKEPUSH_NODE_KEYS=k1:SEVMUFNFQ1JFVC1ub2RlLWtleS0wMDAwMDAwMDAwMDAwMDAwMDA=", // "HELPSECRET-node-key-…"
			"WAKEPUSH_DEVICE_ID_KEY=SEVMUFNFQ1JFVC1kZXZpY2UtaWQta2V5LTAwMDAwMDAwMDAwMA==",
			"WAKEPUSH_INGEST_EVENT_TOKENS=acme:HELPSECRET-event-token-0001",
			"WAKEPUSH_COMPONENTS=push.example.org@" + dead, "WAKEPUSH_COMPONENT_SECRETS=push.example.org=HELPSECRET-components",
			"WAKEPUSH_INGEST_HTTP_ADDR=127.0.0.1:0", "WAKEPUSH_ADMIN_ADDR=127.0.0.1:0",
		}},
		{"recorder", []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://rec:HELPSECRET-dsn-pw@" + dead + "/wakepush", "WAKEPUSH_ADMIN_ADDR=127.0.0.1:0"}},
	}
	for _, r := range runs {
		p := stacktest.StartProcess(t, r.bin, bins[r.bin], append(common, r.env...))
		p.WaitLine(`"msg":"starting"`, 20*time.Second)
		time.Sleep(2 * time.Second) // the first connection attempts and their log lines
		out := p.Output()
		noSecret(t, r.bin+" start-up log", out)
		for _, l := range p.Lines() {
			if strings.Contains(l, "SEVMUFNFQ1JFVC") {
				t.Errorf("%s logs a key: %s", r.bin, l)
			}
		}
	}
}
