package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/ratelimit"
)

func newLimitedAPI(t *testing.T, trusted string) *httptest.Server {
	t.Helper()
	proxies, err := httpapi.ParseTrustedProxies(trusted)
	if err != nil {
		t.Fatal(err)
	}
	tenants, err := httpapi.ParseTenants("acme:" + eventToken)
	if err != nil {
		t.Fatal(err)
	}
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: &testenv.Producer{}, Devices: devices.New(),
		ComponentJID: "push.example.org", ProduceTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(in, httpapi.Options{Tenants: tenants, TrustedProxies: proxies,
		ClientRate: ratelimit.Rate{PerSecond: 0.001, Burst: 1}, TenantRate: ratelimit.Rate{PerSecond: 1.0 / 60, Burst: 1}}))
	t.Cleanup(srv.Close)
	return srv
}

func postJSON(t *testing.T, srv *httptest.Server, path string, body any, hdr ...string) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// The per-client limit is per client behind a trusted proxy (the test client connects from
// loopback), per connection otherwise whatever X-Forwarded-For says, per /64 for IPv6; 429s
// say when the bucket has a token again (1 per 1000 s here).
func TestClientRateBehindProxy(t *testing.T) {
	type req struct {
		xff  string
		want int
	}
	for _, tc := range []struct {
		name    string
		trusted string
		reqs    []req
	}{
		{"two clients behind one trusted proxy: a bucket each", "127.0.0.1, ::1", []req{
			{"203.0.113.1", 200}, {"203.0.113.2", 200}, {"203.0.113.1", 429}, {"203.0.113.2", 429},
		}},
		{"a client behind two proxies; one faking its address", "127.0.0.0/8, ::1, 10.0.0.0/8", []req{
			{"203.0.113.1, 10.0.0.1", 200}, {"6.6.6.6, 203.0.113.1, 10.0.0.1", 429}, {"203.0.113.2, 10.0.0.1", 200},
		}},
		{"peer not trusted: the header is ignored, one bucket", "10.0.0.0/8", []req{
			{"203.0.113.1", 200}, {"203.0.113.2", 429}, {"", 429},
		}},
		{"IPv6 clients: a bucket per /64", "127.0.0.1, ::1", []req{
			{"2001:db8:1:2::1", 200}, {"2001:db8:1:2:ffff::9", 429}, {"2001:db8:1:3::1", 200},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newLimitedAPI(t, tc.trusted)
			reg := map[string]any{"app": testenv.IOSApp, "token": testenv.APNsToken, "environment": "production"}
			for i, r := range tc.reqs {
				var hdr []string
				if r.xff != "" {
					hdr = []string{"X-Forwarded-For", r.xff}
				}
				resp := postJSON(t, srv, "/v1/registrations", reg, hdr...)
				if resp.StatusCode != r.want {
					t.Fatalf("request %d (X-Forwarded-For %q): %d, want %d", i+1, r.xff, resp.StatusCode, r.want)
				}
				if ra := resp.Header.Get("Retry-After"); r.want == 429 && ra != "1000" {
					t.Errorf("request %d: Retry-After %q, want 1000 (the bucket's wait, rounded up to seconds)", i+1, ra)
				}
			}
		})
	}
}

func TestTenantRateRetryAfter(t *testing.T) {
	srv := newLimitedAPI(t, "")
	r := testenv.Keys(t).Register(testenv.IOSApp, "apns", testenv.APNsToken)
	ev := map[string]any{"node": r.Node, "secret": r.Secret}
	auth := []string{"Authorization", "Bearer " + eventToken}
	if resp := postJSON(t, srv, "/v1/events", ev, auth...); resp.StatusCode != 202 {
		t.Fatalf("first event: %d", resp.StatusCode)
	}
	resp := postJSON(t, srv, "/v1/events", ev, auth...)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("second event: %d, Retry-After %q; want 429, 60", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
