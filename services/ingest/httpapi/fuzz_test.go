package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

type discard struct{}

func (discard) Produce(context.Context, ...kafkax.Record) error { return nil }

// FuzzAPI drives every endpoint with any method, path, body and bearer token: the API never
// panics, never answers 5xx (the producer here always succeeds), always answers JSON (a
// problem document for errors) or redirects an unclean path to its clean form, and never echoes a provider token from the request. Runs on
// its seeds in `go test`; `make fuzz` explores.
func FuzzAPI(f *testing.F) {
	tenants, err := httpapi.ParseTenants("acme:" + eventToken)
	if err != nil {
		f.Fatal(err)
	}
	in, err := core.New(core.Config{Apps: testenv.Apps(f), Keys: testenv.Keys(f), Producer: discard{}, Devices: devices.New(),
		ComponentJID: "push.example.org", ProduceTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	h := httpapi.New(in, httpapi.Options{Tenants: tenants})
	register := jsonBody(map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken, "environment": "production"})
	for _, s := range []struct{ method, path, body, bearer string }{
		{"POST", "/v1/registrations", register, ""},
		{"POST", "/v1/registrations", `{"app":"` + testenv.IOSApp + `","token":"zz","environment":"sandbox"}`, ""},
		{"POST", "/v1/registrations/unregister", `{"node":"n","secret":"s"}`, ""},
		{"POST", "/v1/events", `{"node":"n","secret":"s","urgent":true}`, eventToken},
		{"POST", "/v1/events", `{"node":"n"}`, "wrong"},
		{"POST", "/v1/receipts", `{"wake_id":"w","device_id":"d"}`, ""},
		{"GET", "/v1/events", "", ""},
		{"POST", "/nope", "{", ""},
		{"POST", "/v1/registrations", `{"app":1e999}`, ""},
	} {
		f.Add(s.method, s.path, []byte(s.body), s.bearer)
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte, bearer string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://ingest.test"+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		req.RemoteAddr = "192.0.2.7:4242"
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, res.StatusCode, rec.Body)
		}
		if res.StatusCode/100 == 3 { // ServeMux redirects an unclean path ("/./x") to its clean form
			if res.Header.Get("Location") == "" {
				t.Fatalf("%s %s: %d without Location", method, path, res.StatusCode)
			}
			return
		}
		if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, "json") || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d answered %q: %q", method, path, body, res.StatusCode, ct, rec.Body)
		}
		var sent struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(body, &sent) == nil && len(sent.Token) >= 8 && strings.Contains(rec.Body.String(), sent.Token) {
			t.Fatalf("the answer echoes the token: %s", rec.Body)
		}
	})
}
