package runner

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/scenario"
)

func TestProfileWindow(t *testing.T) {
	sc := &scenario.Scenario{Duration: scenario.Duration(120 * time.Second)}
	sc.Shape.MassReconnect = scenario.MassReconnect{At: scenario.Duration(60 * time.Second), Fraction: 0.2, Window: scenario.Duration(2 * time.Second)}
	for _, c := range []struct {
		d, delay, length time.Duration
	}{
		{30 * time.Second, 15 * time.Second, 30 * time.Second}, // before the reconnect (60 s > 58 s after it)
		{90 * time.Second, 0, 60 * time.Second},                // shortened to the stretch
		{0, 29500 * time.Millisecond, time.Second},             // at least 1 s
	} {
		delay, length := profileWindow(sc, c.d)
		if delay != c.delay || length != c.length {
			t.Errorf("profileWindow(%s) = %s, %s; want %s, %s", c.d, delay, length, c.delay, c.length)
		}
	}
	sc.Shape.MassReconnect.At = scenario.Duration(10 * time.Second)
	if delay, length := profileWindow(sc, 30*time.Second); delay != 12*time.Second+(108-30)*time.Second/2 || length != 30*time.Second {
		t.Errorf("after the reconnect: %s, %s", delay, length)
	}
	sc.Shape.MassReconnect = scenario.MassReconnect{}
	if delay, length := profileWindow(sc, 30*time.Second); delay != 45*time.Second || length != 30*time.Second {
		t.Errorf("no reconnect: %s, %s", delay, length)
	}
}

// testContext ends a little before the test's deadline, so that a command it bounds fails
// with its own error, not with the test binary's timeout panic.
func testContext(t *testing.T) context.Context {
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/20))
		t.Cleanup(cancel)
	}
	return ctx
}

// TestFetchProfileAndReport fetches a CPU and an allocation profile over HTTP, summarizes them
// with pprof and appends them to a report. The pprof tool is built first if the build cache
// lacks it (minutes on a busy machine): only the test's deadline bounds that.
func TestFetchProfileAndReport(t *testing.T) {
	ctx := testContext(t)
	tool := findPprof(ctx)
	if tool.err != nil {
		t.Fatal(tool.err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/debug/pprof/allocs", pprof.Handler("allocs"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // something to sample
		x := 0
		for {
			select {
			case <-stop:
				return
			default:
				x++
			}
		}
	}()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte("# report\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := adminAddr{name: "svc", addr: strings.TrimPrefix(srv.URL, "http://")}
	p := fetchProfile(ctx, dir, admin, cpuProfile, time.Second, tool)
	if p.Err != nil {
		t.Fatal(p.Err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu-svc.pprof")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Top, "flat") || !strings.Contains(p.Top, "cum") {
		t.Errorf("top output:\n%s", p.Top)
	}
	a := fetchProfile(ctx, dir, admin, allocsProfile, time.Second, tool)
	if a.Err != nil {
		t.Fatal(a.Err)
	}
	if _, err := os.Stat(filepath.Join(dir, "allocs-svc.pprof")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Top, "alloc_space") {
		t.Errorf("allocation top output:\n%s", a.Top)
	}
	// Without pprof the profile is still kept, and the report says why it has no summary.
	noTool := pprofTool{err: errors.New("no pprof here")}
	other := adminAddr{name: "other", addr: admin.addr}
	if n := fetchProfile(ctx, dir, other, allocsProfile, time.Second, noTool); n.Err != noTool.err || n.Top != "" {
		t.Errorf("without pprof: Err %v, Top %q", n.Err, n.Top)
	}
	if _, err := os.Stat(filepath.Join(dir, "allocs-other.pprof")); err != nil {
		t.Error(err)
	}
	gone := adminAddr{name: "gone", addr: "127.0.0.1:1"}
	failed := fetchProfile(ctx, dir, gone, cpuProfile, time.Second, tool)
	if failed.Err == nil {
		t.Fatal("no error for a service that does not answer")
	}
	if err := appendProfiles(dir, []serviceProfile{p, a, failed}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# report", "## Profiles", "### svc: cpu", "cpu-svc.pprof", "### svc: allocs", "allocs-svc.pprof", "### gone: cpu", "profile failed"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q:\n%s", want, b)
		}
	}
}
