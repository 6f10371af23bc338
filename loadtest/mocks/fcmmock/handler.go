package fcmmock

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// FcmErrorType is the @type of FCM's error detail.
const FcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// Error codes (FcmError errorCode) the mock answers.
const (
	CodeUnregistered        = "UNREGISTERED"
	CodeSenderIDMismatch    = "SENDER_ID_MISMATCH"
	CodeInvalidArgument     = "INVALID_ARGUMENT"
	CodeQuotaExceeded       = "QUOTA_EXCEEDED"
	CodeUnavailable         = "UNAVAILABLE"
	CodeInternal            = "INTERNAL"
	CodeThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
)

// canonical maps an HTTP status to the google.rpc status name of FCM's error JSON.
var canonical = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	405: "METHOD_NOT_ALLOWED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}

// ErrorBody is FCM's error JSON.
type ErrorBody struct {
	Error ErrorStatus `json:"error"`
}

// ErrorStatus is the "error" object.
type ErrorStatus struct {
	Code    int           `json:"code"`
	Message string        `json:"message"`
	Status  string        `json:"status"`
	Details []ErrorDetail `json:"details,omitempty"`
}

// ErrorDetail is one detail; FCM's has ErrorCode.
type ErrorDetail struct {
	Type      string `json:"@type"`
	ErrorCode string `json:"errorCode,omitempty"`
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/v1/", s.serveSend)
	mux.Handle("/metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /control/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /control/messages", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.messages(r.URL.Query().Get("token")))
	})
	mux.HandleFunc("GET /control/counters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]uint64{"accepted": s.Accepted(), "tokens_issued": s.TokensIssued()})
	})
	mux.HandleFunc("POST /control/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		s.log.Info("reset")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /control/faults", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Faults()) })
	mux.HandleFunc("POST /control/faults", func(w http.ResponseWriter, r *http.Request) {
		f := s.Faults()
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		s.log.Info("faults set", "faults", f)
		writeJSON(w, f)
	})
	for path, set := range map[string]func(string){
		"unregister": s.Unregister, "reregister": s.Reregister, "invalid": s.SetInvalid,
		"mismatch": s.SetSenderMismatch, "third-party-auth": s.SetThirdPartyAuthError,
	} {
		mux.HandleFunc("POST /control/"+path, func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Token string `json:"token"`
			}
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Token == "" {
				http.Error(w, `want {"token":"…"}`, http.StatusBadRequest)
				return
			}
			set(req.Token)
			s.log.Info("token state", "op", path, "token", req.Token)
			w.WriteHeader(http.StatusNoContent)
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// fail writes FCM's error JSON; fcmCode adds the FcmError detail.
func (s *Server) fail(w http.ResponseWriter, status int, fcmCode, msg string, retryAfter int) {
	body := ErrorBody{Error: ErrorStatus{Code: status, Message: msg, Status: canonical[status]}}
	if fcmCode != "" {
		body.Error.Details = []ErrorDetail{{Type: FcmErrorType, ErrorCode: fcmCode}}
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
	code := fcmCode
	if code == "" {
		code = body.Error.Status
	}
	s.m.answered(status, code)
}

type sendRequest struct {
	ValidateOnly bool         `json:"validate_only"`
	Message      *sendMessage `json:"message"`
}

type sendMessage struct {
	Token        string            `json:"token"`
	Topic        string            `json:"topic"`
	Condition    string            `json:"condition"`
	Data         map[string]string `json:"data"`
	Notification json.RawMessage   `json:"notification"`
	Android      *struct {
		Priority     string          `json:"priority"`
		TTL          string          `json:"ttl"`
		CollapseKey  string          `json:"collapse_key"`
		Notification json.RawMessage `json:"notification"`
	} `json:"android"`
}

var (
	ttlRE   = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_:\-.]+$`)
)

// maxDataBytes is FCM's payload limit for data messages.
const maxDataBytes = 4096

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/projects/")
	project, verb, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || project == "" || verb != "messages:send" {
		s.fail(w, http.StatusNotFound, "", "Requested entity was not found.", 0)
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusMethodNotAllowed, "", "Method not allowed.", 0)
		return
	}
	acct := s.bearer(r.Header.Get("Authorization"))
	if acct == nil {
		s.fail(w, http.StatusUnauthorized, "", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", 0)
		return
	}
	if acct.project != project {
		s.fail(w, http.StatusForbidden, "", "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/"+project+"' (or it may not exist).", 0)
		return
	}
	var req sendRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Invalid JSON payload received. "+err.Error(), 0)
		return
	}
	m := req.Message
	switch {
	case m == nil:
		s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Request contains an invalid argument: message is required.", 0)
		return
	case m.Token == "" || m.Topic != "" || m.Condition != "":
		s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Request contains an invalid argument: exactly one of token, topic, condition (the mock serves token).", 0)
		return
	case len(m.Token) > 4096 || !tokenRE.MatchString(m.Token):
		s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "The registration token is not a valid FCM registration token", 0)
		return
	}
	msg := Message{Project: project, Token: m.Token, Data: m.Data, Account: acct.email, ReceivedAt: received,
		Notification: len(m.Notification) > 0 && string(m.Notification) != "null"}
	size := 0
	for k, v := range m.Data {
		size += len(k) + len(v)
		if k == "from" || strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.") {
			s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Invalid data payload key: "+k, 0)
			return
		}
	}
	if size > maxDataBytes {
		s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Request contains an invalid argument: message is too big.", 0)
		return
	}
	if a := m.Android; a != nil {
		switch strings.ToLower(a.Priority) {
		case "", "normal", "high":
		default:
			s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Invalid value at 'message.android.priority'", 0)
			return
		}
		if a.TTL != "" && !ttlRE.MatchString(a.TTL) {
			s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)", 0)
			return
		}
		msg.Priority, msg.TTL, msg.CollapseKey = strings.ToLower(a.Priority), a.TTL, a.CollapseKey
		msg.Notification = msg.Notification || (len(a.Notification) > 0 && string(a.Notification) != "null")
	}
	if st, ok := s.states.Load(m.Token); ok {
		switch st.(tokenState) {
		case stateInvalid:
			s.fail(w, http.StatusBadRequest, CodeInvalidArgument, "The registration token is not a valid FCM registration token", 0)
		case stateUnregistered:
			s.fail(w, http.StatusNotFound, CodeUnregistered, "Requested entity was not found.", 0)
		case stateMismatch:
			s.fail(w, http.StatusForbidden, CodeSenderIDMismatch, "SenderId mismatch", 0)
		case stateThirdParty:
			s.fail(w, http.StatusUnauthorized, CodeThirdPartyAuthError, "Auth error from APNS or Web Push Service", 0)
		}
		return
	}
	if req.ValidateOnly {
		writeJSON(w, map[string]string{"name": "projects/" + project + "/messages/fake_message_id"})
		s.m.answered(http.StatusOK, "")
		return
	}
	f := s.faults.Load()
	if s.refused(w, m.Token, f) {
		if s.cfg.OnRefuse != nil {
			s.cfg.OnRefuse(msg)
		}
		return
	}
	if f.Latency != nil {
		if d := f.Latency(); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
	}
	msg.Name = "projects/" + project + "/messages/0:" + strconv.FormatUint(uint64(received.UnixMicro()), 10) + "%" + strconv.FormatUint(s.seq.Add(1), 16)
	s.record(msg)
	s.m.answered(http.StatusOK, "")
	writeJSON(w, map[string]string{"name": msg.Name})
}

// refused answers a valid message with the per-device limit or a random fault when one
// applies, and reports whether one did.
func (s *Server) refused(w http.ResponseWriter, token string, f *Faults) bool {
	switch {
	case !s.allow(token, f):
		s.m.faults.WithLabelValues("per_device_429").Inc()
		s.fail(w, http.StatusTooManyRequests, CodeQuotaExceeded, "Quota exceeded for the message target.", max(f.RetryAfter, 1))
	case chance(f.Rate500):
		s.m.faults.WithLabelValues("500").Inc()
		s.fail(w, http.StatusInternalServerError, CodeInternal, "Internal error encountered.", 0)
	case chance(f.Rate503):
		s.m.faults.WithLabelValues("503").Inc()
		s.fail(w, http.StatusServiceUnavailable, CodeUnavailable, "The service is currently unavailable.", f.RetryAfter)
	case chance(f.Rate429):
		s.m.faults.WithLabelValues("429").Inc()
		s.fail(w, http.StatusTooManyRequests, CodeQuotaExceeded, "Quota exceeded for quota metric 'Send requests'.", f.RetryAfter)
	default:
		return false
	}
	return true
}
