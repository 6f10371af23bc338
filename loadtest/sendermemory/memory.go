// Package sendermemory measures the memory of wakepush sender instances by registered devices
// and instance count (issue 11, target 5: memory that scales with the deployment, not the user
// base): the sender binary, a Kafka broker and the APNs mock run as child processes; the
// registrations are produced once per device count (incrementally), then groups of 1, 2, 4 …
// senders are started, waited for until the group is stable (every instance ready, the
// partitions split between them, their devices adding up to the registered ones) and each
// instance's live heap (after a forced GC), heap in use and RSS are read, with its partition
// load times from its log. A rebalance check starts a third instance next to two stable ones and
// times one wake per partition produced as it joins: a wake must wait for its own partition's
// load at most, never for the whole table's. cmd/sender-memory is its command; loadtest/README.md
// has the how-to.
package sendermemory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wakepush/wakepush/deploy/local/proccpu"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/procs"
	"github.com/wakepush/wakepush/loadtest/senderbench"
)

// SenderPackage is the sender the harness builds.
const SenderPackage = senderbench.SenderPackage

// Metrics the harness reads from a sender's /metrics.
const (
	metricDevices   = "wakepush_sender_registrations"
	metricHeapLive  = "go_gc_heap_live_bytes"
	metricHeapInuse = "go_memstats_heap_inuse_bytes"
	metricRSS       = "process_resident_memory_bytes"
)

// Options configure a measurement.
type Options struct {
	// Devices are the registered device counts to measure, ascending (default 1,000,000); the
	// registrations are produced incrementally, so every count includes the previous ones.
	Devices []int
	// Instances are the group sizes measured at every device count (default 1, 2, 4).
	Instances []int
	// Partitions of every topic (WAKEPUSH_KAFKA_PARTITIONS; default 12).
	Partitions int
	// Retain is the senders' WAKEPUSH_SENDER_REGISTRY_RETAIN (default 10 s): partitions an
	// instance loaded while the group was forming and then lost are dropped after it.
	Retain time.Duration
	// StableFor is how long the group's devices must stay unchanged (and add up) before it
	// is measured (default 5 s).
	StableFor time.Duration
	// StableTimeout bounds the wait for a stable group, loads included (default 20 min).
	StableTimeout time.Duration
	// WakeTimeout bounds the wait for the rebalance check's pushes (default 5 min).
	WakeTimeout time.Duration
	// ReadyGrace: a group otherwise stable (devices adding up and unchanged, partitions split)
	// is measured after StableFor + ReadyGrace even when an instance is not ready, and the
	// instance is reported as a failure (default 30 s).
	ReadyGrace time.Duration
	// Sequential starts the instances of a group one after the other, each once the previous
	// one is ready (a scale-up), instead of all at once (a deployment).
	Sequential bool
	// NoBaseline skips the baseline (one sender, no devices); NoRebalance the rebalance check.
	NoBaseline, NoRebalance bool
	// Seed of the devices (senderbench.MakeDevice).
	Seed int64
	// Dir holds the run's files (created if missing).
	Dir string
	// Build builds a main package and returns the binary.
	Build func(pkg string) (string, error)
	// SenderBinary is the sender to measure; empty builds SenderPackage.
	SenderBinary string
	// Logf receives progress messages (nil: none).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if len(o.Devices) == 0 {
		o.Devices = []int{1_000_000}
	}
	if len(o.Instances) == 0 {
		o.Instances = []int{1, 2, 4}
	}
	if o.Partitions == 0 {
		o.Partitions = 12
	}
	if o.Retain == 0 {
		o.Retain = 10 * time.Second
	}
	if o.StableFor == 0 {
		o.StableFor = 5 * time.Second
	}
	if o.StableTimeout == 0 {
		o.StableTimeout = 20 * time.Minute
	}
	if o.WakeTimeout == 0 {
		o.WakeTimeout = 5 * time.Minute
	}
	if o.ReadyGrace == 0 {
		o.ReadyGrace = 30 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	var errs []error
	for i, n := range o.Devices {
		if n < 1 {
			errs = append(errs, fmt.Errorf("devices %d: want at least 1", n))
		}
		if i > 0 && n <= o.Devices[i-1] {
			errs = append(errs, fmt.Errorf("devices %v: want ascending counts", o.Devices))
		}
	}
	for _, k := range o.Instances {
		if k < 1 || k > 64 {
			errs = append(errs, fmt.Errorf("instances %d: want 1…64", k))
		}
	}
	if o.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions %d: want at least 1", o.Partitions))
	}
	if o.Retain < 0 {
		errs = append(errs, errors.New("retain must not be negative"))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no directory for the run's files"))
	}
	if o.Build == nil {
		errs = append(errs, errors.New("no Build function"))
	}
	return errors.Join(errs...)
}

