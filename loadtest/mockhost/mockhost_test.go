package mockhost

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// TestServeClient: Serve writes the ready file with the mocks' addresses and files, and the
// control API answers the client (count, arrivals, APNs override).
func TestServeClient(t *testing.T) {
	dir := t.TempDir()
	_, keyFile := signingKeyFile(t, dir)
	cfg := Config{Dir: dir, Latency: Latency{Dist: "exponential", MeanNS: int64(time.Millisecond), MaxNS: int64(10 * time.Millisecond)},
		Rate500: 0.01, TeamID: "T", KeyID: "K", KeyFile: keyFile, Topics: []string{"a.ios"}, FCMProject: "p", FCMMaxRecords: 10}
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var r Ready
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, f := range []string{r.APNsCAFile, r.FCMCAFile, r.FCMServiceAccount} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	if r.APNsURL == "" || r.FCMURL == "" || r.Control == "" {
		t.Fatalf("ready: %+v", r)
	}
	c := NewClient(r.Control)
	if n, err := c.Count(ctx); err != nil || n != 0 {
		t.Errorf("count %d, %v", n, err)
	}
	if as, err := c.Arrivals(ctx); err != nil || len(as) != 0 {
		t.Errorf("arrivals %v, %v", as, err)
	}
	if err := c.SetAPNsOverride(ctx, &apnsmock.Override{Status: 503, Fraction: 0.5}); err != nil {
		t.Error(err)
	}
	if err := c.SetAPNsOverride(ctx, &apnsmock.Override{Status: 418}); err == nil {
		t.Error("an invalid override was accepted")
	}
	if err := c.SetAPNsOverride(ctx, nil); err != nil {
		t.Error(err)
	}
}

// TestPayloadWakeID: the wake id read off the end of a payload is what encoding/json reads, for
// the sender's payload shapes and for payloads the shortcut must leave to encoding/json.
func TestPayloadWakeID(t *testing.T) {
	for _, p := range []string{
		`{"aps":{"content-available":1},"wake_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}`,
		`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"w-1"}`,
		`{"wake_id":"first-and-only"}`,
		`{"wake_id":"voip-1","urgent":true}`,
		`{"aps":{},"wake_id":"a\"b"}`,
		`{"aps":{},"wake_id":"a\\b"}`,
		`{"aps":{},"wake_id":"\u0041"}`,
		`{"aps":{"wake_id":"inner"},"x":"y"}`,
		`{"s":"a,\"wake_id\":\"spoof"}`,
		`{"a":{"b":1,"wake_id":"unbalanced"}`,
		`{"wake_id":"old","wake_id":"new"}`,
		`{"aps":{}}`,
		`not json,"wake_id":"x"}`,
		``,
	} {
		if got, want := payloadWakeID([]byte(p)), jsonWakeID([]byte(p)); got != want {
			t.Errorf("payloadWakeID(%s) = %q, encoding/json reads %q", p, got, want)
		}
	}
}

func BenchmarkPayloadWakeID(b *testing.B) {
	p := []byte(`{"aps":{"content-available":1},"wake_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}`)
	b.Run("shortcut", func(b *testing.B) {
		for b.Loop() {
			payloadWakeID(p)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			jsonWakeID(p)
		}
	})
}

// signingKeyFile makes an APNs signing key and writes it as dir/k.p8.
func signingKeyFile(t *testing.T, dir string) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k.p8")
	if err := os.WriteFile(keyFile, p8, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, keyFile
}
