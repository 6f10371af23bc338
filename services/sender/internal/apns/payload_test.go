package apns

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sideshow/apns2"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
)

var jsonSyntaxError = func() json.SyntaxError {
	var v any
	err := json.Unmarshal([]byte("<html>"), &v)
	return *err.(*json.SyntaxError)
}()

func app(pushType string) *apps.App {
	return &apps.App{ID: "im.example", Platform: "apns", APNs: &apps.APNs{Topic: "im.example", PushType: pushType}}
}

func TestNotification(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	wakeID := "0190d8a8-7d2e-7c3b-9f00-0123456789AB"
	for _, tc := range []struct {
		name         string
		pushType     string
		urgent       bool
		wantType     apns2.EPushType
		wantTopic    string
		wantPriority int
		wantExpiry   time.Duration
		wantCollapse bool
		wantPayload  string
	}{
		{"alert", "alert", false, apns2.PushTypeAlert, "im.example", 10, time.Hour, true,
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"` + wakeID + `"}`},
		{"alert urgent", "alert", true, apns2.PushTypeAlert, "im.example", 10, time.Hour, true,
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"` + wakeID + `"}`},
		{"background", "background", false, apns2.PushTypeBackground, "im.example", 5, time.Hour, true,
			`{"aps":{"content-available":1},"wake_id":"` + wakeID + `"}`},
		{"voip urgent", "voip", true, apns2.PushTypeVOIP, "im.example.voip", 10, 30 * time.Second, false,
			`{"wake_id":"` + wakeID + `","urgent":true}`},
		{"voip app, ordinary wake", "voip", false, apns2.PushTypeAlert, "im.example", 10, time.Hour, true,
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"` + wakeID + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &wakepushv1.Wake{Id: wakeID, DeviceId: "dev-1", Urgent: tc.urgent}
			n, err := Notification(app(tc.pushType), "abcd", w, DefaultExpiry, now)
			if err != nil {
				t.Fatal(err)
			}
			if n.PushType != tc.wantType || n.Topic != tc.wantTopic || n.Priority != tc.wantPriority {
				t.Errorf("type/topic/priority = %s/%s/%d, want %s/%s/%d", n.PushType, n.Topic, n.Priority, tc.wantType, tc.wantTopic, tc.wantPriority)
			}
			if !n.Expiration.Equal(now.Add(tc.wantExpiry)) {
				t.Errorf("expiration = %v, want now+%v", n.Expiration, tc.wantExpiry)
			}
			if (n.CollapseID != "") != tc.wantCollapse {
				t.Errorf("collapse id = %q, want set: %v", n.CollapseID, tc.wantCollapse)
			}
			if got := string(n.Payload.([]byte)); got != tc.wantPayload {
				t.Errorf("payload = %s\nwant      %s", got, tc.wantPayload)
			}
			if n.ApnsID != "0190d8a8-7d2e-7c3b-9f00-0123456789ab" || n.DeviceToken != "abcd" {
				t.Errorf("apns-id/token = %q/%q", n.ApnsID, n.DeviceToken)
			}
		})
	}
}

func TestAPNsIDAndCollapseID(t *testing.T) {
	derived := APNsID("wake:dev-1:42")
	if _, err := uuid.Parse(derived); err != nil || derived != APNsID("wake:dev-1:42") || derived == APNsID("wake:dev-1:43") {
		t.Errorf("derived apns-id %q: want a stable UUID per wake id (err %v)", derived, err)
	}
	a, b := CollapseID("dev-1"), CollapseID("dev-2")
	if a != CollapseID("dev-1") || a == b || len(a) > 64 {
		t.Errorf("collapse ids %q, %q: want stable, distinct per device, <= 64 bytes", a, b)
	}
}

// marshalPayload writes exactly what json.Marshal writes, for every payload and wake id.
func TestMarshalPayloadMatchesJSON(t *testing.T) {
	ids := []string{"", "01JEZ7Q8V0000000000000000", "6f9619ff-8b86-d011-b42d-00cf4fc964ff", `a"b`, `a\b`, "<x>&", "tab\there", "é", "\x7f", "\xff"}
	for _, id := range ids {
		for _, p := range payloadsOf(id) {
			checkPayload(t, p)
		}
	}
}

func payloadsOf(id string) []any {
	return []any{
		alertPayload{APS: alertAPS{Alert: alertText{LocKey: LocKey}, MutableContent: 1}, WakeID: id},
		alertPayload{APS: alertAPS{Alert: alertText{LocKey: "other"}}, WakeID: id},
		backgroundPayload{APS: backgroundAPS{ContentAvailable: 1}, WakeID: id},
		backgroundPayload{WakeID: id},
		voipPayload{WakeID: id, Urgent: true},
		voipPayload{WakeID: id},
	}
}

func checkPayload(t *testing.T, p any) {
	t.Helper()
	want, werr := json.Marshal(p)
	got, err := marshalPayload(p)
	if (err != nil) != (werr != nil) || string(got) != string(want) {
		t.Fatalf("marshalPayload(%#v) = %s, %v; json.Marshal: %s, %v", p, got, err, want, werr)
	}
}

func FuzzMarshalPayload(f *testing.F) {
	f.Add("01JEZ7Q8V0000000000000000")
	f.Add(`<"\>`)
	f.Fuzz(func(t *testing.T, id string) {
		for _, p := range payloadsOf(id) {
			checkPayload(t, p)
		}
	})
}
