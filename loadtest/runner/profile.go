package runner

import (
	"context"
	"errors"
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

const (
	// pprofBuildTimeout bounds finding (and on first use building) the pprof tool: Go builds it
	// on first use since 1.25, which took 2m12s on the busy 2-core machine with an empty build
	// cache.
	pprofBuildTimeout = 15 * time.Minute
	// pprofRunTimeout bounds one run of the built pprof on a profile (well under a second idle).
	pprofRunTimeout = 2 * time.Minute
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
	admins := append([]adminAddr(nil), st.pprofs...)
	go func() {
		start := time.After(delay)
		// Before the window: a first-time build of pprof then runs during the delay, once.
		tool := findPprof(ctx)
		select {
		case <-start:
		case <-ctx.Done():
			out <- nil
			return
		}
		logf("profiling %d processes for %s (CPU and allocations)", len(admins), secs)
		kinds := []profileKind{cpuProfile, allocsProfile}
		profs := make([]serviceProfile, len(kinds)*len(admins))
		var wg sync.WaitGroup
		for k, kind := range kinds {
			for i, a := range admins {
				wg.Go(func() { profs[k*len(admins)+i] = fetchProfile(ctx, opts.ReportDir, a, kind, secs, tool) })
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

// pprofTool is the pprof executable of `go tool pprof`, or why there is none.
type pprofTool struct {
	path string
	err  error
}

// findPprof finds `go tool pprof`'s executable with `go tool -n pprof`, which builds it into
// the build cache first if it is not there, within pprofBuildTimeout.
func findPprof(ctx context.Context) pprofTool {
	ctx, cancel := context.WithTimeout(ctx, pprofBuildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "-n", "pprof").Output()
	if err != nil {
		return pprofTool{err: commandError(ctx, "go tool -n pprof", err)}
	}
	path := strings.TrimSpace(string(out))
	if path == "" {
		return pprofTool{err: errors.New("go tool -n pprof printed no path")}
	}
	return pprofTool{path: path}
}

// fetchProfile fetches a profile of length d from a service's pprof address
// (WAKEPUSH_PPROF_ADDR, which the runner sets) into dir and summarizes it with tool. A profile
// fetched but not summarized stays in dir.
func fetchProfile(ctx context.Context, dir string, a adminAddr, kind profileKind, d time.Duration, tool pprofTool) serviceProfile {
	p := serviceProfile{Service: a.name, Kind: kind, File: kind.name + "-" + a.name + ".pprof"}
	path := filepath.Join(dir, p.File)
	if p.Err = fetchTo(ctx, path, a, kind, d); p.Err != nil {
		return p
	}
	if tool.err != nil {
		p.Err = tool.err
		return p
	}
	p.Top, p.Err = pprofTop(ctx, tool.path, path, kind.top, 10)
	return p
}

// fetchTo writes a profile of length d, fetched from /debug/pprof/, to path.
func fetchTo(ctx context.Context, path string, a adminAddr, kind profileKind, d time.Duration) error {
	secs := int(d.Round(time.Second) / time.Second)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", a.addr, kind.endpoint, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %.200s", url, resp.StatusCode, body)
	}
	return os.WriteFile(path, body, 0o644)
}

// pprofTop runs pprof ARGS -nodecount=n on a profile file, within pprofRunTimeout.
func pprofTop(ctx context.Context, pprof, path string, args []string, n int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, pprofRunTimeout)
	defer cancel()
	args = append(append([]string{}, args...), fmt.Sprintf("-nodecount=%d", n), path)
	out, err := exec.CommandContext(ctx, pprof, args...).Output()
	if err != nil {
		return "", commandError(ctx, "go tool pprof", err)
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// commandError describes a failed command: its stderr, or that its context ended it.
func commandError(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w (%w)", name, err, context.Cause(ctx))
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(ee.Stderr)))
	}
	return fmt.Errorf("%s: %w", name, err)
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
