package runner

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/loadtest/mockhost"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/procs"
	"github.com/wakepush/wakepush/loadtest/scenario"
	"github.com/wakepush/wakepush/loadtest/xmppserver"

	"github.com/wakepush/wakepush/deploy/local/freeport"
)

const (
	teamID     = "LOADTEAM01"
	keyID      = "LOADKEY001"
	eventToken = "loadtest-event-token"
	fcmProject = "wakepush-loadtest"
)

// arrivalLog maps the mocks' pushes to devices by token.
type arrivalLog struct {
	tokens map[string]int32
	warm   map[string]bool // the warm-up devices' tokens: counted, never analysed
}

// stack is the pipeline under test.
type stack struct {
	kafka      *kafkabroker.Broker
	ch         *chdb.Server
	chTmp      string
	chTCP      string
	database   string
	mocks      providerMocks
	servers    []*xmppserver.Server
	ingestURLs []string
	procs      []*procs.Process
	mode       string
	arrivals   *arrivalLog
	admins     []adminAddr // every service's admin address (readiness)
	pprofs     []adminAddr // every service's WAKEPUSH_PPROF_ADDR, for -profile (profiling is off unless set)

	// Chaos (chaos_stack.go, faults.go).
	kafkaAddr   string        // the broker's bootstrap address
	broker      *procs.Broker // the broker as a child process (scenarios that freeze or restart it), else nil
	procMu      sync.Mutex    // guards procs while faults restart processes
	chLogPath   string        // clickhouse.log, appended to by a restart
	chLog       *os.File      // open while a restarted ClickHouse writes to it
	loadStarted func(start time.Time)
}

