package service

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/internal/config"
)

func status(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// start parses the common settings from env like a service does and starts the base.
func start(t *testing.T, env map[string]string) *Base {
	t.Helper()
	for _, k := range []string{"WAKEPUSH_ADMIN_ADDR", "WAKEPUSH_PPROF_ADDR", "WAKEPUSH_LOG_LEVEL"} {
		t.Setenv(k, env[k])
	}
	var f Flags
	s := config.New("svc")
	f.Register(s, "127.0.0.1:0")
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	var chk config.Check
	f.Validate(&chk)
	if err := chk.Err(); err != nil {
		t.Fatal(err)
	}
	b, err := Start(context.Background(), "svc", f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Profiling is off by default: the admin address has no /debug/pprof/ and no profiler runs.
func TestProfilingOffByDefault(t *testing.T) {
	b := start(t, nil)
	if b.Profiler != nil {
		t.Fatal("a profiler runs without WAKEPUSH_PPROF_ADDR")
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"} {
		if code, _ := status(t, "http://"+b.Admin.Addr()+path); code != http.StatusNotFound {
			t.Errorf("admin %s = %d, want 404", path, code)
		}
	}
	if code, _ := status(t, "http://"+b.Admin.Addr()+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d", code)
	}
}

// WAKEPUSH_PPROF_ADDR turns profiling on, on that address only; metrics and health stay on the
// admin address, and the command line is never served.
func TestProfilingOnItsOwnAddress(t *testing.T) {
	b := start(t, map[string]string{"WAKEPUSH_PPROF_ADDR": "127.0.0.1:0"})
	if b.Profiler == nil {
		t.Fatal("no profiler with WAKEPUSH_PPROF_ADDR set")
	}
	pp, adm := "http://"+b.Profiler.Addr(), "http://"+b.Admin.Addr()
	if code, body := status(t, pp+"/debug/pprof/allocs?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof allocs = %d", code)
	}
	if code, _ := status(t, pp+"/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof cmdline = %d, want 404", code)
	}
	if code, _ := status(t, adm+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("admin /debug/pprof/ = %d, want 404", code)
	}
	if code, _ := status(t, pp+"/livez"); code != http.StatusNotFound {
		t.Errorf("pprof address serves /livez: %d", code)
	}
	if code, _ := status(t, adm+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("admin /readyz = %d, want 503 (not ready yet)", code)
	}
}

func TestPprofAddrMustDifferFromAdmin(t *testing.T) {
	f := Flags{AdminAddr: "127.0.0.1:18091", PprofAddr: "127.0.0.1:18091", DrainTimeout: 1}
	var chk config.Check
	f.Validate(&chk)
	if err := chk.Err(); err == nil || !strings.Contains(err.Error(), "WAKEPUSH_PPROF_ADDR must differ") {
		t.Fatalf("Validate: %v", err)
	}
}
