package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestProviderUnregisterReachesIngest follows APNs' "this token is dead" answer around the loop:
// the mock answers 410 Unregistered for the device, the sender writes the tombstone to
// push.registrations, and ingest then refuses the device's next publish (HTTP 410; an XMPP server
// would get item-not-found and disable the node), while the recorder shows the permanent outcome.
func TestProviderUnregisterReachesIngest(t *testing.T) {
	s := startStack(t, nil)
	token := deviceToken(t)
	reg := s.register(token)
	// The token dies after it was registered. apns2 reads APNs' 410 timestamp in whole seconds,
	// and the sender keeps a device registered at or after that time, so let a second pass.
	time.Sleep(1100 * time.Millisecond)
	s.mock.Unregister(token, time.Now())

	s.publish(reg, false)
	s.waitCount(1, 20*time.Second, "SELECT count() FROM deliveries FINAL WHERE device_id = ? AND outcome = 'PERMANENT' AND status_code = 410", reg.DeviceID)
	s.waitCount(1, 20*time.Second, "SELECT count() FROM registrations FINAL WHERE device_id = ? AND state = 'UNREGISTERED'", reg.DeviceID)

	deadline := time.Now().Add(15 * time.Second)
	for {
		status := s.publishStatus(reg)
		if status == http.StatusGone {
			break
		}
		if status != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("publish for a device APNs declared dead: %d, want 410 Gone", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(s.mock.PushesFor(token)); n != 0 {
		t.Errorf("the mock accepted %d pushes for a dead token", n)
	}
}

// publishStatus sends one event and returns the HTTP status, whatever it is.
func (s *stack) publishStatus(r registration) int {
	s.t.Helper()
	b, _ := json.Marshal(map[string]any{"node": r.Node, "secret": r.Secret, "important": true})
	req, _ := http.NewRequest(http.MethodPost, s.ingestURL+"/v1/events", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+eventToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST /v1/events: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
