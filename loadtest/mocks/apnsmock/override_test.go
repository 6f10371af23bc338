package apnsmock_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

func TestOverrideStorm(t *testing.T) {
	f := newFixture(t, apnsmock.Config{Rate500: 0.25})
	c := f.client(f.teamToken())
	push := func() (int, string) {
		t.Helper()
		resp, err := c.Push(alertNotification(deviceToken()))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Reason
	}

	if err := f.srv.SetOverride(&apnsmock.Override{Status: 503}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if st, reason := push(); st != 503 || reason != apnsmock.ReasonServiceUnavailable {
			t.Fatalf("503 storm: got %d %q", st, reason)
		}
	}
	if got := f.srv.CurrentOverride(); got == nil || got.Status != 503 || got.Fraction != 1 || got.Reason != apnsmock.ReasonServiceUnavailable {
		t.Fatalf("CurrentOverride = %+v, want the defaults filled in", got)
	}
	if n := len(f.srv.Pushes()); n != 0 || f.srv.Overridden() != 20 {
		t.Fatalf("recorded %d, overridden %d; want 0 and 20", n, f.srv.Overridden())
	}

	// Half of the pushes, 429 with Retry-After: a raw client sees the header.
	if err := f.srv.SetOverride(&apnsmock.Override{Status: 429, Fraction: 0.5, RetryAfter: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	f.srv.SetFaults(apnsmock.Faults{}) // only the storm decides now
	raw := f.rawClient()
	bearer := signJWT(t, f.key, keyID, teamID, time.Now())
	var limited int
	const n = 400
	for range n {
		r, retryAfter := f.rawPush(raw, bearer, deviceToken())
		switch r.status {
		case 429:
			limited++
			var body struct{ Reason string }
			if json.Unmarshal([]byte(r.body), &body); body.Reason != apnsmock.ReasonTooManyRequests || retryAfter != "2" {
				t.Fatalf("429 answer: body %s, Retry-After %q (want TooManyRequests, 2: whole seconds rounded up)", r.body, retryAfter)
			}
		case 200:
			if retryAfter != "" {
				t.Fatalf("accepted push with Retry-After %q", retryAfter)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	if limited < n*3/10 || limited > n*7/10 {
		t.Errorf("%d of %d pushes limited, want about half", limited, n)
	}

	// Clearing the storm restores what was there before it, the fault mix included.
	f.srv.SetFaults(apnsmock.Faults{Rate500: 1})
	if err := f.srv.SetOverride(nil); err != nil {
		t.Fatal(err)
	}
	if f.srv.CurrentOverride() != nil {
		t.Fatal("override still set")
	}
	if st, _ := push(); st != 500 {
		t.Fatalf("after the storm the fault mix answers, got %d", st)
	}
	f.srv.SetFaults(apnsmock.Faults{})
	if st, _ := push(); st != 200 {
		t.Fatalf("after the storm: %d", st)
	}
}

func TestOverrideInvalid(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	for _, o := range []apnsmock.Override{
		{Status: 404},
		{Status: 503, Reason: apnsmock.ReasonTooManyRequests},
		{Status: 429, Fraction: 1.5},
		{Status: 429, Fraction: -0.1},
		{Status: 500, RetryAfter: -time.Second},
	} {
		if err := f.srv.SetOverride(&o); err == nil {
			t.Errorf("SetOverride(%+v) accepted", o)
		}
	}
	if f.srv.CurrentOverride() != nil {
		t.Fatal("an invalid override was stored")
	}
	if err := f.srv.SetOverride(&apnsmock.Override{Status: 503, Reason: apnsmock.ReasonShutdown, Fraction: 0.2}); err != nil {
		t.Fatalf("Shutdown is a 503 reason: %v", err)
	}
}

func TestOverrideControlAPI(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	ctl := f.rawClient()
	hdr := map[string][]string{"content-type": {"application/json"}}
	if r := f.raw(ctl, "GET", "/control/override", nil, ""); r.status != 200 || r.body != "null\n" {
		t.Fatalf("no override: %+v", r)
	}
	if r := f.raw(ctl, "PUT", "/control/override", hdr, `{"status":429,"fraction":0.5,"retry_after_ms":3000}`); r.status != 204 {
		t.Fatalf("PUT: %+v", r)
	}
	if o := f.srv.CurrentOverride(); o == nil || o.Status != 429 || o.Fraction != 0.5 || o.RetryAfter != 3*time.Second {
		t.Fatalf("override = %+v", o)
	}
	if r := f.raw(ctl, "GET", "/control/override", nil, ""); r.status != 200 ||
		r.body != `{"status":429,"reason":"TooManyRequests","fraction":0.5,"retry_after_ms":3000}`+"\n" {
		t.Fatalf("GET: %+v", r)
	}
	if r := f.raw(ctl, "PUT", "/control/override", hdr, `{"status":418}`); r.status != 400 {
		t.Fatalf("bad status accepted: %+v", r)
	}
	if r := f.raw(ctl, "DELETE", "/control/override", nil, ""); r.status != 204 || f.srv.CurrentOverride() != nil {
		t.Fatalf("DELETE: %+v, override %+v", r, f.srv.CurrentOverride())
	}
}

// rawPush sends one alert push with bearer over c and returns the answer and its Retry-After.
func (f *fixture) rawPush(c *http.Client, bearer, tok string) (rawResponse, string) {
	f.t.Helper()
	req, err := http.NewRequest("POST", f.srv.URL()+"/3/device/"+tok, strings.NewReader(`{"aps":{"alert":"x"}}`))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("apns-topic", topic)
	req.Header.Set("authorization", "bearer "+bearer)
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, body: string(b)}, resp.Header.Get("Retry-After")
}
