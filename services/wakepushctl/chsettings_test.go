package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// The query commands take the recorder's ClickHouse TLS and credential settings: a conflicting
// or incomplete setting is refused before any connection, without showing the password.
func TestClickHouseSettingsApply(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"CA without TLS", map[string]string{"WAKEPUSH_CLICKHOUSE_CA_FILE": "/nonexistent/ca.pem"}, "need TLS"},
		{"two passwords", map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://u:hunter2@127.0.0.1:1/db", "WAKEPUSH_CLICKHOUSE_PASSWORD": "s3cr3t-2"}, "set it in one place"},
		{"two users", map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://u@127.0.0.1:1/db", "WAKEPUSH_CLICKHOUSE_USER": "v"}, "differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"WAKEPUSH_CLICKHOUSE_DSN", "WAKEPUSH_CLICKHOUSE_PASSWORD", "WAKEPUSH_CLICKHOUSE_USER", "WAKEPUSH_CLICKHOUSE_CA_FILE", "WAKEPUSH_CLICKHOUSE_TLS"} {
				t.Setenv(k, tc.env[k])
			}
			if tc.env["WAKEPUSH_CLICKHOUSE_DSN"] == "" {
				t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:1/db")
			}
			for _, run := range []func() error{
				func() error { return runQueryTo(context.Background(), io.Discard, []string{"wake_latency_1m"}) },
				func() error { return statsTo(context.Background(), io.Discard, nil) },
			} {
				err := run()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("err = %v, want %q", err, tc.want)
				}
				if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cr3t-2")) {
					t.Errorf("error shows a password: %v", err)
				}
			}
		})
	}
}