// startStack starts Kafka, ClickHouse (unless opts.ClickHouseTCP is set), the provider mocks,
// the XMPP servers and the four services.
func startStack(ctx context.Context, opts Options, sc *scenario.Scenario, plan *scenario.Plan, wp *scenario.WarmupPlan,
	logf func(string, ...any)) (_ *stack, err error) {
	st := &stack{arrivals: &arrivalLog{tokens: map[string]int32{}, warm: map[string]bool{}}}
	defer func() {
		if err != nil {
			st.close() // st, not the result: `return nil, err` has already set the result to nil
		}
	}()
	for _, d := range plan.Devices {
		st.arrivals.tokens[d.Token] = int32(d.Index)
	}
	if wp != nil {
		for _, d := range wp.Devices {
			st.arrivals.warm[d.Token] = true
		}
	}
	dir := opts.ReportDir
	began := time.Now()

	// Build first: nothing else runs meanwhile.
	bins := map[string]string{}
	for _, svc := range []string{"ingest", "coalescer", "sender", "recorder"} {
		b, err := opts.Build("github.com/wakepush/wakepush/services/" + svc)
		if err != nil {
			return nil, err
		}
		bins[svc] = b
	}
	if !opts.InProcessMocks {
		b, err := opts.Build(MocksPackage)
		if err != nil {
			return nil, err
		}
		bins["mocks"] = b
	}
	logf("built the services in %s", time.Since(began).Round(time.Millisecond))

	if !opts.InProcessBroker || sc.HasFault(scenario.FaultKafkaFreeze, scenario.FaultKafkaRestart) {
		// A process of its own by default: its CPU is then its own in the report (not the
		// generator's), and the generator's heap and goroutines do not slow the broker.
		// fsync per batch only when the broker is to be SIGKILLed: without, a crash loses
		// acknowledged records by design (kfake, like Kafka, flushes on segment roll).
		killed := slices.ContainsFunc(sc.Faults, func(f scenario.Fault) bool { return f.Kind == scenario.FaultKafkaRestart && f.Signal == "kill" })
		if st.broker, err = startBrokerChild(ctx, opts, killed); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		st.kafkaAddr = st.broker.Addr
	} else {
		st.kafka, err = kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0"})
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		st.kafkaAddr = st.kafka.Addr()
	}
	if sc.HasFault(scenario.FaultClickHouseStop) && opts.ClickHouseTCP != "" {
		return nil, errors.New("the scenario stops ClickHouse: it needs a ClickHouse of its own, not -clickhouse")
	}
	st.chTCP = opts.ClickHouseTCP
	if st.chTCP == "" {
		st.chTmp, err = os.MkdirTemp("", "loadtest-clickhouse-")
		if err != nil {
			return nil, err
		}
		st.chLogPath = filepath.Join(dir, "clickhouse.log")
		logFile, err := os.Create(st.chLogPath)
		if err != nil {
			return nil, err
		}
		defer logFile.Close()
		st.ch, err = chdb.Start(ctx, chdb.StartOptions{DataDir: filepath.Join(st.chTmp, "data"), Output: logFile})
		if err != nil {
			return nil, fmt.Errorf("clickhouse: %w", err)
		}
		st.chTCP = st.ch.TCPAddr
	}
	st.database = fmt.Sprintf("loadtest_%d", time.Now().UnixNano())

	_, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		return nil, err
	}
	write := func(name string, b []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, b, 0o600)
	}
	keyFile, err := write("apns.p8", p8)
	if err != nil {
		return nil, err
	}
	mcfg := mockhost.Config{Dir: dir, Latency: mockhost.Latency{Dist: sc.Mock.Latency.Dist, MinNS: int64(sc.Mock.Latency.Min),
		MeanNS: int64(sc.Mock.Latency.Mean), MaxNS: int64(sc.Mock.Latency.Max)}, Rate500: sc.Mock.Rate500, Rate503: sc.Mock.Rate503,
		TeamID: teamID, KeyID: keyID, KeyFile: keyFile, FCMProject: fcmProject, FCMMaxRecords: 4*len(plan.Publishes) + 1000}
	if wp != nil {
		mcfg.FCMMaxRecords += 4 * len(wp.Publishes)
	}
	for _, a := range sc.Apps {
		if a.Platform == "apns" {
			mcfg.Topics = append(mcfg.Topics, a.ID)
		}
	}
	// With -profile, the mocks' process is profiled beside the services (harness CPU, target 7).
	mocksPprof := ""
	if opts.Profile > 0 && bins["mocks"] != "" {
		if mocksPprof, err = freeport.Addr(); err != nil {
			return nil, err
		}
	}
	if st.mocks, err = startMocks(ctx, bins["mocks"], dir, mcfg, mocksPprof); err != nil {
		return nil, fmt.Errorf("provider mocks: %w", err)
	}
	if mocksPprof != "" {
		st.pprofs = append(st.pprofs, adminAddr{name: "mocks", addr: mocksPprof})
	}
	inf := st.mocks.info()
	var apps strings.Builder
	apps.WriteString("apps:\n")
	for _, a := range sc.Apps {
		fmt.Fprintf(&apps, "  - id: %s\n    platform: %s\n    coalesce:\n      min_interval: %s\n", a.ID, a.Platform, a.MinInterval.D())
		if a.Platform == "apns" {
			fmt.Fprintf(&apps, "    apns: {topic: %s, team_id: %s, key_id: %s, key_file: %q, endpoint: %q, ca_file: %q}\n",
				a.ID, teamID, keyID, keyFile, inf.APNsURL, inf.APNsCAFile)
		} else {
			fmt.Fprintf(&apps, "    fcm: {project_id: %s, credentials_file: %q, endpoint: %q, ca_file: %q}\n",
				fcmProject, inf.FCMServiceAccount, inf.FCMURL, inf.FCMCAFile)
		}
	}
	appsFile, err := write("apps.yaml", []byte(apps.String()))
	if err != nil {
		return nil, err
	}

	for i := range sc.XMPP.Servers {
		s, err := xmppserver.Listen("127.0.0.1:0", sc.ComponentJID(i), fmt.Sprintf("loadtest-secret-%d", i+1), sc.ServerDomain(i))
		if err != nil {
			return nil, err
		}
		st.servers = append(st.servers, s)
	}

	common := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + st.kafkaAddr,
		"WAKEPUSH_KAFKA_PARTITIONS=" + strconv.Itoa(cmp.Or(opts.KafkaPartitions, DefaultKafkaPartitions)),
		"WAKEPUSH_APPS_FILE=" + appsFile,
		"WAKEPUSH_LOG_FORMAT=text",
		"WAKEPUSH_LOG_LEVEL=info",
	}
	if opts.Race {
		common = append(common, "GORACE=atexit_sleep_ms=10")
	}
	if opts.ServiceProcs > 0 {
		common = append(common, "GOMAXPROCS="+strconv.Itoa(opts.ServiceProcs))
	}
	start := func(name, bin string, env []string) error {
		admin, err := freeport.Addr()
		if err != nil {
			return err
		}
		pprofAddr, err := freeport.Addr()
		if err != nil {
			return err
		}
		p, err := procs.Start(name, bin, filepath.Join(dir, name+".log"),
			append(append([]string{"WAKEPUSH_ADMIN_ADDR=" + admin, "WAKEPUSH_PPROF_ADDR=" + pprofAddr}, common...), env...))
		if err != nil {
			return err
		}
		st.procs = append(st.procs, p)
		st.admins = append(st.admins, adminAddr{name: name, addr: admin})
		st.pprofs = append(st.pprofs, adminAddr{name: name, addr: pprofAddr})
		return p.WaitReady(ctx, "http://"+admin+"/readyz", 90*time.Second)
	}
	if err := start("recorder", bins["recorder"], []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://" + st.chTCP + "/" + st.database}); err != nil {
		return nil, err
	}
	for i := range sc.Instances.Sender {
		if err := start(scenario.ServiceName("sender", i, sc.Instances.Sender), bins["sender"], nil); err != nil {
			return nil, err
		}
	}
	for i := range sc.Instances.Coalescer {
		if err := start(scenario.ServiceName("coalescer", i, sc.Instances.Coalescer), bins["coalescer"], nil); err != nil {
			return nil, err
		}
	}

	ingestEnv := []string{
		"WAKEPUSH_NODE_KEYS=lt1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		"WAKEPUSH_DEVICE_ID_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)),
		"WAKEPUSH_INGEST_EVENT_TOKENS=loadtest:" + eventToken,
		// The generator registers every device from one address: no per-client limit.
		"WAKEPUSH_INGEST_CLIENT_RATE=0",
	}
	st.mode = opts.ComponentMode
	if st.mode == "" || st.mode == "auto" {
		st.mode = "single"
		if out, _ := exec.Command(bins["ingest"], "-h").CombinedOutput(); bytes.Contains(out, []byte("WAKEPUSH_COMPONENTS")) {
			st.mode = "list"
		}
	}
	switch st.mode {
	case "list":
		var comps, secrets []string
		for _, s := range st.servers {
			comps = append(comps, s.JID+"@"+s.Addr())
			secrets = append(secrets, s.JID+"="+s.Secret)
		}
		httpAddr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		env := append(slicesClone(ingestEnv), "WAKEPUSH_INGEST_HTTP_ADDR="+httpAddr, "WAKEPUSH_COMPONENT_JID="+st.servers[0].JID,
			"WAKEPUSH_COMPONENTS="+strings.Join(comps, ","), "WAKEPUSH_COMPONENT_SECRETS="+strings.Join(secrets, ","))
		if err := start("ingest", bins["ingest"], env); err != nil {
			return nil, err
		}
		st.ingestURLs = append(st.ingestURLs, "http://"+httpAddr)
	case "single":
		for i, s := range st.servers {
			httpAddr, err := freeport.Addr()
			if err != nil {
				return nil, err
			}
			env := append(slicesClone(ingestEnv), "WAKEPUSH_INGEST_HTTP_ADDR="+httpAddr, "WAKEPUSH_COMPONENT_ADDR="+s.Addr(),
				"WAKEPUSH_COMPONENT_JID="+s.JID, "WAKEPUSH_COMPONENT_SECRET="+s.Secret)
			if err := start(fmt.Sprintf("ingest-%d", i+1), bins["ingest"], env); err != nil {
				return nil, err
			}
			st.ingestURLs = append(st.ingestURLs, "http://"+httpAddr)
		}
	default:
		return nil, fmt.Errorf("component mode %q: want auto, list or single", st.mode)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, s := range st.servers {
		if err := s.WaitConnected(wctx, 1); err != nil {
			return nil, err
		}
	}
	logf("stack up in %s (%d ingest process(es), component mode %s)", time.Since(began).Round(time.Millisecond), len(st.ingestURLs), st.mode)
	return st, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// stopServices stops the services (ingest first) and returns their problems.
func (st *stack) stopServices() []error {
	var errs []error
	for i := len(st.procs) - 1; i >= 0; i-- {
		if err := st.procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	st.procs = nil
	return errs
}

func (st *stack) close() {
	st.stopServices()
	for _, s := range st.servers {
		s.Close()
	}
	if st.mocks != nil {
		st.mocks.close()
	}
	if st.ch != nil {
		st.ch.Stop()
	}
	if st.chLog != nil {
		st.chLog.Close()
	}
	if st.chTmp != "" {
		os.RemoveAll(st.chTmp)
	}
	if st.kafka != nil {
		st.kafka.Close()
	}
	if st.broker != nil {
		st.broker.Close()
	}
}