// run is one measurement's shared state.
type run struct {
	opts     Options
	bins     map[string]string
	broker   *procs.Broker
	mock     *senderbench.Mock
	appsFile string
	rep      *Report
	// first is, per partition, the lowest registered device index there (wakes go to them).
	first map[int]int
	// fullLoad is, per device count, the 1-instance group's slowest partition load and ready time.
	fullLoad map[int][2]time.Duration
}

// Run builds the binaries, runs the broker and the mock, measures the baseline and every
// device count × instance count, and returns the report. Lost or duplicated wakes and senders
// that exit or must be killed are the report's Failures; an error means the measurement could
// not be carried out.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("sender-memory: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("sender-memory: %w", err)
	}
	r := &run{opts: opts, bins: map[string]string{}, first: map[int]int{}, fullLoad: map[int][2]time.Duration{}}
	logf := opts.Logf
	began := time.Now()
	cpu0, _ := proccpu.Self()
	pkgs := []string{procs.BrokerPackage, senderbench.MockPackage}
	if opts.SenderBinary != "" {
		r.bins[SenderPackage] = opts.SenderBinary
	} else {
		pkgs = append(pkgs, SenderPackage)
	}
	for _, pkg := range pkgs {
		bin, err := opts.Build(pkg)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", pkg, err)
		}
		r.bins[pkg] = bin
	}
	logf("built %d binaries in %s", len(pkgs), time.Since(began).Round(time.Millisecond))

	r.rep = &Report{
		Config: Config{Devices: opts.Devices, Instances: opts.Instances, Partitions: opts.Partitions, Retain: opts.Retain,
			StableFor: opts.StableFor, Sequential: opts.Sequential, SenderBinary: opts.SenderBinary, GOGC: os.Getenv("GOGC"), GOMEMLIMIT: os.Getenv("GOMEMLIMIT")},
		Host:       fmt.Sprintf("%s/%s, %d CPUs, %s RAM", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), memTotal()),
		Started:    began,
		LoadBefore: loadAvg(),
	}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	defer r.broker.Close()
	defer func() {
		if err := r.mock.Stop(); err != nil {
			r.rep.Failures = append(r.rep.Failures, fmt.Sprintf("apns mock: %v", err))
		}
	}()

	if !opts.NoBaseline {
		logf("baseline: one sender, no devices")
		g, _, err := r.group(ctx, 0, 1, false)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		r.rep.Baseline = &g.Members[0]
	}
	produced := 0
	for _, n := range opts.Devices {
		round := Round{Devices: n}
		t0 := time.Now()
		logf("producing registrations %d…%d", produced, n-1)
		first, err := produceRegistrations(ctx, r.broker.Addr, opts.Seed, produced, n, opts.Partitions, logf)
		if err != nil {
			return nil, err
		}
		for p, i := range first {
			if j, ok := r.first[p]; !ok || i < j {
				r.first[p] = i
			}
		}
		round.Produced = n - produced
		round.ProduceWall = time.Since(t0)
		produced = n
		round.BrokerRSS, _, _ = procStatus(r.broker.Pid())
		logf("produced %d registrations in %s (%.0f/s); broker RSS %s", round.Produced, round.ProduceWall.Round(time.Millisecond),
			float64(round.Produced)/round.ProduceWall.Seconds(), mb(round.BrokerRSS))
		rebalanced := false
		for _, k := range opts.Instances {
			withRebalance := !opts.NoRebalance && k == 2 && !rebalanced
			g, rb, err := r.group(ctx, n, k, withRebalance)
			if err != nil {
				return nil, fmt.Errorf("%d devices, %d instances: %w", n, k, err)
			}
			round.Groups = append(round.Groups, g)
			if rb != nil {
				round.Rebalance, rebalanced = rb, true
			}
		}
		if !opts.NoRebalance && !rebalanced {
			_, rb, err := r.group(ctx, n, 2, true)
			if err != nil {
				return nil, fmt.Errorf("%d devices, rebalance check: %w", n, err)
			}
			round.Rebalance = rb
		}
		if rb := round.Rebalance; rb != nil {
			if fl, ok := r.fullLoad[n]; ok {
				rb.FullLoad, rb.FullReady = fl[0], fl[1]
			}
		}
		r.rep.Rounds = append(r.rep.Rounds, round)
	}
	cpu1, _ := proccpu.Self()
	_, hwm, _ := procStatus(os.Getpid())
	r.rep.Harness = Harness{CPU: cpu1 - cpu0, PeakRSS: hwm, Wall: time.Since(began)}
	r.rep.BrokerRSS, _, _ = procStatus(r.broker.Pid())
	r.rep.LoadAfter = loadAvg()
	r.rep.Finish()
	return r.rep, nil
}

