package senderbench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestSmoke runs both targets once at 3,000 devices with the real binaries (built like the test:
// with -race under `go test -race`) and fails on anything the report lists: a push lost or
// pushed twice (the mock's record of every push, one per device token; for the sender also one
// ACCEPTED delivery record per wake and every wake committed), an answer other than 200, and —
// the payload-equality check — any push whose payload bytes, apns-id, collapse id, topic, push
// type, priority or expiration differ from what Notification builds for the device's wake: the
// sender's pushes, checked against it, show that the bare loop sends what the sender sends. It
// asserts no speed, only that the CPU figures are there.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sender, the broker and the mock")
	}
	const n = 3000
	began := time.Now()
	rep, err := Run(context.Background(), Options{
		Devices: n, Runs: 1, Dir: t.TempDir(), Logf: t.Logf,
		Build: func(pkg string) (string, error) { return stacktest.Build(t, pkg), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	t.Logf("took %s\n%s", time.Since(began).Round(time.Millisecond), md.String())
	for _, f := range rep.Failures {
		t.Errorf("failure: %s", f)
	}
	if len(rep.Measurements) != 2 {
		t.Fatalf("%d measurements, want one per target", len(rep.Measurements))
	}
	for _, m := range rep.Measurements {
		if m.Pushes != n || m.Wall <= 0 {
			t.Errorf("%s: %d pushes in %s, want %d", m.Target, m.Pushes, m.Wall, n)
		}
		positive := []string{ProcTarget, ProcMock}
		if m.Target == TargetSender {
			positive = append(positive, ProcBroker, ProcHarness)
		} else if m.SelfCPU <= 0 {
			t.Errorf("bare-apns2 reported no CPU of its own")
		}
		for _, p := range positive {
			if m.CPU[p] <= 0 {
				t.Errorf("%s: CPU of the %s %s, want > 0", m.Target, p, m.CPU[p])
			}
		}
		if _, ok := m.CPU[ProcBroker]; !ok {
			t.Errorf("%s: no broker CPU", m.Target)
		}
	}
	if rep.Ratios == nil || !(rep.Ratios.Median > 0) {
		t.Errorf("ratios %+v", rep.Ratios)
	}
	if rep.LoadBefore == "" {
		t.Error("no load average")
	}
}
