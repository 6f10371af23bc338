package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/sender/internal/fcm"
)

const fcmPlatform = wakepushv1.Platform_PLATFORM_FCM

// fcmToken looks like an FCM registration token (instance id ":" base64url).
func fcmToken(n int) string { return fmt.Sprintf("cF%010d:APA91b%040x", n, n+0xfcf000) }

func TestFCMDeliversWake(t *testing.T) {
	f := newFixture(t)
	f.start()
	tok := fcmToken(1)
	dev := f.registerApp(fcmAppID, fcmPlatform, tok, time.Now().Add(-time.Hour))
	f.wakeApp(fcmAppID, fcmPlatform, dev, "fcm-wake-1")
	f.eventually("ACCEPTED", 20*time.Second, func() bool {
		return f.has("fcm-wake-1", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED)
	})
	msgs := f.fcm.MessagesFor(tok)
	if len(msgs) != 1 {
		t.Fatalf("mock got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Notification || m.Priority != "high" || m.TTL != "600s" || m.CollapseKey != fcm.CollapseKey(dev) ||
		len(m.Data) != 1 || m.Data["wake_id"] != "fcm-wake-1" || m.Project != fcmProject {
		t.Errorf("message %+v: want data-only, high priority, ttl 600s, collapse key, wake id", m)
	}
	d := f.deliveriesOf("fcm-wake-1")[0]
	if d.GetPlatform() != fcmPlatform || d.GetApp() != fcmAppID || d.GetProviderMessageId() != m.Name || d.GetStatusCode() != 200 {
		t.Errorf("delivery %v", d)
	}
	f.eventually("committed", 10*time.Second, func() bool { return f.committed() == 1 })
}

func TestFCMUnregistered(t *testing.T) {
	f := newFixture(t)
	f.start()
	gone, mismatch := fcmToken(2), fcmToken(3)
	goneDev := f.registerApp(fcmAppID, fcmPlatform, gone, time.Now().Add(-time.Hour))
	mmDev := f.registerApp(fcmAppID, fcmPlatform, mismatch, time.Now().Add(-time.Hour))
	f.fcm.Unregister(gone)
	f.fcm.SetSenderMismatch(mismatch)
	f.wakeApp(fcmAppID, fcmPlatform, goneDev, "fcm-gone")
	f.wakeApp(fcmAppID, fcmPlatform, mmDev, "fcm-mismatch")
	f.eventually("UNREGISTERED records", 20*time.Second, func() bool {
		return len(f.senderRegistrations(goneDev)) == 1 && len(f.senderRegistrations(mmDev)) == 1
	})
	f.eventually("PERMANENT deliveries", 10*time.Second, func() bool {
		return f.has("fcm-gone", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT) &&
			f.has("fcm-mismatch", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT)
	})
	for dev, reason := range map[string]string{goneDev: "fcm:UNREGISTERED", mmDev: "fcm:SENDER_ID_MISMATCH"} {
		r := f.senderRegistrations(dev)[0]
		if r.GetState() != wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED || r.GetReason() != reason || r.GetApp() != fcmAppID {
			t.Errorf("unregistration %v, want UNREGISTERED %s", r, reason)
		}
	}
	if d := f.deliveriesOf("fcm-gone")[0]; d.GetOutcome() != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT || d.GetStatusCode() != 404 || d.GetReason() != "UNREGISTERED" {
		t.Errorf("delivery %v", d)
	}
	f.wakeApp(fcmAppID, fcmPlatform, goneDev, "fcm-gone-2")
	f.eventually("DROPPED after unregistration", 20*time.Second, func() bool {
		return f.has("fcm-gone-2", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED)
	})
}

// 503 with Retry-After, then recovery: retried no sooner than Retry-After, delivered once.
func TestFCMRetryAfterThenRecovers(t *testing.T) {
	f := newFixture(t)
	f.start()
	tok := fcmToken(4)
	dev := f.registerApp(fcmAppID, fcmPlatform, tok, time.Now().Add(-time.Hour))
	f.fcm.SetFaults(fcmmock.Faults{Rate503: 1, RetryAfter: 1})
	f.wakeApp(fcmAppID, fcmPlatform, dev, "fcm-503")
	f.eventually("a RETRY", 20*time.Second, func() bool { return len(f.deliveriesOf("fcm-503")) >= 1 })
	f.fcm.SetFaults(fcmmock.Faults{})
	f.eventually("ACCEPTED", 20*time.Second, func() bool {
		return f.has("fcm-503", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED)
	})
	ds := f.deliveriesOf("fcm-503")
	first, last := ds[0], ds[len(ds)-1]
	if first.GetOutcome() != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY || first.GetReason() != "UNAVAILABLE" {
		t.Errorf("first delivery %v", first)
	}
	// retry-min is 20 ms in the fixture: the gap comes from Retry-After (1 s).
	if gap := last.GetCreatedAt().AsTime().Sub(first.GetCreatedAt().AsTime()); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want ≥ Retry-After 1s", gap)
	}
	if n := len(f.fcm.MessagesFor(tok)); n != 1 {
		t.Errorf("mock accepted %d, want 1", n)
	}
}
