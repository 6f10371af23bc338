package fcm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// FCM error codes (google.firebase.fcm.v1.FcmError errorCode) the sender acts on.
const (
	CodeUnregistered        = "UNREGISTERED"
	CodeSenderIDMismatch    = "SENDER_ID_MISMATCH"
	CodeInvalidArgument     = "INVALID_ARGUMENT"
	CodeQuotaExceeded       = "QUOTA_EXCEEDED"
	CodeUnavailable         = "UNAVAILABLE"
	CodeInternal            = "INTERNAL"
	CodeThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
)

// rule is one row of the classification table: an HTTP status and FCM error code and the
// sender's action.
type rule struct {
	Status int
	Code   string
	Action provider.Action
}

// Rules lists every error FCM HTTP v1 documents (the FcmError codes, and the canonical status
// when no FcmError detail is given) with the sender's action (README.md, "FCM", says why).
var Rules = []rule{
	{http.StatusOK, "", provider.Accepted},

	{http.StatusNotFound, CodeUnregistered, provider.Permanent},
	{http.StatusForbidden, CodeSenderIDMismatch, provider.Permanent},

	{http.StatusBadRequest, CodeInvalidArgument, provider.Drop},

	{http.StatusTooManyRequests, CodeQuotaExceeded, provider.Retry},
	{http.StatusServiceUnavailable, CodeUnavailable, provider.Retry},
	{http.StatusInternalServerError, CodeInternal, provider.Retry},

	{http.StatusUnauthorized, CodeThirdPartyAuthError, provider.Configuration},
	// Canonical statuses without an FcmError detail: our OAuth token or project is wrong.
	{http.StatusUnauthorized, "UNAUTHENTICATED", provider.Configuration},
	{http.StatusForbidden, "PERMISSION_DENIED", provider.Configuration},
	{http.StatusNotFound, "NOT_FOUND", provider.Configuration},
}

type ruleKey struct {
	status int
	code   string
}

var ruleIndex = func() map[ruleKey]provider.Action {
	m := make(map[ruleKey]provider.Action, len(Rules))
	for _, r := range Rules {
		m[ruleKey{r.Status, r.Code}] = r.Action
	}
	return m
}()

// Classify maps an FCM answer (HTTP status and error code: the FcmError errorCode, else the
// canonical error status) to an action. Unknown codes fall back on the status: 400 drops,
// 401/403/404 are configuration, anything else (429, 5xx) is retried, bounded by the attempts.
func Classify(status int, code string) provider.Action {
	if a, ok := ruleIndex[ruleKey{status, code}]; ok {
		return a
	}
	switch {
	case status >= 200 && status < 300:
		return provider.Accepted
	case status == http.StatusBadRequest:
		return provider.Drop
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		return provider.Configuration
	}
	return provider.Retry
}

// errorBody is FCM's error JSON:
//
//	{"error":{"code":404,"message":"…","status":"NOT_FOUND",
//	  "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}
type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

const fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// errorCode extracts the FcmError errorCode of an error body, else its canonical status, else
// "" (not FCM's JSON).
func errorCode(body []byte) (code, message string) {
	var e errorBody
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	for _, d := range e.Error.Details {
		if d.Type == fcmErrorType && d.ErrorCode != "" {
			return d.ErrorCode, e.Error.Message
		}
	}
	return e.Error.Status, e.Error.Message
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
