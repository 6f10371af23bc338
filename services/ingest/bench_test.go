package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/proccpu"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/ingest/internal/fakexmpp"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// loadRig is ingest's component path in-process (component → xep0357 → core → the real Kafka
// producer) against a real kfake broker and the fake XMPP server.
type loadRig struct {
	conn    *fakexmpp.Conn
	regs    []identity.Registration
	refused int // answers other than result
}

func newLoadRig(b *testing.B) *loadRig {
	b.Helper()
	kcfg := testenv.Kafka(b)
	kcfg.BatchTimeout = 2 * time.Millisecond // the production default (WAKEPUSH_KAFKA_BATCH_TIMEOUT)
	producer, err := kafkax.NewProducer(kcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { producer.Close() })
	devs := devices.New()
	devs.MarkCaughtUp()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ing, err := core.New(core.Config{Apps: testenv.Apps(b), Keys: testenv.Keys(b), Producer: producer, Devices: devs,
		ProduceTimeout: 5 * time.Second, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	fx, err := fakexmpp.Listen("secret")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fx.Close() })
	comp, err := newComponent(component.Config{Addr: fx.Addr(), JID: "push.example.org", Secret: "secret", Log: log}, ing, nil, core.Rate{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { comp.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	conn, err := fx.Accept(10 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return newRigOn(b, conn)
}

func newRigOn(b *testing.B, conn *fakexmpp.Conn) *loadRig {
	r := &loadRig{conn: conn}
	keys := testenv.Keys(b)
	for i := 0; i < 1000; i++ {
		r.regs = append(r.regs, keys.Register(testenv.IOSApp, "apns", fmt.Sprintf("%064x", i+1)))
	}
	// Warm up the producer's connections and metadata.
	r.run(b, 500, 64, 0)
	return r
}

// newBinaryRig runs the ingest binary (GOMAXPROCS=1: one core) against kfake and the fake XMPP
// server, both in the test process; it returns the rig, the binary's pid, its pprof address and
// its admin address (metrics).
func newBinaryRig(b *testing.B) (r *loadRig, pid int, pprofAddr, adminAddr string) {
	b.Helper()
	kcfg := testenv.Kafka(b)
	fx, err := fakexmpp.Listen("secret")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fx.Close() })
	pprofAddr = stacktest.FreeAddr(b)
	env := []string{"GOMAXPROCS=1", "WAKEPUSH_LOG_LEVEL=warn", "WAKEPUSH_KAFKA_BATCH_TIMEOUT=2ms",
		"WAKEPUSH_COMPONENT_ADDR=" + fx.Addr(), "WAKEPUSH_COMPONENT_JID=push.example.org", "WAKEPUSH_COMPONENT_SECRET=secret",
		"WAKEPUSH_PPROF_ADDR=" + pprofAddr}
	// WAKEPUSH_BENCH_BINARY_ENV: more of the binary's environment (space-separated K=V, later
	// entries win), e.g. "GOGC=400" to try a setting on the binary alone, not the test process.
	env = append(env, strings.Fields(os.Getenv("WAKEPUSH_BENCH_BINARY_ENV"))...)
	p, _, adminAddr := startIngestAdmin(b, kcfg, nil, env...)
	conn, err := fx.Accept(15 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return newRigOn(b, conn), p.Pid(), pprofAddr, adminAddr
}

// procCPU is the CPU time (user + system) process pid used so far.
func procCPU(b *testing.B, pid int) time.Duration {
	d, err := proccpu.Read(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchBinary measures the ingest binary on one core: closed loop (rate 0, 200 in flight) or
// open loop at rate. ingest_cpu_us/publish and publishes/core_s come from the process's CPU
// time, independent of what else runs on the machine.
func benchBinary(b *testing.B, rate float64) {
	r, pid, pprofAddr, adminAddr := newBinaryRig(b)
	if out := os.Getenv("WAKEPUSH_BENCH_CPUPROFILE"); out != "" && b.N > 1 {
		// The binary's CPU profile over the first 3 s (WAKEPUSH_BENCH_CPUPROFILE_SECONDS) of the run.
		secs := cmp.Or(os.Getenv("WAKEPUSH_BENCH_CPUPROFILE_SECONDS"), "3")
		go fetchProfile(b, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+secs, out)
	}
	if out := os.Getenv("WAKEPUSH_BENCH_ALLOCPROFILE"); out != "" && b.N > 1 {
		// The binary's allocations (sampled, since it started) once the run is over.
		defer fetchProfile(b, "http://"+pprofAddr+"/debug/pprof/allocs", out)
	}
	r.refused = 0
	// The binary's own view of the same answers: its histograms of read-to-answer time and of
	// Kafka acknowledgement time, so a tail can be told apart from the harness's (the fake
	// server's reading, the in-process broker).
	answers0 := scrapeHistogram(b, adminAddr, "wakepush_ingest_iq_duration_seconds_bucket", `kind="publish"`)
	acks0 := scrapeHistogram(b, adminAddr, "wakepush_kafka_produce_duration_seconds_bucket", "")
	gc0 := scrapeValue(b, adminAddr, "go_gc_duration_seconds_count")
	cpu0 := procCPU(b, pid)
	b.ResetTimer()
	start := time.Now()
	lat := r.run(b, b.N, 200, rate)
	el := time.Since(start)
	cpu := procCPU(b, pid) - cpu0
	b.ReportMetric(float64(b.N)/el.Seconds(), "publishes/s")
	b.ReportMetric(float64(percentile(lat, .5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, .9).Microseconds())/1000, "p90_ms")
	b.ReportMetric(float64(percentile(lat, .99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(percentile(lat, .999).Microseconds())/1000, "p99.9_ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "ingest_cpu_us/publish")
	// The binary's GC cycles per second: with a live heap of a few MB, each cycle's mark phase
	// (a few ms on its one core) is what lifts the answer latency's p90 and p99 (docs/performance.md).
	b.ReportMetric((scrapeValue(b, adminAddr, "go_gc_duration_seconds_count")-gc0)/el.Seconds(), "ingest_gc/s")
	b.ReportMetric(float64(r.refused), "non_result_answers")
	b.ReportMetric(histogramP99(scrapeHistogram(b, adminAddr, "wakepush_ingest_iq_duration_seconds_bucket", `kind="publish"`), answers0)*1000, "ingest_p99_le_ms")
	b.ReportMetric(histogramP99(scrapeHistogram(b, adminAddr, "wakepush_kafka_produce_duration_seconds_bucket", ""), acks0)*1000, "kafka_ack_p99_le_ms")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "publishes/core_s")
	}
}

// scrapeHistogram reads the cumulative bucket counts (upper bound → count, summed over series)
// of the histogram whose bucket series is name, from the binary's /metrics, keeping the series
// whose labels contain match.
func scrapeHistogram(b *testing.B, adminAddr, name, match string) map[float64]float64 {
	buckets := map[float64]float64{}
	for line := range strings.Lines(scrapeMetrics(b, adminAddr)) {
		labels, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, name)), "} ")
		if !strings.HasPrefix(line, name+"{") || !ok || !strings.Contains(labels, match) {
			continue
		}
		_, le, _ := strings.Cut(labels, `le="`)
		le, _, _ = strings.Cut(le, `"`)
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("%s: cannot read %q", name, line)
		}
		buckets[bound] += n
	}
	if len(buckets) == 0 {
		b.Fatalf("%s: no series in /metrics", name)
	}
	return buckets
}

// scrapeMetrics returns the binary's /metrics page.
func scrapeMetrics(b *testing.B, adminAddr string) string {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return string(raw)
}

// scrapeValue reads the value of the unlabelled series name from the binary's /metrics.
func scrapeValue(b *testing.B, adminAddr, name string) float64 {
	for line := range strings.Lines(scrapeMetrics(b, adminAddr)) {
		if value, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				b.Fatalf("%s: cannot read %q", name, line)
			}
			return v
		}
	}
	b.Fatalf("%s: no series in /metrics", name)
	return 0
}

