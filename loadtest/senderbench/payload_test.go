package senderbench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// TestNotification: the bare loop's request for a wake is the sender's for an alert app
// (services/sender README, "APNs requests"): the documented payload bytes and headers.
func TestNotification(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const device = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, wakeID, wantApnsID, wantPayload string
	}{
		{"UUID wake id (the coalescer's)", "01a2310c-0100-8416-9a39-196050b69b10", "01a2310c-0100-8416-9a39-196050b69b10",
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"01a2310c-0100-8416-9a39-196050b69b10"}`},
		{"upper-case UUID: apns-id lowercased, payload as is", "01A2310C-0100-8416-9A39-196050B69B10", "01a2310c-0100-8416-9a39-196050b69b10",
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"01A2310C-0100-8416-9A39-196050B69B10"}`},
		{"not a UUID: name-based UUID", "wake:dev-1:42", "50eed180-1266-5a63-bc34-46f2ea255cd0",
			`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"wake:dev-1:42"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Notification("im.example", "abcd", device, tc.wakeID, now)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := n.Payload.([]byte); string(got) != tc.wantPayload {
				t.Errorf("payload %s, want %s", got, tc.wantPayload)
			}
			if n.ApnsID != tc.wantApnsID {
				t.Errorf("apns-id %s, want %s", n.ApnsID, tc.wantApnsID)
			}
			if n.CollapseID != "wp-3eb1bd439947eb762998e566ccc2e099" {
				t.Errorf("collapse id %s", n.CollapseID)
			}
			if n.PushType != apns2.PushTypeAlert || n.Priority != 10 || n.Topic != "im.example" || n.DeviceToken != "abcd" ||
				!n.Expiration.Equal(now.Add(time.Hour)) {
				t.Errorf("push type %s, priority %d, topic %s, token %s, expiration %s", n.PushType, n.Priority, n.Topic, n.DeviceToken, n.Expiration)
			}
		})
	}
}

// TestCheckPushes: the check the benchmark runs on every push the mock recorded finds each kind
// of difference from the sender's request, a lost push and a duplicate.
func TestCheckPushes(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	devs := MakeDevices(3, 7, at)
	byToken := map[string]*Device{}
	for i := range devs {
		byToken[devs[i].Token] = &devs[i]
	}
	good := func(i int) apnsmock.Push {
		d := devs[i]
		n, err := Notification(App, d.Token, d.DeviceID, d.WakeID, at)
		if err != nil {
			t.Fatal(err)
		}
		return apnsmock.Push{ApnsID: n.ApnsID, Token: d.Token, Topic: App, PushType: "alert", CollapseID: n.CollapseID, Priority: 10,
			Expiration: n.Expiration.Unix(), Payload: n.Payload.([]byte), ReceivedAt: at.Add(time.Millisecond), TeamID: TeamID, KeyID: KeyID, Auth: "token"}
	}
	all := func() []apnsmock.Push { return []apnsmock.Push{good(0), good(1), good(2)} }
	for _, tc := range []struct {
		name   string
		pushes func() []apnsmock.Push
		want   []string // substrings of the failures, in order; none: pass
	}{
		{"every device once, as the sender sends", all, nil},
		{"payload differs", func() []apnsmock.Push {
			p := all()
			p[1].Payload = bytes.Replace(p[1].Payload, []byte(`"mutable-content":1`), []byte(`"mutable-content":0`), 1)
			return p
		}, []string{"1 push(es) with a wrong payload"}},
		{"payload with spaces is not the same bytes", func() []apnsmock.Push {
			p := all()
			p[0].Payload = bytes.Replace(p[0].Payload, []byte(`:`), []byte(`: `), 1)
			return p
		}, []string{"wrong payload"}},
		{"apns-id and collapse id", func() []apnsmock.Push {
			p := all()
			p[0].ApnsID = "00000000-0000-4000-8000-000000000000"
			p[2].CollapseID = "wp-x"
			return p
		}, []string{"wrong apns-collapse-id", "wrong apns-id"}},
		{"priority, expiration, auth", func() []apnsmock.Push {
			p := all()
			p[0].Priority = 5
			p[1].Expiration = at.Unix()
			p[2].KeyID = "OTHER"
			return p
		}, []string{"wrong apns-expiration", "wrong authentication", "wrong topic/push type/priority"}},
		{"lost push", func() []apnsmock.Push { return all()[:2] }, []string{"recorded 2 pushes for 3 devices: 1 devices got none, 0 pushes were duplicates"}},
		{"duplicate and unknown token", func() []apnsmock.Push {
			p := append(all(), good(1))
			u := good(0)
			u.Token = strings.Repeat("ab", 32)
			return append(p, u)
		}, []string{"recorded 5 pushes for 3 devices: 0 devices got none, 1 pushes were duplicates", "wrong unknown token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckPushes(tc.pushes(), byToken, App, TeamID, KeyID)
			if len(got) != len(tc.want) {
				t.Fatalf("failures %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("failure %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}
