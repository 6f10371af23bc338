package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The ClickHouse DSN is a secret: from the environment or a file, never a flag, and a DSN that
// does not parse is reported without its password.
func TestClickHouseDSNSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte("clickhouse://rec:FILEPASSWORD@127.0.0.1:9000/fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantDB  string
		wantErr string
	}{
		{name: "default", wantDB: "wakepush"},
		{name: "environment", env: map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://rec:ENVPASSWORD@127.0.0.1:9000/fromenv"}, wantDB: "fromenv"},
		{name: "file", env: map[string]string{"WAKEPUSH_CLICKHOUSE_DSN_FILE": file}, wantDB: "fromfile"},
		{name: "no flag", args: []string{"-clickhouse-dsn=clickhouse://rec:FLAGPASSWORD@h/x"}, wantErr: "flag provided but not defined: -clickhouse-dsn"},
		{name: "bad host", env: map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://rec:BADHOSTPASSWORD@ch host:9000/wakepush"},
			wantErr: "WAKEPUSH_CLICKHOUSE_DSN"},
		{name: "bad escape", env: map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://rec:ESC%zzPASSWORD@ch:9000/wakepush"},
			wantErr: "WAKEPUSH_CLICKHOUSE_DSN"},
		{name: "bad database", env: map[string]string{"WAKEPUSH_CLICKHOUSE_DSN": "clickhouse://rec:DBPASSWORD@ch:9000/no-such;db"},
			wantErr: "WAKEPUSH_CLICKHOUSE_DSN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", tt.env["WAKEPUSH_CLICKHOUSE_DSN"])
			t.Setenv("WAKEPUSH_CLICKHOUSE_DSN_FILE", tt.env["WAKEPUSH_CLICKHOUSE_DSN_FILE"])
			c, err := loadSettings(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "PASSWORD") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, db, err := parseDSN(c.ClickHouseDSN); err != nil || db != tt.wantDB {
				t.Errorf("database %q (%v), want %q", db, err, tt.wantDB)
			}
		})
	}
}

func TestFetchMinBytesSetting(t *testing.T) {
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", "")
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN_FILE", "")
	tests := []struct {
		args    []string
		want    int
		wantErr bool
	}{
		{nil, 64 << 10, false},
		{[]string{"-recorder-fetch-min-bytes=1"}, 1, false},
		{[]string{"-recorder-fetch-min-bytes=0"}, 0, true},
		{[]string{"-recorder-fetch-min-bytes=16777217"}, 0, true},
	}
	for _, tt := range tests {
		c, err := loadSettings(tt.args)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "WAKEPUSH_RECORDER_FETCH_MIN_BYTES") {
				t.Errorf("%v: error %v, want one naming WAKEPUSH_RECORDER_FETCH_MIN_BYTES", tt.args, err)
			}
			continue
		}
		if err != nil || c.FetchMinBytes != tt.want {
			t.Errorf("%v: FetchMinBytes %v (%v), want %d", tt.args, c, err, tt.want)
		}
	}
}