// histogramP99 is the upper bound of the bucket holding the 99th percentile of what was
// counted between the scrapes before and after.
func histogramP99(after, before map[float64]float64) float64 {
	bounds := slices.Sorted(maps.Keys(after))
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	for _, le := range bounds {
		if after[le]-before[le] >= .99*total {
			return le
		}
	}
	return bounds[len(bounds)-1]
}

// fetchProfile writes the profile at url to the file out.
func fetchProfile(b *testing.B, url, out string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		b.Error(err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// BenchmarkBinarySustained: the ingest binary on one core, closed loop.
func BenchmarkBinarySustained(b *testing.B) { benchBinary(b, 0) }

// BenchmarkBinaryFixedRate: the ingest binary on one core at WAKEPUSH_BENCH_RATE publishes/s
// (default 10000).
func BenchmarkBinaryFixedRate(b *testing.B) { benchBinary(b, benchRate(b)) }

func benchRate(b *testing.B) float64 {
	if s := os.Getenv("WAKEPUSH_BENCH_RATE"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	return 10000
}

// run sends n publishes with at most window in flight (and, when rate > 0, at most rate per
// second, open loop) and returns each one's answer latency.
func (r *loadRig) run(b *testing.B, n, window int, rate float64) []time.Duration {
	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, window)
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		sem <- struct{}{}
		reg := r.regs[i%len(r.regs)]
		id := r.conn.NextID()
		sent := time.Now()
		ch, err := r.conn.Send(id, fakexmpp.Publish(id, "example.com", "push.example.org", reg.Node, reg.Secret))
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			a := <-ch
			if a.Type != "result" {
				// wait/resource-constraint can happen near the in-flight limit: a handler
				// holds its slot until its answer's write returned, which the client may
				// see first. Counted, not hidden.
				mu.Lock()
				r.refused++
				mu.Unlock()
			}
			mu.Lock()
			lat = append(lat, a.At.Sub(sent))
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat
}

func percentile(lat []time.Duration, p float64) time.Duration {
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// BenchmarkComponentSustained: closed loop, 200 publishes in flight on one component
// connection; reports publishes/s and the answer latency percentiles.
func BenchmarkComponentSustained(b *testing.B) {
	r := newLoadRig(b)
	b.ResetTimer()
	start := time.Now()
	lat := r.run(b, b.N, 200, 0)
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "publishes/s")
	b.ReportMetric(float64(percentile(lat, .5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, .99).Microseconds())/1000, "p99_ms")
}

// BenchmarkComponentFixedRate: open loop at WAKEPUSH_BENCH_RATE publishes/s (default 10000, half
// the throughput goal); reports the answer latency percentiles. Use -benchtime Nx to set the
// number of publishes (e.g. 50000x = 5 s).
func BenchmarkComponentFixedRate(b *testing.B) {
	rate := benchRate(b)
	r := newLoadRig(b)
	b.ResetTimer()
	start := time.Now()
	lat := r.run(b, b.N, 200, rate)
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "publishes/s")
	b.ReportMetric(float64(percentile(lat, .5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(lat, .99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(percentile(lat, .999).Microseconds())/1000, "p999_ms")
}
