package runner

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wakepush/wakepush/loadtest/scenario"
)

type adminAddr struct{ name, addr string }

// serviceProfile is one service's CPU or allocation profile taken during the load phase.
type serviceProfile struct {
	Service string
	Kind    profileKind
	File    string // base name in the report dir
	Top     string // `go tool pprof -top …` output (header + 10 nodes)
	Err     error
}

// profileKind is what a profile samples.
type profileKind struct {
	name     string   // file prefix and report heading
	endpoint string   // under /debug/pprof/; takes ?seconds= (a delta profile for allocs)
	top      []string // go tool pprof arguments for the report's table
}

var (
	cpuProfile = profileKind{name: "cpu", endpoint: "profile", top: []string{"-top", "-cum"}}
	// allocsProfile is the bytes allocated during the window, by allocating function (flat).
	allocsProfile = profileKind{name: "allocs", endpoint: "allocs", top: []string{"-top", "-sample_index=alloc_space"}}
)

// startProfiles fetches a CPU profile of opts.Profile from every service, centred in the load
// phase (which starts now). The channel yields once, after every fetch ended (at once and nil
// when profiling is off).
func startProfiles(ctx context.Context, opts Options, st *stack, logf func(string, ...any)) <-chan []serviceProfile {
	out := make(chan []serviceProfile, 1)
	if opts.Profile <= 0 {
		out <- nil
		return out
	}
	delay, secs := profileWindow(opts.Scenario, opts.Profile)
	admins := append([]adminAddr(nil), st.admins...)
	go func() {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			out <- nil
			return
		}
		logf("profiling %d services for %s (CPU and allocations)", len(admins), secs)
		kinds := []profileKind{cpuProfile, allocsProfile}
		profs := make([]serviceProfile, len(kinds)*len(admins))
		var wg sync.WaitGroup
		for k, kind := range kinds {
			for i, a := range admins {
				wg.Go(func() { profs[k*len(admins)+i] = fetchProfile(ctx, opts.ReportDir, a, kind, secs) })
			}
		}
		wg.Wait()
		out <- profs
	}()
	return out
}

// profileWindow places a profile of length d in the steady part of the load phase: centred in
// the longer stretch before or after the mass reconnect (the whole phase without one), d
// shortened to that stretch and to at least 1 s. It returns the delay from the load phase's
// start and the length.
func profileWindow(sc *scenario.Scenario, d time.Duration) (delay, length time.Duration) {
	from, to := time.Duration(0), sc.Duration.D()
	if mr := sc.Shape.MassReconnect; mr.Fraction > 0 {
		before, after := mr.At.D(), to-(mr.At.D()+mr.Window.D())
		if after > before {
			from = mr.At.D() + mr.Window.D()
		} else {
			to = mr.At.D()
		}
	}
	length = min(d, to-from)
	length = max(length, time.Second)
	delay = max(from+(to-from-length)/2, 0)
	return delay, length
}

func fetchProfile(ctx context.Context, dir string, a adminAddr, kind profileKind, d time.Duration) serviceProfile {
	p := serviceProfile{Service: a.name, Kind: kind, File: kind.name + "-" + a.name + ".pprof"}
	secs := int(d.Round(time.Second) / time.Second)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", a.addr, kind.endpoint, secs), nil)
	if err != nil {
		p.Err = err
		return p
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.Err = err
		return p
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.Err = err
		return p
	}
	if resp.StatusCode != http.StatusOK {
		p.Err = fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
		return p
	}
	path := filepath.Join(dir, p.File)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		p.Err = err
		return p
	}
	p.Top, p.Err = pprofTop(ctx, path, kind.top, 10)
	return p
}

// pprofTop runs `go tool pprof ARGS -nodecount=n` on a profile file.
func pprofTop(ctx context.Context, path string, args []string, n int) (string, error) {
	args = append(append([]string{"tool", "pprof"}, args...), fmt.Sprintf("-nodecount=%d", n), path)
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("go tool pprof: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("go tool pprof: %w", err)
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// appendProfiles adds a "Profiles" section to report.md.
func appendProfiles(dir string, profs []serviceProfile) error {
	if len(profs) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\n## Profiles (load phase)\n\nPer service: the top 10 functions by cumulative CPU (`go tool pprof -top -cum`) " +
		"and by bytes allocated during the same window (`go tool pprof -top -sample_index=alloc_space`); the profiles are next to this report.\n")
	for _, p := range profs {
		fmt.Fprintf(&b, "\n### %s: %s\n\n", p.Service, p.Kind.name)
		if p.Err != nil {
			fmt.Fprintf(&b, "profile failed: %v\n", p.Err)
			continue
		}
		fmt.Fprintf(&b, "`%s`\n\n```\n%s\n```\n", p.File, p.Top)
	}
	f, err := os.OpenFile(filepath.Join(dir, "report.md"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
