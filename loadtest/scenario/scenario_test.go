package scenario

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedScenariosValid(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("scenarios: %v %v", files, err)
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		p := s.Expand()
		if len(p.Publishes) == 0 {
			t.Errorf("%s: no publishes", f)
		}
		if strings.HasSuffix(f, "smoke.yaml") && s.Duration.D()+s.Drain.D() > 30*time.Second {
			t.Errorf("smoke: load %s + drain %s too long for a ≤ 60 s CI run", s.Duration.D(), s.Drain.D())
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`
name: ""
duration: 0s
rate: -1
devices: 0
apps:
  - {id: a, platform: gcm, min_interval: 10ms}
  - {id: a, platform: apns}
urgent_share: 2
mock: {latency: {dist: gauss}}
shape: {group_burst: {weight: 1, size: 1}}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"name: required", "duration", "rate", "devices", "platform: want apns or fcm", "appears twice",
		"min_interval", "urgent_share", "mock.latency.dist", "group_burst.size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error misses %q:\n%v", want, err)
		}
	}
}

func TestUnknownFieldRejected(t *testing.T) {
	_, err := Parse([]byte("name: x\nduration: 1s\nrate: 1\ndevices: 1\napps: [{id: a, platform: apns}]\nrat: 3\n"))
	if err == nil || !strings.Contains(err.Error(), "rat") {
		t.Fatalf("want unknown field error, got %v", err)
	}
}

func TestExpandDeterministicAndShaped(t *testing.T) {
	b, err := os.ReadFile("../scenarios/smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := s.Expand(), s.Expand()
	if len(p1.Publishes) != len(p2.Publishes) {
		t.Fatal("not deterministic")
	}
	for i := range p1.Publishes {
		if p1.Publishes[i] != p2.Publishes[i] {
			t.Fatalf("publish %d differs", i)
		}
	}
	kinds := map[Kind]int{}
	var urgent, http int
	for i, pub := range p1.Publishes {
		if i > 0 && pub.At < p1.Publishes[i-1].At {
			t.Fatal("not sorted")
		}
		if pub.At < 0 || pub.At >= s.Duration.D() {
			t.Fatalf("publish at %s outside the load phase", pub.At)
		}
		kinds[pub.Kind]++
		if pub.Urgent {
			urgent++
		}
		if pub.HTTP {
			http++
		}
	}
	base := len(p1.Publishes) - kinds[Reconnect]
	want := s.Rate * s.Duration.D().Seconds()
	if float64(base) < 0.8*want || float64(base) > 1.2*want {
		t.Errorf("%d publishes besides the reconnect spike, want ≈ %.0f", base, want)
	}
	for _, k := range []Kind{Steady, Burst, Retry, Reconnect} {
		if kinds[k] == 0 {
			t.Errorf("no %s publishes", k)
		}
	}
	if urgent == 0 || http == 0 {
		t.Errorf("urgent %d http %d", urgent, http)
	}
	// Reconnect spike sits in [at, at+window].
	mr := s.Shape.MassReconnect
	for _, pub := range p1.Publishes {
		if pub.Kind == Reconnect && (pub.At < mr.At.D() || pub.At > mr.At.D()+mr.Window.D()) {
			t.Fatalf("reconnect publish at %s", pub.At)
		}
	}
	platforms := map[string]int{}
	for _, d := range p1.Devices {
		platforms[s.Apps[d.App].Platform]++
	}
	if platforms["apns"] < platforms["fcm"] || platforms["fcm"] == 0 {
		t.Errorf("platform mix %v, want ~3:1", platforms)
	}
}

func TestRampExpandsRisingSteps(t *testing.T) {
	s, err := Parse([]byte(`
name: ramp
seed: 7
rate: 1000
devices: 5000
apps: [{id: a, platform: apns}]
shape:
  steady: 0.7
  group_burst: {weight: 0.2, size: 10, spread: 50ms}
  retry_storm: {weight: 0.1, repeats: 3, interval: 100ms}
ramp: {step: 1500, every: 4s, max: 5000}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Duration.D(), 12*time.Second; got != want {
		t.Fatalf("duration derived from the ramp = %s, want %s (3 steps of 4s: 1000, 2500, 4000)", got, want)
	}
	if s.Ramp.MaxAckP99.D() != time.Second || s.Ramp.MinAccepted != 0.999 || s.Ramp.MaxLag.D() != time.Second {
		t.Fatalf("ramp defaults not applied: %+v", *s.Ramp)
	}
	p := s.Expand()
	want := []float64{1000, 2500, 4000}
	if len(p.Steps) != len(want) {
		t.Fatalf("steps = %+v", p.Steps)
	}
	for i, st := range p.Steps {
		if st.Rate != want[i] || st.From != time.Duration(i)*4*time.Second || st.To != st.From+4*time.Second {
			t.Errorf("step %d = %+v, want rate %v over [%ds, %ds)", i, st, want[i], 4*i, 4*i+4)
		}
		n := 0
		for _, pub := range p.Publishes {
			if pub.At >= st.From && pub.At < st.To {
				n++
			}
		}
		got := float64(n) / 4
		// Poisson units of mean size 1.9: a few percent of noise over 4 s.
		if got < 0.9*st.Rate || got > 1.1*st.Rate {
			t.Errorf("step %d: %.0f publishes/s, want %v ± 10%%", i, got, st.Rate)
		}
	}
}

func TestRampCappedByDurationAndValidated(t *testing.T) {
	s, err := Parse([]byte("name: r\nrate: 100\nduration: 5s\ndevices: 10\napps: [{id: a, platform: apns}]\nramp: {step: 100, every: 2s, max: 1000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D() != 5*time.Second {
		t.Fatalf("duration = %s, want the 5s cap", s.Duration.D())
	}
	p := s.Expand()
	if len(p.Steps) != 3 || p.Steps[2].To != 5*time.Second || p.Steps[2].Rate != 300 {
		t.Fatalf("steps = %+v, want 100, 200, 300 with the last cut at 5s", p.Steps)
	}
	if got := s.RateAt(time.Hour); got != 1000 {
		t.Fatalf("RateAt beyond the ramp = %v, want the max 1000", got)
	}

	_, err = Parse([]byte(`
name: r
rate: 100
devices: 10
apps: [{id: a, platform: apns}]
shape: {mass_reconnect: {at: 1s, fraction: 0.5}}
ramp: {step: 0, every: 10ms, max: 50, min_accepted: 2}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"ramp.step", "ramp.every", "ramp.max", "ramp.min_accepted", "mass_reconnect: not with ramp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error misses %q:\n%v", want, err)
		}
	}
}

func TestNoRampIsOneStep(t *testing.T) {
	s, err := Parse([]byte("name: r\nrate: 100\nduration: 5s\ndevices: 10\napps: [{id: a, platform: apns}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Expand(); len(p.Steps) != 1 || p.Steps[0] != (Step{Rate: 100, From: 0, To: 5 * time.Second}) {
		t.Fatalf("steps = %+v", p.Steps)
	}
}

func TestDistinct(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ n, k int }{{100000, 20}, {10, 8}, {5, 5}, {1, 1}} {
		got := distinct(rng, c.n, c.k)
		seen := map[int]bool{}
		for _, d := range got {
			if d < 0 || d >= c.n || seen[d] {
				t.Fatalf("distinct(%d, %d) = %v", c.n, c.k, got)
			}
			seen[d] = true
		}
		if len(got) != c.k {
			t.Fatalf("distinct(%d, %d) gave %d numbers", c.n, c.k, len(got))
		}
	}
}
