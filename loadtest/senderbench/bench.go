// Package senderbench measures the CPU the wakepush sender binary spends per delivered APNs push
// next to a bare sideshow/apns2 client loop sending the same pushes (issue 11): both against
// the APNs mock as a child process, the sender fed from a Kafka broker child process with
// pre-registered devices and one wake per device, each process's CPU read from /proc over the
// send phase only. cmd/sender-bench is its command; loadtest/README.md has the how-to.
package senderbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/deploy/local/proccpu"
	"github.com/wakepush/wakepush/loadtest/kafkatopic"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/procs"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// Packages the benchmark builds.
const (
	SenderPackage = "github.com/wakepush/wakepush/services/sender"
	BenchPackage  = "github.com/wakepush/wakepush/loadtest/cmd/sender-bench" // the bare child
)

// The benchmark's app, key and consumer group.
const (
	App         = "im.wakepush.bench"
	TeamID      = "BENCHTEAM1"
	KeyID       = "BENCHKEY01"
	senderGroup = "wakepush-sender" // the sender's default WAKEPUSH_SENDER_GROUP
)

// Options configure a benchmark.
type Options struct {
	Devices     int           // pre-registered iOS devices, one wake each (default 100,000)
	Runs        int           // runs, each measuring every target once, in alternating order (default 3)
	Concurrency int           // the sender's WAKEPUSH_SENDER_CONCURRENCY and the bare loop's goroutines (default 64)
	Conns       int           // APNs HTTP/2 connections (WAKEPUSH_SENDER_APNS_CONNECTIONS; bare clients) (default 1)
	MockLatency time.Duration // the mock's added latency per push (default 0)
	Targets     []string      // TargetSender and/or TargetBare (default both)
	Seed        int64         // devices and tokens (same seed, same devices)
	// Dir holds the run's files: keys, apps files, devices, each process's log (created if
	// missing).
	Dir string
	// Build builds a main package and returns the binary (procs.GoBuild; stacktest.Build in
	// tests). The sender is built without -race by the command.
	Build func(pkg string) (string, error)
	// BareBinary is the sender-bench binary to run as the bare child (with BareFlag); empty
	// builds BenchPackage.
	BareBinary string
	// SenderBinary is the sender binary to measure; empty builds SenderPackage from the
	// workspace (set it to compare another version of the sender, e.g. a commit's).
	SenderBinary string
	// StallTimeout fails a sender run when neither the mock's accepted count, the delivery
	// records nor the committed offsets moved for this long (default 60 s).
	StallTimeout time.Duration
	// ReadyTimeout bounds the sender's start, registration catch-up included (default 5 min).
	ReadyTimeout time.Duration
	// Logf receives progress messages (nil: none).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.Devices == 0 {
		o.Devices = 100_000
	}
	if o.Runs == 0 {
		o.Runs = 3
	}
	if o.Concurrency == 0 {
		o.Concurrency = 64
	}
	if o.Conns == 0 {
		o.Conns = 1
	}
	if len(o.Targets) == 0 {
		o.Targets = []string{TargetSender, TargetBare}
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 60 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	var errs []error
	if o.Devices < 1 || o.Runs < 1 || o.Concurrency < 1 {
		errs = append(errs, errors.New("devices, runs and concurrency must be at least 1"))
	}
	if o.Conns < 1 || o.Conns > 64 {
		errs = append(errs, fmt.Errorf("conns %d: want 1…64 (the sender's limit)", o.Conns))
	}
	if o.MockLatency < 0 {
		errs = append(errs, errors.New("mock latency must not be negative"))
	}
	seen := map[string]bool{}
	for _, t := range o.Targets {
		if t != TargetSender && t != TargetBare {
			errs = append(errs, fmt.Errorf("target %q: want %s or %s", t, TargetSender, TargetBare))
		}
		if seen[t] {
			errs = append(errs, fmt.Errorf("target %q twice", t))
		}
		seen[t] = true
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no directory for the run's files"))
	}
	if o.Build == nil {
		errs = append(errs, errors.New("no Build function"))
	}
	return errors.Join(errs...)
}