// setup writes the key, starts the broker and the mock, writes the apps file and creates the
// topics.
func (r *run) setup(ctx context.Context) error {
	dir := r.opts.Dir
	_, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	keyFile := filepath.Join(dir, "apns.p8")
	if err := os.WriteFile(keyFile, p8, 0o600); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	r.broker, err = procs.StartBroker(ctx, r.bins[procs.BrokerPackage], filepath.Join(dir, "kafka.log"), false)
	if err != nil {
		return err
	}
	r.mock, err = senderbench.StartMock(ctx, r.bins[senderbench.MockPackage], dir, senderbench.TeamID, senderbench.KeyID, keyFile, senderbench.App, 100_000, 0)
	if err != nil {
		r.broker.Close()
		return err
	}
	r.appsFile = filepath.Join(dir, "apps.yaml")
	if err := senderbench.WriteAppsFile(r.appsFile, senderbench.App, senderbench.TeamID, senderbench.KeyID, keyFile, r.mock); err != nil {
		r.mock.Stop()
		r.broker.Close()
		return err
	}
	if err := createTopics(ctx, r.broker.Addr, r.opts.Partitions); err != nil {
		r.mock.Stop()
		r.broker.Close()
		return err
	}
	return nil
}

// group starts k senders with n devices registered, waits until the group is stable, measures
// every instance, runs the rebalance check if asked, and stops them.
func (r *run) group(ctx context.Context, n, k int, withRebalance bool) (g Group, rb *Rebalance, err error) {
	logf := r.opts.Logf
	dir := filepath.Join(r.opts.Dir, fmt.Sprintf("devices-%d", n), fmt.Sprintf("instances-%d", k))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return g, nil, err
	}
	g.Instances = k
	var insts []*instance
	defer func() {
		fails := stopAll(insts)
		r.rep.Failures = append(r.rep.Failures, fails...)
	}()
	began := time.Now()
	for i := 1; i <= k; i++ {
		in, err := r.startInstance(i, dir)
		if err != nil {
			return g, nil, err
		}
		insts = append(insts, in)
		if r.opts.Sequential && i < k {
			if err := in.proc.WaitReady(ctx, "http://"+in.admin+"/readyz", r.opts.StableTimeout); err != nil {
				return g, nil, err
			}
			in.ready = time.Since(in.started)
		}
	}
	logf("%d devices, %d instance(s): started, waiting for a stable group", n, k)
	notReady, err := r.waitStable(ctx, insts, int64(n))
	if err != nil {
		return g, nil, err
	}
	for _, in := range notReady {
		r.rep.Failures = append(r.rep.Failures, fmt.Sprintf("%d devices, %d instances: %s not ready %s after its start although the group was stable "+
			"(its partitions loaded, the devices adding up) for %s; log %s", n, k, in.proc.Name, time.Since(in.started).Round(time.Second),
			r.opts.StableFor+r.opts.ReadyGrace, in.proc.Log))
	}
	g.StableAfter = time.Since(began)
	for _, in := range insts {
		m, err := r.sample(ctx, in)
		if err != nil {
			return g, nil, err
		}
		g.Members = append(g.Members, m)
	}
	if k == 1 && n > 0 {
		var slowest time.Duration
		for _, l := range g.Members[0].Loads {
			slowest = max(slowest, l.Took)
		}
		r.fullLoad[n] = [2]time.Duration{slowest, g.Members[0].Ready}
	}
	for _, m := range g.Members {
		logf("  instance %d: partitions %v, %d devices, heap live %s, heap in use %s, RSS %s (peak %s), ready after %s",
			m.Index, m.Partitions, m.Devices, mb(m.HeapLive), mb(m.HeapInuse), mb(m.VmRSS), mb(m.VmHWM), m.Ready.Round(time.Millisecond))
	}
	if withRebalance {
		rb, fails, err := r.rebalance(ctx, dir, &insts)
		r.rep.Failures = append(r.rep.Failures, fails...)
		if err != nil {
			return g, nil, err
		}
		rb.Devices = n
		return g, rb, nil
	}
	return g, nil, nil
}

