package apnsmock_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestAcceptedPushIsRecorded(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	c := f.client(f.teamToken())
	tok := deviceToken()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	n := &apns2.Notification{
		DeviceToken: tok,
		Topic:       topic,
		ApnsID:      "0A1B2C3D-0000-4000-8000-00000000ABCD",
		CollapseID:  "room-42",
		PushType:    apns2.PushTypeAlert,
		Priority:    apns2.PriorityHigh,
		Expiration:  exp,
		Payload:     payload.NewPayload().AlertTitle("New message").MutableContent(),
	}
	before := time.Now()
	resp, err := c.Push(n)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Reason != "" {
		t.Fatalf("got %d %q, want 200", resp.StatusCode, resp.Reason)
	}
	if resp.ApnsID != "0a1b2c3d-0000-4000-8000-00000000abcd" {
		t.Errorf("apns-id = %q, want the request id lowercased", resp.ApnsID)
	}

	// Without an apns-id the mock assigns one.
	n2 := alertNotification(tok)
	resp2, err := c.Push(n2)
	if err != nil || resp2.StatusCode != 200 {
		t.Fatalf("second push: %v %+v", err, resp2)
	}
	if !uuidRE.MatchString(resp2.ApnsID) {
		t.Errorf("assigned apns-id %q is not a lowercase UUID", resp2.ApnsID)
	}

	got := f.srv.PushesFor(tok)
	if len(got) != 2 {
		t.Fatalf("PushesFor = %d records, want 2", len(got))
	}
	p := got[0]
	if p.ApnsID != resp.ApnsID || p.Token != tok || p.Topic != topic || p.PushType != "alert" ||
		p.CollapseID != "room-42" || p.Priority != 10 || p.Expiration != exp.Unix() ||
		p.TeamID != teamID || p.KeyID != keyID {
		t.Errorf("recorded push = %+v", p)
	}
	var body map[string]map[string]any
	if err := json.Unmarshal(p.Payload, &body); err != nil || body["aps"]["mutable-content"] != float64(1) {
		t.Errorf("payload = %s (%v)", p.Payload, err)
	}
	if p.ReceivedAt.Before(before) || p.ReceivedAt.After(time.Now()) {
		t.Errorf("ReceivedAt %v out of range", p.ReceivedAt)
	}
	if got[1].ApnsID != resp2.ApnsID {
		t.Errorf("arrival order: %s then %s", got[0].ApnsID, got[1].ApnsID)
	}
	if all := f.srv.Pushes(); len(all) != 2 || f.srv.Accepted() != 2 {
		t.Errorf("Pushes = %d, Accepted = %d", len(all), f.srv.Accepted())
	}
	if len(f.srv.PushesFor(deviceToken())) != 0 {
		t.Error("PushesFor an unknown token returned records")
	}

	f.srv.Reset()
	if len(f.srv.Pushes()) != 0 || f.srv.Accepted() != 0 {
		t.Error("Reset kept records")
	}
}