// bench is one benchmark's shared state.
type bench struct {
	opts    Options
	bins    map[string]string
	keyFile string
	devs    []Device
	byToken map[string]*Device
	devFile string // for the bare child
}

// Run builds the binaries, measures every target Runs times (alternating which goes first) and
// returns the report. Lost pushes, answers other than 200, payloads that differ from the
// sender's and processes that fail are the report's Failures; an error means the benchmark
// could not be carried out.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("sender-bench: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("sender-bench: %w", err)
	}
	b := &bench{opts: opts, bins: map[string]string{}}
	logf := opts.Logf
	began := time.Now()
	pkgs := []string{procs.BrokerPackage, MockPackage}
	if slices.Contains(opts.Targets, TargetSender) {
		if opts.SenderBinary != "" {
			b.bins[SenderPackage] = opts.SenderBinary
		} else {
			pkgs = append(pkgs, SenderPackage)
		}
	}
	if slices.Contains(opts.Targets, TargetBare) {
		if opts.BareBinary != "" {
			b.bins[BenchPackage] = opts.BareBinary
		} else {
			pkgs = append(pkgs, BenchPackage)
		}
	}
	for _, pkg := range pkgs {
		bin, err := opts.Build(pkg)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", pkg, err)
		}
		b.bins[pkg] = bin
	}
	logf("built %d binaries in %s", len(pkgs), time.Since(began).Round(time.Millisecond))

	_, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	b.keyFile = filepath.Join(opts.Dir, "apns.p8")
	if err := os.WriteFile(b.keyFile, p8, 0o600); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	b.devs = MakeDevices(opts.Devices, opts.Seed, time.Now())
	b.byToken = make(map[string]*Device, len(b.devs))
	for i := range b.devs {
		b.byToken[b.devs[i].Token] = &b.devs[i]
	}
	if slices.Contains(opts.Targets, TargetBare) {
		b.devFile = filepath.Join(opts.Dir, "devices.txt")
		if err := WriteDevicesFile(b.devFile, b.devs); err != nil {
			return nil, err
		}
	}

	rep := &Report{
		Config: Config{Devices: opts.Devices, Runs: opts.Runs, Concurrency: opts.Concurrency, Conns: opts.Conns,
			MockLatency: opts.MockLatency, Partitions: partitions, Targets: opts.Targets, SenderBinary: opts.SenderBinary},
		Host:       fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		Started:    time.Now(),
		LoadBefore: loadAvg(),
	}
	for run := 1; run <= opts.Runs; run++ {
		order := slices.Clone(opts.Targets)
		if run%2 == 0 {
			slices.Reverse(order)
		}
		for _, target := range order {
			m, fails, err := b.measure(ctx, run, target)
			if err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", run, target, err)
			}
			for _, f := range fails {
				rep.Failures = append(rep.Failures, fmt.Sprintf("run %d, %s: %s", run, target, f))
			}
			if m != nil {
				rep.Measurements = append(rep.Measurements, *m)
				r := RowOf(*m)
				logf("run %d %-10s %d pushes in %.2f s (%.0f/s): target %.1f µs/push, broker %.1f, mock %.1f, harness %.1f",
					run, target, r.Pushes, r.WallS, r.PushesPerS, r.TargetUS, r.BrokerUS, r.MockUS, r.HarnessUS)
			}
			for _, f := range fails {
				logf("run %d %s: FAIL: %s", run, target, f)
			}
		}
	}
	rep.LoadAfter = loadAvg()
	rep.Finish()
	return rep, nil
}

