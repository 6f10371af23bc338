package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/wakepush/wakepush/services/ingest/core"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemTypePrefix prefixes every problem type URI (a URN: it names the problem, it is not a
// page to fetch).
const ProblemTypePrefix = "urn:wakepush:problem:"

// problem kinds: slug, HTTP status, title.
type kind struct {
	slug   string
	status int
	title  string
}

var (
	kindBadRequest      = kind{"bad-request", http.StatusBadRequest, "The request is invalid"}
	kindTooLarge        = kind{"too-large", http.StatusRequestEntityTooLarge, "The request body is too large"}
	kindUnsupportedType = kind{"unsupported-media-type", http.StatusUnsupportedMediaType, "The request body must be JSON"}
	kindUnauthorized    = kind{"unauthorized", http.StatusUnauthorized, "A valid bearer token is required"}
	kindNotFound        = kind{"not-found", http.StatusNotFound, "No such resource"}
	kindMethod          = kind{"method-not-allowed", http.StatusMethodNotAllowed, "Method not allowed"}
	kindUnknownApp      = kind{"unknown-app", http.StatusNotFound, "The app is not served here"}
	kindUnknownNode     = kind{"unknown-node", http.StatusNotFound, "The node is not a node of this App Server"}
	kindForbidden       = kind{"not-authorized", http.StatusForbidden, "The node secret is wrong"}
	kindGone            = kind{"device-unregistered", http.StatusGone, "The device is unregistered"}
	kindUnavailable     = kind{"unavailable", http.StatusServiceUnavailable, "Temporarily unavailable, retry later"}
	kindRateLimited     = kind{"rate-limited", http.StatusTooManyRequests, "Too many requests from this client, retry later"}
)

// kindOf maps a core code to a problem kind.
func kindOf(c core.Code) kind {
	switch c {
	case core.CodeMalformed:
		return kindBadRequest
	case core.CodeUnknownNode:
		return kindUnknownNode
	case core.CodeNotAuthorized, core.CodeForbidden:
		return kindForbidden
	case core.CodeUnknownApp:
		return kindUnknownApp
	case core.CodeGone:
		return kindGone
	}
	return kindUnavailable
}

// RetryAfter is the Retry-After value (seconds) of 503 answers (429s say their limiter's wait).
const RetryAfter = 1

func writeProblem(w http.ResponseWriter, k kind, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if (k.status == http.StatusServiceUnavailable || k.status == http.StatusTooManyRequests) && h.Get("Retry-After") == "" {
		h.Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	if k.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="wakepush"`)
	}
	w.WriteHeader(k.status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: detail})
}

// writeRateLimited answers 429 with Retry-After: the limiter's wait in seconds, rounded up.
func writeRateLimited(w http.ResponseWriter, wait time.Duration, detail string) {
	w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(wait), 10))
	writeProblem(w, kindRateLimited, detail)
}

// retryAfterSeconds rounds wait up to whole seconds, at least 1.
func retryAfterSeconds(wait time.Duration) int64 {
	s := int64(wait / time.Second)
	if wait%time.Second != 0 {
		s++
	}
	return max(1, s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