// TestValidation sends one push per APNs rejection reason through apns2.
func TestValidation(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	f.srv.AddTopic("com.example.other")
	c := f.client(f.teamToken())

	badToken := deviceToken()
	f.srv.SetBadToken(badToken)
	boundToken := deviceToken()
	f.srv.SetTokenTopic(boundToken, "com.example.other")

	big := `{"aps":{"content-available":1},"pad":"` + strings.Repeat("x", 4096) + `"}`
	voipOK := `{"aps":{},"pad":"` + strings.Repeat("x", 5000) + `"}`
	voipBig := `{"aps":{},"pad":"` + strings.Repeat("x", 5120) + `"}`

	tests := []struct {
		name       string
		mutate     func(n *apns2.Notification)
		wantStatus int
		wantReason string
	}{
		{"accepted alert", func(*apns2.Notification) {}, 200, ""},
		{"accepted background priority 5", func(n *apns2.Notification) {
			n.PushType, n.Priority, n.Payload = apns2.PushTypeBackground, 5, []byte(`{"aps":{"content-available":1}}`)
		}, 200, ""},
		{"accepted voip 5000 bytes", func(n *apns2.Notification) {
			n.Topic, n.PushType, n.Payload = topic+".voip", apns2.PushTypeVOIP, []byte(voipOK)
		}, 200, ""},
		{"accepted low priority", func(n *apns2.Notification) { n.Priority = 1 }, 200, ""},
		{"accepted token bound to its topic", func(n *apns2.Notification) {
			n.DeviceToken, n.Topic = boundToken, "com.example.other"
		}, 200, ""},
		{"bad apns-id", func(n *apns2.Notification) { n.ApnsID = "not-a-uuid" }, 400, apnsmock.ReasonBadMessageID},
		{"missing topic", func(n *apns2.Notification) { n.Topic = "" }, 400, apnsmock.ReasonMissingTopic},
		{"unknown topic", func(n *apns2.Notification) { n.Topic = "com.evil.app" }, 400, apnsmock.ReasonTopicDisallowed},
		{"collapse id over 64 bytes", func(n *apns2.Notification) { n.CollapseID = strings.Repeat("c", 65) }, 400, apnsmock.ReasonBadCollapseID},
		{"priority 3", func(n *apns2.Notification) { n.Priority = 3 }, 400, apnsmock.ReasonBadPriority},
		{"background with priority 10", func(n *apns2.Notification) {
			n.PushType = apns2.PushTypeBackground
		}, 400, apnsmock.ReasonBadPriority},
		{"background without priority (APNs default 10)", func(n *apns2.Notification) {
			n.PushType, n.Priority = apns2.PushTypeBackground, 0
		}, 400, apnsmock.ReasonBadPriority},
		{"voip push type on bundle topic", func(n *apns2.Notification) { n.PushType = apns2.PushTypeVOIP }, 400, apnsmock.ReasonInvalidPushType},
		{"alert push type on voip topic", func(n *apns2.Notification) { n.Topic = topic + ".voip" }, 400, apnsmock.ReasonInvalidPushType},
		{"unknown push type", func(n *apns2.Notification) { n.PushType = "bogus" }, 400, apnsmock.ReasonInvalidPushType},
		{"non-hex token", func(n *apns2.Notification) { n.DeviceToken = strings.Repeat("zz", 32) }, 400, apnsmock.ReasonBadDeviceToken},
		{"odd-length token", func(n *apns2.Notification) { n.DeviceToken = "abc" }, 400, apnsmock.ReasonBadDeviceToken},
		{"missing token", func(n *apns2.Notification) { n.DeviceToken = "" }, 400, apnsmock.ReasonMissingDeviceToken},
		{"token registered as bad", func(n *apns2.Notification) { n.DeviceToken = badToken }, 400, apnsmock.ReasonBadDeviceToken},
		{"token of another topic", func(n *apns2.Notification) { n.DeviceToken = boundToken }, 400, apnsmock.ReasonDeviceTokenNotForTopic},
		{"payload over 4096 bytes", func(n *apns2.Notification) { n.Payload = []byte(big) }, 413, apnsmock.ReasonPayloadTooLarge},
		{"voip payload over 5120 bytes", func(n *apns2.Notification) {
			n.Topic, n.PushType, n.Payload = topic+".voip", apns2.PushTypeVOIP, []byte(voipBig)
		}, 413, apnsmock.ReasonPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := alertNotification(deviceToken())
			tt.mutate(n)
			before := len(f.srv.Pushes())
			resp, err := c.Push(n)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || resp.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Reason, tt.wantStatus, tt.wantReason)
			}
			if !uuidRE.MatchString(resp.ApnsID) {
				t.Errorf("apns-id %q is not a lowercase UUID", resp.ApnsID)
			}
			wantRecorded := before
			if tt.wantStatus == 200 {
				wantRecorded++
			}
			if got := len(f.srv.Pushes()); got != wantRecorded {
				t.Errorf("recorded %d pushes, want %d", got, wantRecorded)
			}
		})
	}
}

