package core_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

// Token-node publishes over the device or the sender bucket are refused with CodeRateLimited
// (wait/resource-constraint) and say how long the bucket needs to refill.
func TestTokenNodeRateLimits(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mods, err := core.ParsePushModules("monalProdiOS=" + testenv.IOSApp)
	if err != nil {
		t.Fatal(err)
	}
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: &testenv.Producer{}, Devices: devices.New(),
		ProduceTimeout: time.Second, Now: func() time.Time { return now },
		TokenNodes: &core.TokenNodeConfig{Modules: mods,
			SenderRate: core.Rate{PerSecond: 0.5, Burst: 2}, DeviceRate: core.Rate{PerSecond: 0.1, Burst: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(sender, token string) error {
		_, err := in.PublishToken(context.Background(), core.TokenEvent{Token: token, Module: "monalProdiOS", Sender: sender})
		return err
	}
	tokA, tokB := testenv.APNsToken, strings.Repeat("ab", 32)
	for i, tc := range []struct {
		sender, token string
		advance       time.Duration
		wantDetail    string // "" when accepted
	}{
		{"a.example", tokA, 0, ""}, // sender bucket: 1 token left, device bucket: none
		{"a.example", tokA, 0, "rate limit for this device reached, retry in 10 s"}, // takes the sender's last token
		{"a.example", tokB, 0, "rate limit for this server reached, retry in 2 s"},
		{"b.example", tokB, 0, ""}, // another sender's bucket
		{"a.example", tokA, 4 * time.Second, "rate limit for this device reached, retry in 6 s"},
		{"a.example", tokA, 6 * time.Second, ""},
	} {
		now = now.Add(tc.advance)
		err := publish(tc.sender, tc.token)
		switch {
		case tc.wantDetail == "" && err != nil:
			t.Fatalf("publish %d: %v", i+1, err)
		case tc.wantDetail != "" && (core.CodeOf(err) != core.CodeRateLimited || core.DetailOf(err) != tc.wantDetail):
			t.Fatalf("publish %d: %v (%s), want %s: %q", i+1, err, core.CodeOf(err), core.CodeRateLimited, tc.wantDetail)
		}
	}
}
