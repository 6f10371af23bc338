package config

import (
	"errors"
	"flag"
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

func TestHelp(t *testing.T) {
	s := New("test")
	var x string
	s.String(&x, "x", "T_X", "", "")
	if err := s.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
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