// TestValidationRaw covers requests apns2 cannot send (its json.Marshal of the
// notification rejects empty and invalid payloads, and it always POSTs with
// token auth to /3/device/).
func TestValidationRaw(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	c := f.rawClient()
	bearer := "bearer " + signJWT(t, f.key, keyID, teamID, time.Now())
	good := func() map[string][]string {
		return map[string][]string{
			"authorization":  {bearer},
			"apns-topic":     {topic},
			"apns-push-type": {"alert"},
			"apns-priority":  {"10"},
		}
	}
	tests := []struct {
		name       string
		method     string
		path       string
		edit       func(h map[string][]string)
		body       string
		wantStatus int
		wantReason string
	}{
		{"accepted", "POST", "", nil, `{"aps":{}}`, 200, ""},
		{"GET is not allowed", "GET", "", nil, "", 405, apnsmock.ReasonMethodNotAllowed},
		{"bad apns-id before method", "PUT", "", func(h map[string][]string) { h["apns-id"] = []string{"123"} }, "", 400, apnsmock.ReasonBadMessageID},
		{"duplicate topic header", "POST", "", func(h map[string][]string) { h["apns-topic"] = []string{topic, topic} }, `{}`, 400, apnsmock.ReasonDuplicateHeaders},
		{"bad expiration", "POST", "", func(h map[string][]string) { h["apns-expiration"] = []string{"tomorrow"} }, `{}`, 400, apnsmock.ReasonBadExpirationDate},
		{"wrong path", "POST", "/3/devices/abcd", nil, `{}`, 404, apnsmock.ReasonBadPath},
		{"missing authorization", "POST", "", func(h map[string][]string) { delete(h, "authorization") }, `{}`, 403, apnsmock.ReasonMissingProviderToken},
		{"non-bearer authorization", "POST", "", func(h map[string][]string) { h["authorization"] = []string{"Basic Zm9vOmJhcg=="} }, `{}`, 403, apnsmock.ReasonMissingProviderToken},
		{"garbage bearer", "POST", "", func(h map[string][]string) { h["authorization"] = []string{"bearer abc.def.ghi"} }, `{}`, 403, apnsmock.ReasonInvalidProviderToken},
		{"empty payload", "POST", "", nil, "", 400, apnsmock.ReasonPayloadEmpty},
		{"invalid JSON payload", "POST", "", nil, `{"aps":`, 400, apnsmock.ReasonBadPayload},
		{"JSON array payload", "POST", "", nil, `[1]`, 400, apnsmock.ReasonBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good()
			if tt.edit != nil {
				tt.edit(h)
			}
			path := tt.path
			if path == "" {
				path = "/3/device/" + deviceToken()
			}
			r := f.raw(c, tt.method, path, h, tt.body)
			wantBody := ""
			if tt.wantReason != "" {
				wantBody = `{"reason":"` + tt.wantReason + `"}`
			}
			if r.status != tt.wantStatus || r.body != wantBody {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.wantStatus, wantBody)
			}
			if !uuidRE.MatchString(r.apnsID) {
				t.Errorf("apns-id %q is not a lowercase UUID", r.apnsID)
			}
		})
	}
}

