package main

import (
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

func TestConfigTrustedProxies(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", testenv.AppsFile(t))
	t.Setenv("WAKEPUSH_NODE_KEYS", testenv.NodeKeys)
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", testenv.DeviceIDKey)
	t.Setenv("WAKEPUSH_COMPONENT_ADDR", "")
	for _, tc := range []struct {
		env, flag string
		want      int    // trusted prefixes
		wantErr   string // "" when valid
	}{
		{env: "", want: 0},
		{env: "10.0.0.0/8, 2001:db8::/32,192.0.2.7", want: 3},
		{env: "10.0.0.0/8", flag: "-http-trusted-proxies=192.0.2.1,192.0.2.2", want: 2}, // flags win
		{env: "10.0.0.0/8,proxy.example", wantErr: `WAKEPUSH_INGEST_TRUSTED_PROXIES: "proxy.example" is neither`},
	} {
		t.Setenv("WAKEPUSH_INGEST_TRUSTED_PROXIES", tc.env)
		var c settings
		var args []string
		if tc.flag != "" {
			args = []string{tc.flag}
		}
		if err := newSet(&c).Parse(args); err != nil {
			t.Fatal(err)
		}
		var chk checkT
		l := c.load(&chk)
		err := chk.Err()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %s", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || l.Proxies.Len() != tc.want {
			t.Errorf("%q %q: %d trusted prefixes, %v; want %d", tc.env, tc.flag, l.Proxies.Len(), err, tc.want)
		}
	}
}
