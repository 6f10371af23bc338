package apns

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

const (
	testApp  = "im.example.chat"
	testTeam = "TEAM000001"
	testKey  = "KEY0000001"
)

type mockFixture struct {
	mock *apnsmock.Server
	key  *ecdsa.PrivateKey
	app  *apps.App
	pool *Pool
}

func newMockFixture(tb testing.TB, cfg apnsmock.Config, opts Options) *mockFixture {
	tb.Helper()
	ts := apnsmock.StartTest(tb, cfg, testTeam, testKey, testApp)
	mock, key, keyFile, caFile := ts.Server, ts.Key, ts.KeyFile, ts.CAFile
	set, err := apps.Parse(fmt.Appendf(nil, "apps:\n  - id: %s\n    platform: apns\n    apns: {team_id: %s, key_id: %s, key_file: %s, endpoint: %q, ca_file: %s}\n",
		testApp, testTeam, testKey, keyFile, mock.URL(), caFile), "apps.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	pool, err := New(set.All(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	app, _ := set.Get(testApp)
	return &mockFixture{mock: mock, key: key, app: app, pool: pool}
}

var tokenSeq atomic.Uint64

func newToken() string { return fmt.Sprintf("%064x", 0xfeed0000+tokenSeq.Add(1)) }

func (f *mockFixture) target(tok string) provider.Target {
	return provider.Target{App: f.app, DeviceID: "dev-" + tok[56:], Token: tok, Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION}
}

func wake(id string) *wakepushv1.Wake { return &wakepushv1.Wake{Id: id, DeviceId: "dev"} }

func TestPoolAgainstMock(t *testing.T) {
	f := newMockFixture(t, apnsmock.Config{}, DefaultOptions)
	ctx := context.Background()

	ok := newToken()
	res := f.pool.Send(ctx, f.target(ok), wake("0190d8a8-7d2e-7c3b-9f00-0123456789ab"))
	if res.Action != provider.Accepted || res.StatusCode != 200 || res.MessageID != "0190d8a8-7d2e-7c3b-9f00-0123456789ab" || res.Latency <= 0 {
		t.Errorf("accepted push: %+v", res)
	}

	gone, at := newToken(), time.Now().Add(-time.Hour).Truncate(time.Second)
	f.mock.Unregister(gone, at)
	res = f.pool.Send(ctx, f.target(gone), wake("w-gone"))
	if res.Action != provider.Permanent || res.StatusCode != 410 || res.Reason != "Unregistered" || !res.InvalidAt.Equal(at) {
		t.Errorf("410: %+v, want Permanent Unregistered invalid at %v", res, at)
	}

	bad := newToken()
	f.mock.SetBadToken(bad)
	before := time.Now()
	res = f.pool.Send(ctx, f.target(bad), wake("w-bad"))
	if res.Action != provider.Permanent || res.Reason != "BadDeviceToken" || res.InvalidAt.Before(before.Truncate(time.Second)) {
		t.Errorf("bad token: %+v, want Permanent BadDeviceToken invalid since the request", res)
	}

	f.mock.SetFaults(apnsmock.Faults{PerDeviceLimit: 1, PerDeviceWindow: time.Minute})
	busy := newToken()
	f.pool.Send(ctx, f.target(busy), wake("w-1"))
	res = f.pool.Send(ctx, f.target(busy), wake("w-2"))
	if res.Action != provider.Retry || res.StatusCode != 429 || !res.DeviceRateLimited {
		t.Errorf("per-device limit: %+v, want a device-rate-limited Retry", res)
	}
	f.mock.SetFaults(apnsmock.Faults{})

	// The other push types pass the mock's validation (topic suffix, priority, payload).
	for _, pt := range []string{PushTypeBackground, PushTypeVoIP} {
		a := *f.app
		cfg := *a.APNs
		cfg.PushType = pt
		a.APNs = &cfg
		tok := newToken()
		tgt := f.target(tok)
		tgt.App = &a
		res := f.pool.Send(ctx, tgt, &wakepushv1.Wake{Id: "w-" + pt, DeviceId: "dev", Urgent: true})
		pushes := f.mock.PushesFor(tok)
		if res.Action != provider.Accepted || len(pushes) != 1 || pushes[0].PushType != pt {
			t.Errorf("%s push: %+v, mock got %+v", pt, res, pushes)
		}
	}

	f.mock.RemoveKey(testKey)
	res = f.pool.Send(ctx, f.target(newToken()), wake("w-cfg"))
	if res.Action != provider.Configuration || res.Reason != "InvalidProviderToken" {
		t.Errorf("unknown key: %+v, want Configuration InvalidProviderToken", res)
	}
}

func TestPoolTimeout(t *testing.T) {
	opts := DefaultOptions
	opts.Timeout = 200 * time.Millisecond
	f := newMockFixture(t, apnsmock.Config{RateStall: 1}, opts)
	start := time.Now()
	res := f.pool.Send(context.Background(), f.target(newToken()), wake("w-stall"))
	if res.Action != provider.Retry || res.Reason != ReasonTimeout || res.StatusCode != 0 {
		t.Errorf("stalled push: %+v, want Retry timeout", res)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stalled push took %v, want about the 200ms deadline", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if res := f.pool.Send(ctx, f.target(newToken()), wake("w-cancel")); res.Reason != ReasonCanceled {
		t.Errorf("push cancelled by the caller: %+v, want reason canceled", res)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad.p8")
	os.WriteFile(notPEM, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		name string
		apns apps.APNs
		want string
	}{
		{"missing key file", apps.APNs{KeyFile: filepath.Join(dir, "nope.p8")}, "no such file"},
		{"not a p8", apps.APNs{KeyFile: notPEM}, "valid .p8 PEM"},
		{"missing CA", apps.APNs{KeyFile: notPEM, CAFile: filepath.Join(dir, "nope.pem")}, "apns.ca_file"},
		{"CA not PEM", apps.APNs{KeyFile: notPEM, CAFile: notPEM}, "no PEM certificates"},
		{"endpoint not https", apps.APNs{KeyFile: notPEM, Endpoint: "http://127.0.0.1:1"}, "want https://host[:port]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var chk config.Check
			a := tc.apns
			Validate(&apps.App{ID: "im.x", Platform: "apns", APNs: &a}, &chk)
			err := chk.Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `app "im.x"`) {
				t.Errorf("Validate error %v, want one naming the app and containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkSend measures accepted pushes per second through the sender's APNs path (Pool.Send:
// payload, apns2 over our HTTP/2 transport with the otelhttp client span, classification)
// against the mock in the same process. The mock's default 1000 streams per connection bound
// one client's concurrency; the parallelism stays below it.
func BenchmarkSend(b *testing.B) { benchSend(b, 1, 64) }

// BenchmarkSendScaling is BenchmarkSend by HTTP/2 connections per client (Options.Connections)
// and concurrent requests (per GOMAXPROCS), with the p50/p99 provider latency (README.md,
// "Performance", has the table and the command).
func BenchmarkSendScaling(b *testing.B) {
	for _, conns := range []int{1, 2, 4} {
		for _, par := range []int{16, 64, 256} {
			b.Run(fmt.Sprintf("conns=%d/par=%d", conns, par), func(b *testing.B) { benchSend(b, conns, par) })
		}
	}
}

func benchSend(b *testing.B, conns, par int) {
	opts := DefaultOptions
	opts.Connections = conns
	f := newMockFixture(b, apnsmock.Config{MaxRecords: -1, MaxConcurrentStreams: 4096}, opts)
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = newToken()
	}
	ctx := context.Background()
	for i := range conns {
		if res := f.pool.Send(ctx, f.target(tokens[0]), wake(fmt.Sprint("warm-up-", i))); res.Action != provider.Accepted {
			b.Fatalf("warm-up: %+v", res)
		}
	}
	var seq atomic.Uint64
	var failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(par)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			n := seq.Add(1)
			res := f.pool.Send(ctx, f.target(tokens[n%uint64(len(tokens))]), wake(fmt.Sprint("w-", n)))
			if res.Action != provider.Accepted {
				failed.Add(1)
			}
			mine = append(mine, res.Latency)
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if failed.Load() > 0 {
		b.Fatalf("%d pushes not accepted", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
	// CPU per push (sender and mock, user+system) is what the machine's other load does not
	// change much; 2 cores / it is the throughput two dedicated cores would give.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/push")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