func TestUnregisteredToken(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	c := f.client(f.teamToken())
	at := time.Now().Add(-48 * time.Hour).Truncate(time.Millisecond)

	tok := deviceToken()
	f.srv.Unregister(tok, at)
	resp, err := c.Push(alertNotification(tok))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusGone || resp.Reason != apnsmock.ReasonUnregistered {
		t.Fatalf("got %d %q, want 410 Unregistered", resp.StatusCode, resp.Reason)
	}
	if resp.Timestamp.Unix() != at.Unix() { // apns2 truncates the ms timestamp to seconds
		t.Errorf("timestamp = %v, want %v", resp.Timestamp.Time, at)
	}

	// The raw body carries the millisecond timestamp.
	r := f.raw(f.rawClient(), "POST", "/3/device/"+tok, map[string][]string{
		"authorization": {"bearer " + signJWT(t, f.key, keyID, teamID, time.Now())},
		"apns-topic":    {topic},
	}, `{}`)
	var body struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Timestamp != at.UnixMilli() || body.Reason != "Unregistered" {
		t.Errorf("410 body = %s (%v), want timestamp %d", r.body, err, at.UnixMilli())
	}

	expired := deviceToken()
	f.srv.ExpireToken(expired, at)
	resp, err = c.Push(alertNotification(expired))
	if err != nil || resp.StatusCode != 410 || resp.Reason != apnsmock.ReasonExpiredToken {
		t.Fatalf("expired token: %v %+v", err, resp)
	}

	f.srv.Reregister(tok)
	if resp, err := c.Push(alertNotification(tok)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after Reregister: %v %+v", err, resp)
	}
}