// loadAvg is the first three fields of /proc/loadavg ("" when unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// cpuOf reads the CPU time of each named process.
func cpuOf(pids map[string]int) (map[string]time.Duration, error) {
	out := make(map[string]time.Duration, len(pids))
	for name, pid := range pids {
		d, err := proccpu.Read(pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = d
	}
	return out, nil
}

func cpuDelta(a, b map[string]time.Duration) map[string]time.Duration {
	out := make(map[string]time.Duration, len(a))
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}

// measure runs one target once on a fresh broker and mock.
func (b *bench) measure(ctx context.Context, run int, target string) (m *Measurement, fails []string, err error) {
	dir := filepath.Join(b.opts.Dir, fmt.Sprintf("run%d-%s", run, target))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	broker, err := procs.StartBroker(ctx, b.bins[procs.BrokerPackage], filepath.Join(dir, "kafka.log"), false)
	if err != nil {
		return nil, nil, err
	}
	defer broker.Close()
	mk, err := startMock(ctx, b.bins[MockPackage], dir, TeamID, KeyID, b.keyFile, App, 2*len(b.devs), b.opts.MockLatency)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err := mk.stop(); err != nil {
			fails = append(fails, fmt.Sprintf("apns mock: %v", err))
		}
	}()
	switch target {
	case TargetSender:
		m, fails, err = b.measureSender(ctx, dir, broker, mk)
	case TargetBare:
		m, fails, err = b.measureBare(ctx, dir, broker, mk)
	}
	if err != nil || m == nil {
		return nil, fails, err
	}
	m.Run, m.Target = run, target
	fails = append(fails, b.checkMock(ctx, mk)...)
	return m, fails, nil
}

// measureSender: topics, registrations, the sender up and caught up; then, measured, the wakes
// produced and every one delivered, recorded and committed.
func (b *bench) measureSender(ctx context.Context, dir string, broker *procs.Broker, mk *mock) (m *Measurement, fails []string, err error) {
	n := len(b.devs)
	if err := createTopics(ctx, broker.Addr); err != nil {
		return nil, nil, err
	}
	w := newWriter(broker.Addr)
	defer closeWriter(w)
	now := time.Now()
	if err := produceAll(ctx, w, b.devs, func(d *Device) (kafka.Message, error) {
		return message(topics.Registrations, records.RegistrationKey(d.DeviceID, d.RegistrationID), registrationRecord(d, App, now))
	}); err != nil {
		return nil, nil, fmt.Errorf("register the devices: %w", err)
	}
	apps := fmt.Sprintf("apps:\n  - id: %s\n    platform: apns\n    apns: {topic: %s, team_id: %s, key_id: %s, key_file: %q, endpoint: %q, ca_file: %q}\n",
		App, App, TeamID, KeyID, b.keyFile, mk.url, mk.caFile)
	appsFile := filepath.Join(dir, "apps.yaml")
	if err := os.WriteFile(appsFile, []byte(apps), 0o644); err != nil {
		return nil, nil, err
	}
	admin, err := freeport.Addr()
	if err != nil {
		return nil, nil, err
	}
	sender, err := procs.Start("sender", b.bins[SenderPackage], filepath.Join(dir, "sender.log"), []string{
		"WAKEPUSH_KAFKA_BROKERS=" + broker.Addr,
		"WAKEPUSH_KAFKA_PARTITIONS=" + strconv.Itoa(partitions),
		"WAKEPUSH_APPS_FILE=" + appsFile,
		"WAKEPUSH_ADMIN_ADDR=" + admin,
		"WAKEPUSH_LOG_FORMAT=text",
		"WAKEPUSH_LOG_LEVEL=info",
		"WAKEPUSH_SENDER_CONCURRENCY=" + strconv.Itoa(b.opts.Concurrency),
		"WAKEPUSH_SENDER_APNS_CONNECTIONS=" + strconv.Itoa(b.opts.Conns),
	})
	if err != nil {
		return nil, nil, err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := sender.Stop(); err != nil {
				fails = append(fails, err.Error())
			}
		}
	}
	defer stop()
	began := time.Now()
	if err := sender.WaitReady(ctx, "http://"+admin+"/readyz", b.opts.ReadyTimeout); err != nil {
		return nil, nil, err
	}
	b.opts.Logf("sender ready in %s with %d registrations", time.Since(began).Round(time.Millisecond), n)

	pids := map[string]int{ProcTarget: sender.Pid(), ProcBroker: broker.Pid(), ProcMock: mk.proc.Pid(), ProcHarness: os.Getpid()}
	cpu0, err := cpuOf(pids)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	if err := produceAll(ctx, w, b.devs, func(d *Device) (kafka.Message, error) {
		return message(topics.Wakes, d.DeviceID, wakeRecord(d, App, time.Now()))
	}); err != nil {
		return nil, nil, fmt.Errorf("produce the wakes: %w", err)
	}
	kc := kafkatopic.Open(broker.Addr)
	defer kc.Close()
	accepted, stall, err := b.waitDelivered(ctx, kc, mk, sender)
	if err != nil {
		return nil, nil, err
	}
	t1 := time.Now()
	cpu1, err := cpuOf(pids)
	if err != nil {
		return nil, nil, err
	}
	if stall != "" {
		return nil, append(fails, stall), nil
	}
	stop()
	fails = append(fails, b.checkDeliveries(ctx, kc)...)
	return &Measurement{Pushes: int(min(accepted, int64(n))), Wall: t1.Sub(t0), CPU: cpuDelta(cpu0, cpu1)}, fails, nil
}

