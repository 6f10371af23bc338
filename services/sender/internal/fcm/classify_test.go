package fcm

import (
	"net/http"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

func TestClassifyTable(t *testing.T) {
	cases := []struct {
		status int
		code   string
		want   provider.Action
	}{
		{200, "", provider.Accepted},
		{404, CodeUnregistered, provider.Permanent},
		{403, CodeSenderIDMismatch, provider.Permanent},
		{400, CodeInvalidArgument, provider.Drop},
		{429, CodeQuotaExceeded, provider.Retry},
		{503, CodeUnavailable, provider.Retry},
		{500, CodeInternal, provider.Retry},
		{401, CodeThirdPartyAuthError, provider.Configuration},
		{401, "UNAUTHENTICATED", provider.Configuration},
		{403, "PERMISSION_DENIED", provider.Configuration},
		{404, "NOT_FOUND", provider.Configuration},
		// unknown codes fall back on the status
		{400, "SOMETHING_NEW", provider.Drop},
		{401, "", provider.Configuration},
		{403, "", provider.Configuration},
		{404, "", provider.Configuration},
		{429, "", provider.Retry},
		{502, "", provider.Retry},
		{504, "DEADLINE_EXCEEDED", provider.Retry},
	}
	for _, c := range cases {
		if got := Classify(c.status, c.code); got != c.want {
			t.Errorf("%d %q: %v, want %v", c.status, c.code, got, c.want)
		}
	}
	// Every documented rule is covered above.
	for _, r := range Rules {
		if Classify(r.Status, r.Code) != r.Action {
			t.Errorf("rule %+v not honoured", r)
		}
	}
}

func TestErrorCode(t *testing.T) {
	cases := []struct{ body, want string }{
		{`{"error":{"code":404,"message":"m","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`, "UNREGISTERED"},
		{`{"error":{"code":400,"message":"m","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest"},{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`, "INVALID_ARGUMENT"},
		{`{"error":{"code":401,"message":"m","status":"UNAUTHENTICATED"}}`, "UNAUTHENTICATED"},
		{`<html>bad gateway</html>`, ""},
	}
	for _, c := range cases {
		if got, _ := errorCode([]byte(c.body)); got != c.want {
			t.Errorf("%s: %q, want %q", c.body, got, c.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":     0,
		"7":    7 * time.Second,
		"-1":   0,
		"soon": 0,
		now.Add(time.Minute).Format(http.TimeFormat): time.Minute,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("%q: %v, want %v", h, got, want)
		}
	}
}