func TestProviderTokens(t *testing.T) {
	clock := &fakeClock{}
	f := newFixture(t, apnsmock.Config{Now: clock.Now})
	otherKey, _, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	f.srv.AddKey("TEAM000002", "KEY0000002", &otherKey.PublicKey)
	now := time.Now()

	tests := []struct {
		name       string
		bearer     string
		wantStatus int
		wantReason string
	}{
		{"valid", signJWT(t, f.key, keyID, teamID, now), 200, ""},
		{"iat 59 minutes ago", signJWT(t, f.key, keyID, teamID, now.Add(-59*time.Minute)), 200, ""},
		{"iat 61 minutes ago", signJWT(t, f.key, keyID, teamID, now.Add(-61*time.Minute)), 403, apnsmock.ReasonExpiredProviderToken},
		{"unknown kid", signJWT(t, f.key, "NOSUCHKEY1", teamID, now), 403, apnsmock.ReasonInvalidProviderToken},
		{"signed by another key", signJWT(t, otherKey, keyID, teamID, now), 403, apnsmock.ReasonInvalidProviderToken},
		{"iss is not the key's team", signJWT(t, f.key, keyID, "TEAM000002", now), 403, apnsmock.ReasonInvalidProviderToken},
		{"tampered payload", func() string {
			parts := strings.Split(signJWT(t, f.key, keyID, teamID, now), ".")
			other := strings.Split(signJWT(t, otherKey, "KEY0000002", "TEAM000002", now), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}(), 403, apnsmock.ReasonInvalidProviderToken},
		{"alg none", "eyJhbGciOiJub25lIiwia2lkIjoiS0VZMDAwMDAwMSJ9.eyJpc3MiOiJURUFNMDAwMDAxIn0.", 403, apnsmock.ReasonInvalidProviderToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.client(fixedToken(tt.bearer)) // fresh connection: no pinning or update limits
			resp, err := c.Push(alertNotification(deviceToken()))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || resp.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}

	t.Run("token ages out on an open connection", func(t *testing.T) {
		c := f.client(fixedToken(signJWT(t, f.key, keyID, teamID, clock.Now())))
		if resp, _ := c.Push(alertNotification(deviceToken())); resp == nil || resp.StatusCode != 200 {
			t.Fatalf("fresh token: %+v", resp)
		}
		clock.Advance(61 * time.Minute)
		defer clock.Advance(-61 * time.Minute)
		resp, err := c.Push(alertNotification(deviceToken()))
		if err != nil || resp.StatusCode != 403 || resp.Reason != apnsmock.ReasonExpiredProviderToken {
			t.Fatalf("got %v %+v, want 403 ExpiredProviderToken", err, resp)
		}
	})

	t.Run("refresh after ExpiredProviderToken is allowed", func(t *testing.T) {
		c := f.client(fixedToken(signJWT(t, f.key, keyID, teamID, now.Add(-2*time.Hour))))
		if resp, _ := c.Push(alertNotification(deviceToken())); resp == nil || resp.Reason != apnsmock.ReasonExpiredProviderToken {
			t.Fatalf("old token: %+v", resp)
		}
		c.Token = fixedToken(signJWT(t, f.key, keyID, teamID, now))
		if resp, _ := c.Push(alertNotification(deviceToken())); resp == nil || resp.StatusCode != 200 {
			t.Fatalf("refreshed token: %+v", resp)
		}
	})

	t.Run("key removal revokes tokens in use", func(t *testing.T) {
		key, _, _ := apnsmock.NewSigningKey()
		f.srv.AddKey(teamID, "KEY0000009", &key.PublicKey)
		c := f.client(fixedToken(signJWT(t, key, "KEY0000009", teamID, now)))
		if resp, _ := c.Push(alertNotification(deviceToken())); resp == nil || resp.StatusCode != 200 {
			t.Fatalf("before removal: %+v", resp)
		}
		f.srv.RemoveKey("KEY0000009")
		if resp, _ := c.Push(alertNotification(deviceToken())); resp == nil || resp.Reason != apnsmock.ReasonInvalidProviderToken {
			t.Fatalf("after removal: %+v", resp)
		}
	})
}

func TestTeamPinnedPerConnection(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	keyB, _, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	f.srv.AddKey("TEAM00000B", "KEY000000B", &keyB.PublicKey)
	tokB := func() *token.Token { return &token.Token{AuthKey: keyB, KeyID: "KEY000000B", TeamID: "TEAM00000B"} }

	a := f.client(f.teamToken())
	if resp, err := a.Push(alertNotification(deviceToken())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("team A: %v %+v", err, resp)
	}
	// Team B on team A's connection.
	b := apns2.NewTokenClient(tokB())
	b.Host, b.HTTPClient = a.Host, a.HTTPClient
	resp, err := b.Push(alertNotification(deviceToken()))
	if err != nil || resp.StatusCode != 403 || resp.Reason != apnsmock.ReasonInvalidProviderToken {
		t.Fatalf("team B on team A's connection: %v %+v, want 403 InvalidProviderToken", err, resp)
	}
	// Team B on its own connection is fine, and team A still works on its own.
	if resp, err := f.client(tokB()).Push(alertNotification(deviceToken())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("team B on its own connection: %v %+v", err, resp)
	}
	if resp, err := a.Push(alertNotification(deviceToken())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("team A again: %v %+v", err, resp)
	}
}

func TestTooManyProviderTokenUpdates(t *testing.T) {
	clock := &fakeClock{}
	f := newFixture(t, apnsmock.Config{Now: clock.Now})
	now := time.Now()
	t1 := signJWT(t, f.key, keyID, teamID, now.Add(-3*time.Second))
	t2 := signJWT(t, f.key, keyID, teamID, now.Add(-2*time.Second))
	t3 := signJWT(t, f.key, keyID, teamID, now.Add(-1*time.Second))

	c := f.client(fixedToken(t1))
	steps := []struct {
		name       string
		bearer     string
		advance    time.Duration
		wantStatus int
		wantReason string
	}{
		{"first token", t1, 0, 200, ""},
		{"same token again", t1, 0, 200, ""},
		{"first change", t2, 0, 200, ""},
		{"second change within 20 minutes", t3, 0, 429, apnsmock.ReasonTooManyProviderTokenUpdates},
		{"current token still works", t2, 0, 200, ""},
		{"second change after 20 minutes", t3, 21 * time.Minute, 200, ""},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		c.Token = fixedToken(st.bearer)
		resp, err := c.Push(alertNotification(deviceToken()))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if resp.StatusCode != st.wantStatus || resp.Reason != st.wantReason {
			t.Fatalf("%s: got %d %q, want %d %q", st.name, resp.StatusCode, resp.Reason, st.wantStatus, st.wantReason)
		}
	}
	// A new connection starts with a clean slate.
	if resp, err := f.client(fixedToken(t1)).Push(alertNotification(deviceToken())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("new connection: %v %+v", err, resp)
	}
}

func TestPerDeviceRateLimit(t *testing.T) {
	clock := &fakeClock{}
	f := newFixture(t, apnsmock.Config{Now: clock.Now, PerDeviceLimit: 2, PerDeviceWindow: time.Minute})
	c := f.client(f.teamToken())
	tok, other := deviceToken(), deviceToken()
	want := []int{200, 200, 429, 429}
	for i, w := range want {
		resp, err := c.Push(alertNotification(tok))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != w {
			t.Fatalf("push %d: got %d %q, want %d", i, resp.StatusCode, resp.Reason, w)
		}
		if w == 429 && resp.Reason != apnsmock.ReasonTooManyRequests {
			t.Fatalf("push %d: reason %q", i, resp.Reason)
		}
	}
	if resp, _ := c.Push(alertNotification(other)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("other device limited: %+v", resp)
	}
	if n := len(f.srv.PushesFor(tok)); n != 2 {
		t.Errorf("recorded %d pushes for the limited device, want 2", n)
	}
	clock.Advance(time.Minute)
	if resp, _ := c.Push(alertNotification(tok)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("next window: %+v", resp)
	}
}

func TestInjectedFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     apnsmock.Faults
		wantStatus int
		wantReason string
		wantErr    bool
	}{
		{"503", apnsmock.Faults{Rate503: 1}, 503, apnsmock.ReasonServiceUnavailable, false},
		{"500", apnsmock.Faults{Rate500: 1}, 500, apnsmock.ReasonInternalServerError, false},
		{"stream reset", apnsmock.Faults{RateReset: 1}, 0, "", true},
		{"connection drop", apnsmock.Faults{RateDrop: 1}, 0, "", true},
		{"stall", apnsmock.Faults{RateStall: 1}, 0, "", true},
	}
	f := newFixture(t, apnsmock.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.srv.SetFaults(tt.faults)
			defer f.srv.SetFaults(apnsmock.Faults{})
			c := f.client(f.teamToken())
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			resp, err := c.PushWithContext(ctx, alertNotification(deviceToken()))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want a transport error", resp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || resp.Reason != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	if n := len(f.srv.Pushes()); n != 0 {
		t.Errorf("%d faulted pushes were recorded", n)
	}
}

