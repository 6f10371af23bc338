package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	s, err := New("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metric 1\n") }))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(slog.Default())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	base := "http://" + s.Addr()

	if code, _ := get(t, base+"/livez"); code != 200 {
		t.Errorf("/livez = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before ready = %d %q, want 503 starting", code, body)
	}
	s.SetReady(true, "")
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	var failing error
	s.AddCheck(Check{Name: "kafka", Fn: func(context.Context) error { return failing }})
	failing = errors.New("no brokers")
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "kafka: no brokers") {
		t.Errorf("/readyz with failing check = %d %q", code, body)
	}
	failing = nil
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after the check recovered = %d", code)
	}
	s.SetReady(false, "draining")
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || body != "metric 1\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}
}

// The admin address serves no profile: profiling is a separate, explicit listener.
func TestAdminServesNoProfiles(t *testing.T) {
	s, err := New("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(slog.Default())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/symbol", "/debug/pprof/trace"} {
		if code, _ := get(t, "http://"+s.Addr()+path); code != http.StatusNotFound {
			t.Errorf("admin %s = %d, want 404", path, code)
		}
	}
}

func TestProfiler(t *testing.T) {
	p, err := NewProfiler("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(slog.Default())
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	base := "http://" + p.Addr()
	tests := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/debug/pprof/", 200, "goroutine"},
		{"/debug/pprof/heap?debug=1", 200, "heap profile"},
		{"/debug/pprof/allocs?debug=1", 200, "heap profile"},
		{"/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"/debug/pprof/profile?seconds=1", 200, ""},
		{"/debug/pprof/cmdline", 404, ""},
		{"/livez", 404, ""},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path)
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s = %d %.80q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
		}
		if strings.Contains(body, os.Args[0]) {
			t.Errorf("%s shows the command line", tt.path)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true,
		":6060": false, "0.0.0.0:6060": false, "10.0.0.5:6060": false, "nonsense": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
