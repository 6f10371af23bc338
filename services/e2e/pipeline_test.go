package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func deviceToken(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestPublishWakesDeviceAndIsRecorded follows one device through the whole pipeline: a publish
// wakes it at once (leading edge), a burst inside the interval collapses into exactly one trailing
// wake, every push is a content-free NSE wake, and ClickHouse holds every event, wake and
// delivery with no event left uncovered.
func TestPublishWakesDeviceAndIsRecorded(t *testing.T) {
	s := startStack(t, nil)
	token := deviceToken(t)
	reg := s.register(token)
	// Registering the same token again (anyone who knows it can) is the same device but a
	// registration of its own: its node and secret are never the first registration's.
	if again := s.register(token); again.DeviceID != reg.DeviceID || again.Node == reg.Node || again.Secret == reg.Secret {
		t.Fatalf("registering the same token again gave %+v, want the same device with another node and secret than %+v", again, reg)
	}

	sent := time.Now()
	s.publish(reg, false)
	first := s.waitPushes(token, 1, 15*time.Second)[0]
	t.Logf("leading-edge wake reached the APNs mock %s after the publish was sent", first.ReceivedAt.Sub(sent).Round(time.Millisecond))

	if first.Topic != appID || first.PushType != "alert" || first.Priority != 10 {
		t.Errorf("push topic/type/priority = %s/%s/%d, want %s/alert/10", first.Topic, first.PushType, first.Priority, appID)
	}
	var payload struct {
		APS struct {
			MutableContent int             `json:"mutable-content"`
			Alert          json.RawMessage `json:"alert"`
		} `json:"aps"`
		WakeID string `json:"wake_id"`
	}
	if err := json.Unmarshal(first.Payload, &payload); err != nil {
		t.Fatalf("payload %s: %v", first.Payload, err)
	}
	if payload.APS.MutableContent != 1 || len(payload.APS.Alert) == 0 || payload.WakeID == "" {
		t.Errorf("payload %s: want an alert with mutable-content 1 and a wake_id", first.Payload)
	}

	// A burst inside the interval: absorbed, then covered by exactly one trailing wake.
	for range 5 {
		s.publish(reg, false)
	}
	pushes := s.waitPushes(token, 2, 15*time.Second)
	// The coalescer decides the two wakes at least minInterval apart; at the mock the gap is
	// shorter by as much as the leading wake took longer to deliver (its first push also opened
	// the APNs connection), so allow the leading wake's own delivery time.
	lead := first.ReceivedAt.Sub(sent)
	if gap := pushes[1].ReceivedAt.Sub(pushes[0].ReceivedAt); gap < minInterval-lead-50*time.Millisecond {
		t.Errorf("trailing wake came %s after the leading one (which took %s), want >= %s (rate invariant)", gap, lead, minInterval)
	}
	time.Sleep(3 * minInterval)
	if n := len(s.mock.PushesFor(token)); n != 2 {
		t.Fatalf("APNs mock got %d pushes for 6 events in one interval, want exactly 2 (leading + trailing)", n)
	}
	for _, p := range s.mock.PushesFor(token) {
		if strings.Contains(string(p.Payload), "body") {
			t.Errorf("payload carries content: %s", p.Payload)
		}
	}

	// The recorder's view agrees.
	s.waitCount(6, 20*time.Second, "SELECT count() FROM events FINAL WHERE device_id = ?", reg.DeviceID)
	s.waitCount(2, 20*time.Second, "SELECT count() FROM wakes FINAL WHERE device_id = ?", reg.DeviceID)
	s.waitCount(2, 20*time.Second, "SELECT count() FROM deliveries FINAL WHERE device_id = ? AND outcome = 'ACCEPTED'", reg.DeviceID)
	s.assertNoUncoveredEvents(reg.DeviceID)
}
