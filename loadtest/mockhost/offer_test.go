package mockhost

import (
	"crypto/tls"
	"testing"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// TestArrivalsCarryTheFirstRefusedOffer: a wake the APNs mock refused (override 503) and then
// accepted arrives with Offered at the refused attempt; a wake accepted at once has none.
func TestArrivalsCarryTheFirstRefusedOffer(t *testing.T) {
	dir := t.TempDir()
	key, keyFile := signingKeyFile(t, dir)
	h, err := Start(Config{Dir: dir, TeamID: "T", KeyID: "K", KeyFile: keyFile, Topics: []string{"a.ios"}, FCMProject: "p", FCMMaxRecords: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: "K", TeamID: "T"})
	c.Host = h.APNs.URL()
	//lint:ignore SA1019 apns2 v0.25.0 builds its client on x/net's http2.Transport
	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: h.APNs.CertPool()}
	defer c.CloseIdleConnections()
	push := func(wakeID string) int {
		t.Helper()
		res, err := c.Push(&apns2.Notification{DeviceToken: "aa11", Topic: "a.ios", PushType: apns2.PushTypeBackground, Priority: 5,
			Payload: []byte(`{"aps":{"content-available":1},"wake_id":"` + wakeID + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode
	}

	if err := h.SetAPNsOverride(&apnsmock.Override{Status: 503}); err != nil {
		t.Fatal(err)
	}
	if code := push("w-refused"); code != 503 {
		t.Fatalf("refused push: status %d", code)
	}
	if err := h.SetAPNsOverride(nil); err != nil {
		t.Fatal(err)
	}
	if code := push("w-refused"); code != 200 {
		t.Fatalf("retried push: status %d", code)
	}
	if code := push("w-once"); code != 200 {
		t.Fatalf("push: status %d", code)
	}
	as := h.Arrivals()
	if len(as) != 2 {
		t.Fatalf("arrivals %+v, want the two accepted pushes", as)
	}
	if a := as[0]; a.WakeID != "w-refused" || a.Offered == 0 || a.Offered >= a.At {
		t.Errorf("refused then accepted: %+v, want Offered before At", a)
	}
	if a := as[1]; a.WakeID != "w-once" || a.Offered != 0 {
		t.Errorf("accepted at once: %+v, want no Offered", a)
	}
}