func TestInjected503ViaConfig(t *testing.T) {
	f := newFixture(t, apnsmock.Config{Rate503: 1})
	resp, err := f.client(f.teamToken()).Push(alertNotification(deviceToken()))
	if err != nil || resp.StatusCode != 503 || resp.Reason != apnsmock.ReasonServiceUnavailable {
		t.Fatalf("got %v %+v, want 503 ServiceUnavailable", err, resp)
	}
}

func TestLatency(t *testing.T) {
	f := newFixture(t, apnsmock.Config{Latency: apnsmock.FixedLatency(60 * time.Millisecond)})
	c := f.client(f.teamToken())
	start := time.Now()
	if resp, err := c.Push(alertNotification(deviceToken())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %+v", err, resp)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("push took %v, want >= 60ms", d)
	}
}

func TestStallReleasedOnClose(t *testing.T) {
	f := newFixture(t, apnsmock.Config{RateStall: 1})
	c := f.client(f.teamToken())
	type result struct {
		resp *apns2.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Push(alertNotification(deviceToken()))
		done <- result{resp, err}
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- f.srv.Close() }()
	select {
	case r := <-done:
		if r.err == nil && (r.resp.StatusCode != 503 || r.resp.Reason != apnsmock.ReasonShutdown) {
			t.Errorf("stalled push answered %+v, want 503 Shutdown or an error", r.resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stalled push not released by Close")
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestConcurrentPushes(t *testing.T) {
	f := newFixture(t, apnsmock.Config{MaxConcurrentStreams: 50})
	c := f.client(f.teamToken())
	const workers, each = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := deviceToken()
			for i := 0; i < each; i++ {
				resp, err := c.Push(alertNotification(tok))
				if err == nil && resp.StatusCode != 200 {
					err = errors.New(resp.Reason)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(f.srv.Pushes()); n != workers*each {
		t.Errorf("recorded %d pushes, want %d", n, workers*each)
	}
}
