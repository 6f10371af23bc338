package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/deploy/local/testcert"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/config"
)

// TLS options of WAKEPUSH_COMPONENTS entries and of WAKEPUSH_COMPONENT_ADDR become the
// connections' TLS configuration; a CA file that does not load is reported at start.
func TestConfigComponentTLS(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", testenv.AppsFile(t))
	t.Setenv("WAKEPUSH_NODE_KEYS", testenv.NodeKeys)
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", testenv.DeviceIDKey)
	ca := testcert.NewCA(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(env map[string]string) (loaded, error) {
		for _, k := range []string{"WAKEPUSH_COMPONENTS", "WAKEPUSH_COMPONENT_SECRET", "WAKEPUSH_COMPONENT_ADDR", "WAKEPUSH_COMPONENT_JID"} {
			t.Setenv(k, env[k])
		}
		var c settings
		if err := newSet(&c).Parse(nil); err != nil {
			t.Fatal(err)
		}
		var chk config.Check
		l := c.load(&chk)
		return l, chk.Err()
	}

	l, err := load(map[string]string{
		"WAKEPUSH_COMPONENTS":       "push.a.example@xmpp-a.example:5223*2;tls;ca=" + ca.CertFile + ";server-name=xmpp.test,push.b.example@127.0.0.1:5347",
		"WAKEPUSH_COMPONENT_SECRET": "s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Components) != 3 {
		t.Fatalf("%d connections, want 3", len(l.Components))
	}
	for _, cc := range l.Components[:2] {
		if cc.Addr != "xmpp-a.example:5223" || cc.TLS == nil || cc.TLS.ServerName != "xmpp.test" || cc.TLS.RootCAs == nil {
			t.Fatalf("TLS connection %s: %+v", cc.Addr, cc.TLS)
		}
	}
	if l.Components[2].TLS != nil {
		t.Fatalf("plain entry has TLS %+v", l.Components[2].TLS)
	}

	l, err = load(map[string]string{"WAKEPUSH_COMPONENT_ADDR": "xmpp.example:5223;tls", "WAKEPUSH_COMPONENT_JID": "push.example", "WAKEPUSH_COMPONENT_SECRET": "s"})
	if err != nil || len(l.Components) != 1 || l.Components[0].Addr != "xmpp.example:5223" || l.Components[0].TLS == nil || l.Components[0].TLS.RootCAs != nil {
		t.Fatalf("single connection with TLS: %+v, %v", l.Components, err)
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WAKEPUSH_COMPONENTS": "push.a.example@h:5223;tls;ca=" + notPEM, "WAKEPUSH_COMPONENT_SECRET": "s"}, "no PEM certificates"},
		{map[string]string{"WAKEPUSH_COMPONENTS": "push.a.example@h:5223;tls;ca=/nonexistent.pem", "WAKEPUSH_COMPONENT_SECRET": "s"}, "nonexistent.pem"},
		{map[string]string{"WAKEPUSH_COMPONENT_ADDR": "h:5223;ca=" + ca.CertFile, "WAKEPUSH_COMPONENT_JID": "push.example", "WAKEPUSH_COMPONENT_SECRET": "s"}, "need tls"},
	} {
		if _, err := load(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}