// stopAll SIGTERMs the instances at once and waits for them.
func stopAll(insts []*instance) []string {
	var (
		mu    sync.Mutex
		fails []string
		wg    sync.WaitGroup
	)
	for _, in := range insts {
		wg.Go(func() {
			if err := in.proc.Stop(); err != nil {
				mu.Lock()
				fails = append(fails, err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(fails)
	return fails
}

// waitStable waits until every instance is ready, the partitions of their last generations
// split 0…P−1 between them, their devices add up to n and none of their counts has changed for
// StableFor. When all but readiness has held for StableFor + ReadyGrace it returns the
// instances that are not ready.
func (r *run) waitStable(ctx context.Context, insts []*instance, n int64) ([]*instance, error) {
	deadline := time.Now().Add(r.opts.StableTimeout)
	var (
		last        []int64
		since       time.Time
		lastLog     = time.Now()
		state       string
		partitions  = r.opts.Partitions
		stableSince = time.Time{}
	)
	for {
		counts := make([]int64, len(insts))
		owned := make([][]int, len(insts))
		ready := 0
		var sum int64
		var notReady []*instance
		for i, in := range insts {
			if in.proc.Exited() {
				return nil, fmt.Errorf("%s exited (%v); log %s", in.proc.Name, in.proc.Err(), in.proc.Log)
			}
			if in.isReady(ctx) {
				ready++
			} else {
				notReady = append(notReady, in)
			}
			if m, err := in.metrics(ctx); err == nil {
				counts[i] = int64(m[metricDevices])
				sum += counts[i]
			}
			owned[i] = in.logState().Owned()
		}
		ok := sum == n && coverExactly(owned, partitions)
		switch {
		case !ok:
			stableSince = time.Time{}
		case !slices.Equal(counts, last) || stableSince.IsZero():
			stableSince = time.Now()
		case ready == len(insts) && time.Since(stableSince) >= r.opts.StableFor:
			return nil, nil
		case time.Since(stableSince) >= r.opts.StableFor+r.opts.ReadyGrace:
			return notReady, nil
		}
		if !slices.Equal(counts, last) {
			since = time.Now()
		}
		last = counts
		state = fmt.Sprintf("%d of %d ready, devices %v (sum %d of %d), partitions %v", ready, len(insts), counts, sum, n, owned)
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			r.opts.Logf("  waiting: %s; unchanged for %s", state, time.Since(since).Round(time.Second))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no stable group after %s: %s", r.opts.StableTimeout, state)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sample measures one instance of a stable group.
func (r *run) sample(ctx context.Context, in *instance) (Instance, error) {
	out := Instance{Index: in.index, Pid: in.proc.Pid(), Ready: in.ready, Log: in.proc.Log}
	before, err := in.metrics(ctx)
	if err != nil {
		return out, err
	}
	out.HeapLiveLastGC = int64(before[metricHeapLive])
	if err := in.forceGC(ctx); err != nil {
		return out, err
	}
	m, err := in.metrics(ctx)
	if err != nil {
		return out, err
	}
	out.Devices = int64(m[metricDevices])
	out.HeapLive = int64(m[metricHeapLive])
	out.HeapInuse = int64(m[metricHeapInuse])
	out.RSS = int64(m[metricRSS])
	if out.VmRSS, out.VmHWM, err = procStatus(in.proc.Pid()); err != nil {
		return out, err
	}
	ls := in.logState()
	out.Partitions = ls.Owned()
	out.Loads = ls.Loads
	out.Generations = len(ls.Joins)
	out.Dropped = ls.Dropped
	return out, nil
}

// rebalance starts a third instance next to the two of *insts (stable), produces one wake per
// partition as soon as it has joined the group, and times each wake until the mock accepted
// its push.
func (r *run) rebalance(ctx context.Context, dir string, insts *[]*instance) (*Rebalance, []string, error) {
	logf := r.opts.Logf
	rb := &Rebalance{}
	third, err := r.startInstance(len(*insts)+1, dir)
	if err != nil {
		return nil, nil, err
	}
	*insts = append(*insts, third)
	began := time.Now()
	deadline := began.Add(r.opts.StableTimeout)
	for len(third.logState().Joins) == 0 {
		if third.proc.Exited() {
			return nil, nil, fmt.Errorf("%s exited (%v); log %s", third.proc.Name, third.proc.Err(), third.proc.Log)
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%s did not join the group within %s; log %s", third.proc.Name, r.opts.StableTimeout, third.proc.Log)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	rb.JoinedAfter = time.Since(began)
	produced := time.Now()
	devs, err := produceWakes(ctx, r.broker.Addr, r.opts.Seed, r.first)
	if err != nil {
		return nil, nil, err
	}
	logf("  rebalance: instance 3 joined %s after its start; %d wakes produced", rb.JoinedAfter.Round(time.Millisecond), len(devs))
	want := make(map[string]int, len(devs)) // apns-id → partition
	for p, d := range devs {
		want[senderbench.APNsID(d.WakeID)] = p
	}
	arrived := map[int][]time.Time{}
	var fails []string
	wakeDeadline := time.Now().Add(r.opts.WakeTimeout)
	for {
		pushes, err := r.mock.Pushes(ctx)
		if err != nil {
			return nil, nil, err
		}
		clear(arrived)
		for _, p := range pushes {
			if part, ok := want[p.ApnsID]; ok {
				arrived[part] = append(arrived[part], p.ReceivedAt)
			}
		}
		if len(arrived) == len(want) {
			break
		}
		if time.Now().After(wakeDeadline) {
			var missing []int
			for _, p := range want {
				if _, ok := arrived[p]; !ok {
					missing = append(missing, p)
				}
			}
			slices.Sort(missing)
			fails = append(fails, fmt.Sprintf("rebalance check: no push within %s for the wakes of partitions %v", r.opts.WakeTimeout, missing))
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Who owns each partition now, and whether it had to load it for this generation.
	owner := map[int]int{}
	states := make([]LogState, len(*insts))
	for i, in := range *insts {
		states[i] = in.logState()
		for _, p := range states[i].Owned() {
			owner[p] = i
		}
	}
	for p := range r.opts.Partitions {
		w := WakeWait{Partition: p, Owner: -1}
		if i, ok := owner[p]; ok {
			w.Owner = (*insts)[i].index
			if l, ok := states[i].LastLoad(p); ok && !l.At.Before(began) {
				w.LoadedAnew, w.LoadTook = true, l.Took
			}
		}
		if ts, ok := arrived[p]; ok {
			w.Wait = slices.MinFunc(ts, func(a, b time.Time) int { return a.Compare(b) }).Sub(produced)
			if len(ts) > 1 {
				fails = append(fails, fmt.Sprintf("rebalance check: the wake of partition %d was pushed %d times", p, len(ts)))
			}
			rb.MaxWait = max(rb.MaxWait, w.Wait)
		} else if _, ok := devs[p]; ok {
			w.Wait = -1
		}
		rb.Wakes = append(rb.Wakes, w)
	}
	logf("  rebalance: slowest wake %s", rb.MaxWait.Round(time.Millisecond))
	return rb, fails, nil
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// memTotal is /proc/meminfo's MemTotal, in GiB.
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}
