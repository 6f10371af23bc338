package scenario

import (
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