// waitDelivered waits until the mock accepted every push, push.deliveries holds a record per
// wake and the sender's group has committed every wake. It returns the accepted count, or a
// description of where it stalled.
func (b *bench) waitDelivered(ctx context.Context, kc *kafkatopic.Client, mk *mock, sender *procs.Process) (int64, string, error) {
	n := int64(len(b.devs))
	var last [3]int64
	lastMove := time.Now()
	for {
		acc, err := mk.accepted(ctx)
		if err != nil {
			return 0, "", err
		}
		del, err := kc.Count(ctx, topics.Deliveries)
		if err != nil {
			return 0, "", err
		}
		lag, err := kc.Lag(ctx, senderGroup, topics.Wakes)
		if err != nil {
			return 0, "", err
		}
		if acc >= n && del >= n && lag == 0 {
			return acc, "", nil
		}
		state := fmt.Sprintf("mock accepted %d of %d pushes, %d delivery records, %d wakes not committed", acc, n, del, lag)
		if now := [3]int64{acc, del, lag}; now != last {
			last, lastMove = now, time.Now()
		} else if time.Since(lastMove) > b.opts.StallTimeout {
			return acc, fmt.Sprintf("no progress for %s: %s (log %s)", b.opts.StallTimeout, state, sender.Log), nil
		}
		select {
		case <-sender.Done():
			return acc, fmt.Sprintf("the sender exited (%v): %s (log %s)", sender.Err(), state, sender.Log), nil
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkDeliveries: one ACCEPTED delivery (attempt 1, status 200) per wake, nothing dead-lettered,
// no registration written by the sender.
func (b *bench) checkDeliveries(ctx context.Context, kc *kafkatopic.Client) []string {
	var fails []string
	wakes := make(map[string]bool, len(b.devs))
	for i := range b.devs {
		wakes[b.devs[i].WakeID] = false
	}
	var total, bad, unknown, dup int
	var example string
	err := kc.Read(ctx, topics.Deliveries, func(m kafka.Message) {
		total++
		msg, err := records.Decode(kafkaHeader(m, records.HeaderSchema), m.Value)
		d, ok := msg.(*wakepushv1.Delivery)
		if err != nil || !ok {
			bad++
			example = fmt.Sprintf("undecodable delivery record (%v)", err)
			return
		}
		if d.GetOutcome() != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED || d.GetStatusCode() != 200 || d.GetAttempt() != 1 {
			bad++
			example = fmt.Sprintf("wake %s: %s, status %d %s, attempt %d", d.GetWakeId(), d.GetOutcome(), d.GetStatusCode(), d.GetReason(), d.GetAttempt())
		}
		seen, known := wakes[d.GetWakeId()]
		switch {
		case !known:
			unknown++
		case seen:
			dup++
		}
		wakes[d.GetWakeId()] = true
	})
	if err != nil {
		return []string{fmt.Sprintf("read %s: %v", topics.Deliveries, err)}
	}
	missing := 0
	for _, seen := range wakes {
		if !seen {
			missing++
		}
	}
	if total != len(b.devs) || bad+unknown+dup+missing > 0 {
		fails = append(fails, fmt.Sprintf("%s: %d records for %d wakes: %d not ACCEPTED with 200 on the first attempt (e.g. %s), %d for unknown wakes, %d duplicates, %d wakes without one",
			topics.Deliveries, total, len(b.devs), bad, example, unknown, dup, missing))
	}
	for topic, want := range map[string]int64{topics.WakesDLQ: 0, topics.Registrations: int64(len(b.devs))} {
		if got, err := kc.Count(ctx, topic); err != nil {
			fails = append(fails, fmt.Sprintf("count %s: %v", topic, err))
		} else if got != want {
			fails = append(fails, fmt.Sprintf("%s holds %d records, want %d", topic, got, want))
		}
	}
	return fails
}

func kafkaHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// measureBare: the bare child set up and ready; then, measured, its loop from go to its result.
func (b *bench) measureBare(ctx context.Context, dir string, broker *procs.Broker, mk *mock) (*Measurement, []string, error) {
	logPath := filepath.Join(dir, "bare-apns2.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.bins[BenchPackage], BareFlag,
		"-url", mk.url, "-ca-file", mk.caFile, "-key-file", b.keyFile, "-team-id", TeamID, "-key-id", KeyID,
		"-topic", App, "-devices", b.devFile, "-concurrency", strconv.Itoa(b.opts.Concurrency), "-conns", strconv.Itoa(b.opts.Conns))
	cmd.Stderr = logFile
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the bare apns2 child: %w", err)
	}
	exited := false
	defer func() {
		stdin.Close()
		if !exited { // given up on it: kill it
			cancel()
			cmd.Wait()
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	next := func(what string) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				err := cmd.Wait()
				exited = true
				return "", fmt.Errorf("the bare apns2 child exited before %s (%v); log %s", what, err, logPath)
			}
			return l, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if l, err := next("it was ready"); err != nil {
		return nil, nil, err
	} else if l != bareReady {
		return nil, nil, fmt.Errorf("the bare apns2 child said %q, want %q; log %s", l, bareReady, logPath)
	}

	pids := map[string]int{ProcTarget: cmd.Process.Pid, ProcBroker: broker.Pid(), ProcMock: mk.proc.Pid(), ProcHarness: os.Getpid()}
	cpu0, err := cpuOf(pids)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	if _, err := fmt.Fprintln(stdin, bareGo); err != nil {
		return nil, nil, fmt.Errorf("start the bare apns2 loop: %w", err)
	}
	l, err := next("its result")
	if err != nil {
		return nil, nil, err
	}
	t1 := time.Now()
	cpu1, err := cpuOf(pids)
	if err != nil {
		return nil, nil, err
	}
	var res BareResult
	if err := json.Unmarshal([]byte(l), &res); err != nil {
		return nil, nil, fmt.Errorf("the bare apns2 child's result %q: %w", l, err)
	}
	stdin.Close()
	werr := cmd.Wait()
	exited = true
	var fails []string
	if werr != nil {
		fails = append(fails, fmt.Sprintf("the bare apns2 child: %v (log %s)", werr, logPath))
	}
	n := len(b.devs)
	if res.Pushes != n || res.OK != n || res.Errors > 0 || len(res.Statuses) != 1 {
		fails = append(fails, fmt.Sprintf("bare apns2: %d of %d pushes answered 200, statuses %v, reasons %v, %d errors (first: %s)",
			res.OK, n, res.Statuses, res.Reasons, res.Errors, res.FirstErr))
	}
	return &Measurement{Pushes: res.OK, Wall: t1.Sub(t0), CPU: cpuDelta(cpu0, cpu1), SelfCPU: time.Duration(res.CPUNanos)}, fails, nil
}

// checkMock: the mock accepted every push exactly once, answered nothing but 200, and each push
// carries the headers and payload the sender sends for the device's wake.
func (b *bench) checkMock(ctx context.Context, mk *mock) []string {
	var fails []string
	n := int64(len(b.devs))
	acc, err := mk.accepted(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	if acc != n {
		fails = append(fails, fmt.Sprintf("the APNs mock accepted %d pushes, want %d", acc, n))
	}
	answers, err := mk.answers(ctx)
	if err != nil {
		return append(fails, err.Error())
	}
	for k, v := range answers {
		if k != "200 " {
			fails = append(fails, fmt.Sprintf("the APNs mock answered %d request(s) %s", v, k))
		}
	}
	pushes, err := mk.pushes(ctx)
	if err != nil {
		return append(fails, err.Error())
	}
	return append(fails, CheckPushes(pushes, b.byToken, App, TeamID, KeyID)...)
}

// CheckPushes reports pushes that are not exactly one per device, each with the apns-id,
// collapse id, topic, push type, priority, expiration (±2 min of arrival + 1 h) and payload
// bytes that Notification gives for the device's wake, authenticated with the team's key.
func CheckPushes(pushes []apnsmock.Push, byToken map[string]*Device, topic, team, keyID string) []string {
	var fails []string
	count := make(map[string]int, len(byToken))
	kinds := map[string]int{}
	examples := map[string]string{}
	bad := func(kind, example string) {
		kinds[kind]++
		if _, ok := examples[kind]; !ok {
			examples[kind] = example
		}
	}
	for i := range pushes {
		p := &pushes[i]
		d, ok := byToken[p.Token]
		if !ok {
			bad("unknown token", p.Token)
			continue
		}
		count[p.Token]++
		want, err := Notification(topic, d.Token, d.DeviceID, d.WakeID, p.ReceivedAt)
		if err != nil {
			bad("payload", err.Error())
			continue
		}
		if wb, _ := want.Payload.([]byte); string(p.Payload) != string(wb) {
			bad("payload", fmt.Sprintf("%s, want %s", p.Payload, want.Payload))
		}
		if p.ApnsID != want.ApnsID {
			bad("apns-id", fmt.Sprintf("%s, want %s", p.ApnsID, want.ApnsID))
		}
		if p.CollapseID != want.CollapseID {
			bad("apns-collapse-id", fmt.Sprintf("%s, want %s", p.CollapseID, want.CollapseID))
		}
		if p.Topic != want.Topic || p.PushType != string(want.PushType) || p.Priority != want.Priority {
			bad("topic/push type/priority", fmt.Sprintf("%s/%s/%d, want %s/%s/%d", p.Topic, p.PushType, p.Priority, want.Topic, want.PushType, want.Priority))
		}
		if d := time.Unix(p.Expiration, 0).Sub(want.Expiration); d < -2*time.Minute || d > 2*time.Minute {
			bad("apns-expiration", fmt.Sprintf("%d, want ≈ %d (arrival + %s)", p.Expiration, want.Expiration.Unix(), AlertExpiry))
		}
		if p.Auth != "token" || p.TeamID != team || p.KeyID != keyID {
			bad("authentication", fmt.Sprintf("%s %s/%s", p.Auth, p.TeamID, p.KeyID))
		}
	}
	missing, dups := 0, 0
	for tok := range byToken {
		switch c := count[tok]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	if missing > 0 || dups > 0 || len(pushes) != len(byToken) {
		fails = append(fails, fmt.Sprintf("the APNs mock recorded %d pushes for %d devices: %d devices got none, %d pushes were duplicates",
			len(pushes), len(byToken), missing, dups))
	}
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fails = append(fails, fmt.Sprintf("%d push(es) with a wrong %s, e.g. %s", kinds[k], k, examples[k]))
	}
	return fails
}
