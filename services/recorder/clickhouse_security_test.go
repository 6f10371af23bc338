package main

import (
	"strings"
	"testing"

	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// The recorder's ClickHouse connection takes the TLS and credential settings beside the DSN,
// and refuses contradictions at start.
func TestClickHouseConnectionSettings(t *testing.T) {
	ca := testcert.NewCA(t)
	client := ca.Client(t, "recorder")
	vars := []string{"WAKEPUSH_CLICKHOUSE_DSN", "WAKEPUSH_CLICKHOUSE_TLS", "WAKEPUSH_CLICKHOUSE_CA_FILE", "WAKEPUSH_CLICKHOUSE_TLS_SERVER_NAME",
		"WAKEPUSH_CLICKHOUSE_CERT_FILE", "WAKEPUSH_CLICKHOUSE_KEY_FILE", "WAKEPUSH_CLICKHOUSE_USER", "WAKEPUSH_CLICKHOUSE_PASSWORD"}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "tls and credentials", env: map[string]string{
			"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://ch.internal:9440/wakepush", "WAKEPUSH_CLICKHOUSE_TLS": "true",
			"WAKEPUSH_CLICKHOUSE_CA_FILE": ca.CertFile, "WAKEPUSH_CLICKHOUSE_TLS_SERVER_NAME": "clickhouse.test",
			"WAKEPUSH_CLICKHOUSE_CERT_FILE": client.CertFile, "WAKEPUSH_CLICKHOUSE_KEY_FILE": client.KeyFile,
			"WAKEPUSH_CLICKHOUSE_USER": "recorder", "WAKEPUSH_CLICKHOUSE_PASSWORD": "rec-pw-3a9"}},
		{name: "password twice", env: map[string]string{
			"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://recorder:dsn-pw-1b2@ch:9000/wakepush", "WAKEPUSH_CLICKHOUSE_PASSWORD": "rec-pw-3a9"},
			wantErr: "set it in one place"},
		{name: "ca without tls", env: map[string]string{"WAKEPUSH_CLICKHOUSE_CA_FILE": ca.CertFile}, wantErr: "need TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range vars {
				t.Setenv(v, tc.env[v])
			}
			c, err := loadSettings(nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "-pw-") {
					t.Fatalf("error shows a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			opts, db, err := connOptions(c.ClickHouseDSN, c.ClickHouse)
			if err != nil {
				t.Fatal(err)
			}
			if db != "wakepush" || opts.Auth.Username != "recorder" || opts.Auth.Password != "rec-pw-3a9" || opts.TLS == nil ||
				opts.TLS.ServerName != "clickhouse.test" || opts.TLS.RootCAs == nil || len(opts.TLS.Certificates) != 1 {
				t.Fatalf("options: db %q, auth %q, tls %+v", db, opts.Auth.Username, opts.TLS)
			}
		})
	}
}
