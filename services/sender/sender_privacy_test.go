package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/logging"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsCarryNoToken drives the sender's provider error paths with recognisable device
// tokens (transport errors whose URL ends in the APNs token, retries, dead letters, 410
// unregistration, configuration errors, FCM rejections) with the service's logger at DEBUG, and
// checks that no log line carries a token.
func TestLogsCarryNoToken(t *testing.T) {
	// The markers sit in the middle of the tokens: device ids of the fixture are built from
	// the tokens' last 12 characters.
	apnsTok := func(n int) string {
		return "deadbeef5ec4e7" + strings.Repeat("0", 40) + "00000000" + string(rune('0'+n)) + "0"
	}
	fcmTok := func(n int) string {
		return "cFSECRETTOKEN:APA91bSECRETFCM" + strings.Repeat("x", 20) + "00000000000" + string(rune('0'+n))
	}
	markers := []string{"5ec4e7", "SECRETTOKEN", "SECRETFCM"}

	f := newFixture(t, "-sender-max-attempts=2", "-sender-apns-timeout=300ms", "-sender-config-pause=200ms")
	var out syncBuffer
	log, err := logging.New(&out, "json", "debug", "sender")
	if err != nil {
		t.Fatal(err)
	}
	f.log = log
	f.start()
	old := time.Now().Add(-time.Hour)

	// Transport errors (timeout, reset, dropped connection) until the wake is dead-lettered.
	for i, faults := range []apnsmock.Faults{{RateStall: 1}, {RateReset: 1}, {RateDrop: 1}} {
		dev := f.register(apnsTok(i), old)
		f.mock.SetFaults(faults)
		id := "wake-transport-" + string(rune('0'+i))
		f.wake(dev, id)
		f.eventually(id+" dead-lettered", 30*time.Second, func() bool { return f.has(id, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DEAD_LETTERED) })
	}
	f.mock.SetFaults(apnsmock.Faults{})

	// 410: the device is unregistered.
	gone := apnsTok(5)
	f.mock.Unregister(gone, old.Add(30*time.Minute))
	goneDev := f.register(gone, old)
	f.wake(goneDev, "wake-gone")
	f.eventually("410 PERMANENT", 20*time.Second, func() bool { return f.has("wake-gone", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT) })

	// Configuration error (unknown signing key), then recovery.
	f.mock.RemoveKey(keyID)
	cfgDev := f.register(apnsTok(6), old)
	f.wake(cfgDev, "wake-cfg")
	f.eventually("CONFIGURATION", 20*time.Second, func() bool { return f.has("wake-cfg", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION) })
	f.mock.AddKey(teamID, keyID, &f.key.PublicKey)
	f.eventually("ACCEPTED after the key is back", 20*time.Second, func() bool { return f.has("wake-cfg", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })

	// FCM: an invalid token (dropped) and an unregistered one.
	invalid, unreg := fcmTok(1), fcmTok(2)
	f.fcm.SetInvalid(invalid)
	f.fcm.Unregister(unreg)
	f.wakeApp(fcmAppID, fcmPlatform, f.registerApp(fcmAppID, fcmPlatform, invalid, old), "fcm-invalid")
	f.wakeApp(fcmAppID, fcmPlatform, f.registerApp(fcmAppID, fcmPlatform, unreg, old), "fcm-unreg")
	f.eventually("FCM PERMANENT answers", 20*time.Second, func() bool {
		return f.has("fcm-invalid", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT) && f.has("fcm-unreg", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT)
	})

	logs := out.String()
	for _, want := range []string{"attempt failed, will retry", "attempts exhausted", "device unregistered", "provider configuration error", "provider rejected the wake for good"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q line: the path was not driven", want)
		}
	}
	for _, m := range markers {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, m) {
				t.Errorf("log line carries a token (%s): %s", m, line)
			}
		}
	}
}
