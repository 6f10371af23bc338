package scenario

import (
	"strings"
	"testing"
	"time"
)

func TestWarmupDefaultsAndExpand(t *testing.T) {
	s, err := Parse([]byte(`
name: w
seed: 7
duration: 30s
rate: 1000
devices: 20000
accounts_per_device: 2
apps:
  - {id: a.ios, platform: apns, share: 3}
  - {id: a.android, platform: fcm, share: 1}
xmpp: {servers: 3}
http_share: 0.1
`))
	if err != nil {
		t.Fatal(err)
	}
	w := s.Warmup
	if w.Off || w.Duration.D() != 10*time.Second || w.Rate != 1000 || w.Devices != 2000 || w.Settle.D() != 3*time.Second {
		t.Fatalf("defaults: %+v", w)
	}
	p, wp := s.Expand(), s.ExpandWarmup()
	if len(wp.Devices) != 2000 {
		t.Fatalf("%d warm-up devices", len(wp.Devices))
	}
	// (100/s + 1000/s) / 2 × 10 s
	if n := len(wp.Publishes); n != 5500 {
		t.Errorf("%d warm-up publishes, want 5500", n)
	}
	tokens := map[string]bool{}
	for _, d := range p.Devices {
		tokens[d.Token] = true
	}
	apps := map[int]int{}
	for _, d := range wp.Devices {
		if tokens[d.Token] {
			t.Fatalf("warm-up device %d has a scenario device's token %s", d.Index, d.Token)
		}
		tokens[d.Token] = true
		apps[d.App]++
		if len(d.Servers) != 2 {
			t.Fatalf("device %+v: want 2 accounts", d)
		}
	}
	if apps[0] == 0 || apps[1] == 0 {
		t.Errorf("warm-up devices by app: %v (both apps must be warmed)", apps)
	}
	// Rising rate: the first second holds far fewer publishes than the last; in order; some HTTP; none urgent.
	var first, last, http int
	for i, pub := range wp.Publishes {
		if i > 0 && pub.At < wp.Publishes[i-1].At {
			t.Fatalf("publish %d out of order", i)
		}
		if pub.Urgent {
			t.Fatalf("publish %d is urgent", i)
		}
		if pub.HTTP {
			http++
		}
		switch {
		case pub.At < time.Second:
			first++
		case pub.At >= 9*time.Second:
			last++
		}
	}
	if first < 100 || first > 200 || last < 900 || last > 1000 || http == 0 {
		t.Errorf("first second %d, last second %d, http %d", first, last, http)
	}
	again := s.ExpandWarmup()
	if again.Publishes[1234] != wp.Publishes[1234] || again.Devices[77].Token != wp.Devices[77].Token {
		t.Error("the warm-up is not deterministic")
	}
}

func TestWarmupOffAndValidation(t *testing.T) {
	base := `
name: w
duration: 30s
rate: 1000
devices: 100
apps: [{id: a.ios, platform: apns}]
`
	s, err := Parse([]byte(base + "warmup: {off: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ExpandWarmup() != nil {
		t.Error("warmup.off still expands a warm-up")
	}
	_, err = Parse([]byte(base + "warmup: {duration: -1s, settle: 1s, devices: -3}\n"))
	for _, want := range []string{"warmup.duration", "warmup.settle", "warmup.devices"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}
