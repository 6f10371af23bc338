package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvDefaultsAndFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    settings
		wantErr []string
	}{
		{name: "defaults", want: settings{addr: "127.0.0.1:1", list: []string{"a", "b"}, n: 3, on: false, d: time.Second}},
		{name: "env", env: map[string]string{"T_ADDR": ":2", "T_LIST": " x , ,y", "T_N": "7", "T_ON": "true", "T_D": "250ms"},
			want: settings{addr: ":2", list: []string{"x", "y"}, n: 7, on: true, d: 250 * time.Millisecond}},
		{name: "flags win over env", env: map[string]string{"T_N": "7"}, args: []string{"-n=9", "-list=z"},
			want: settings{addr: "127.0.0.1:1", list: []string{"z"}, n: 9, d: time.Second}},
		{name: "every bad value reported at once", env: map[string]string{"T_N": "seven", "T_ON": "maybe", "T_D": "soon"},
			wantErr: []string{"T_N=\"seven\": not an integer", "T_ON=\"maybe\": not a boolean", "T_D=\"soon\": not a duration"}},
		{name: "stray arguments", args: []string{"extra"}, wantErr: []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"T_ADDR", "T_LIST", "T_N", "T_ON", "T_D"} {
				t.Setenv(k, tt.env[k])
			}
			var got settings
			s := New("test")
			s.String(&got.addr, "addr", "T_ADDR", "127.0.0.1:1", "")
			s.Strings(&got.list, "list", "T_LIST", "a,b", "")
			s.Int(&got.n, "n", "T_N", 3, "")
			s.Bool(&got.on, "on", "T_ON", false, "")
			s.Duration(&got.d, "d", "T_D", time.Second, "")
			err := s.Parse(tt.args)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.addr != tt.want.addr || !slices.Equal(got.list, tt.want.list) || got.n != tt.want.n || got.on != tt.want.on || got.d != tt.want.d {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

type settings struct {
	addr string
	list []string
	n    int
	on   bool
	d    time.Duration
}

// -h lists every setting with its built-in default and every secret with where it comes from,
// and never a value from the environment or a secret file.
func TestHelp(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("FILESECRETVALUE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("T_ADDR", "ENVADDRVALUE:1")
	t.Setenv("T_LIST", "ENVLISTVALUE")
	t.Setenv("T_PW", "ENVSECRETVALUE")
	t.Setenv("T_DSN_FILE", file)
	s := New("test")
	var addr, pw, dsn string
	var list []string
	s.String(&addr, "addr", "T_ADDR", "127.0.0.1:1", "listen address")
	s.Strings(&list, "list", "T_LIST", "a,b", "a list")
	s.Secret(&pw, "T_PW", "", "the password")
	s.Secret(&dsn, "T_DSN", "db://127.0.0.1/x", "the DSN")
	var out bytes.Buffer
	s.fs.SetOutput(&out)
	if err := s.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, leak := range []string{"ENVADDRVALUE", "ENVLISTVALUE", "ENVSECRETVALUE", "FILESECRETVALUE"} {
		if strings.Contains(help, leak) {
			t.Errorf("-h shows %s:\n%s", leak, help)
		}
	}
	for _, want := range []string{`(default "127.0.0.1:1")`, `(default "a,b")`, "T_PW\n", "the password (secret: set via T_PW or T_PW_FILE)",
		`the DSN (secret: set via T_DSN or T_DSN_FILE) (default "db://127.0.0.1/x")`} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "-pw") || strings.Contains(help, "-dsn") {
		t.Errorf("a secret has a flag:\n%s", help)
	}
	// The environment still applies.
	if addr != "ENVADDRVALUE:1" || pw != "ENVSECRETVALUE" || dsn != "FILESECRETVALUE" || !slices.Equal(list, []string{"ENVLISTVALUE"}) {
		t.Errorf("values: addr=%q pw=%q dsn=%q list=%q", addr, pw, dsn, list)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string
		wantErr string
	}{
		{name: "default", want: "builtin"},
		{name: "environment", env: map[string]string{"T_S": "from-env"}, want: "from-env"},
		{name: "file, one trailing newline removed", env: map[string]string{"T_S_FILE": write("s1", "from-file \n")}, want: "from-file "},
		{name: "file with CRLF", env: map[string]string{"T_S_FILE": write("s2", "crlf\r\n")}, want: "crlf"},
		{name: "both", env: map[string]string{"T_S": "SECRETVALUE", "T_S_FILE": write("s3", "SECRETVALUE")}, wantErr: "set T_S or T_S_FILE, not both"},
		{name: "missing file", env: map[string]string{"T_S_FILE": filepath.Join(dir, "nope")}, wantErr: "T_S_FILE: open"},
		{name: "no flag", args: []string{"-s=SECRETVALUE"}, wantErr: "flag provided but not defined: -s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("T_S", tt.env["T_S"])
			t.Setenv("T_S_FILE", tt.env["T_S_FILE"])
			var got string
			s := New("test")
			s.fs.SetOutput(&bytes.Buffer{})
			s.Secret(&got, "T_S", "builtin", "a secret")
			err := s.Parse(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "SECRETVALUE") {
					t.Errorf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSecretValues(t *testing.T) {
	t.Setenv("T_ONE", "password1")
	t.Setenv("T_LIST", "push.a.org=compsecret1, push.b.org=compsecret2")
	t.Setenv("T_UNSET", "")
	s := New("test")
	var one, list, unset string
	s.Secret(&one, "T_ONE", "", "")
	s.Secret(&list, "T_LIST", "", "")
	s.Secret(&unset, "T_UNSET", "default-is-not-secret", "")
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	got := s.SecretValues()
	for _, want := range []string{"password1", "compsecret1", "compsecret2", "push.a.org=compsecret1"} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretValues() = %q lacks %q", got, want)
		}
	}
	if slices.Contains(got, "default-is-not-secret") {
		t.Errorf("SecretValues() = %q has a built-in default", got)
	}
}

func TestCheck(t *testing.T) {
	var c Check
	if c.Err() != nil {
		t.Fatal("empty check has an error")
	}
	c.Require(true, "fine")
	c.Require(false, "A must be %d", 1)
	c.Add(nil)
	c.Add(errors.New("B is wrong"))
	err := c.Err()
	if err == nil || !strings.Contains(err.Error(), "A must be 1") || !strings.Contains(err.Error(), "B is wrong") || strings.Contains(err.Error(), "fine") {
		t.Fatalf("Err() = %v", err)
	}
}
