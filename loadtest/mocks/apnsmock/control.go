package apnsmock

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// controlHandler serves the control API (JSON over the same HTTPS listener,
// HTTP/2 or HTTP/1.1):
//
//	GET  /control/healthz                 200 "ok"
//	GET  /control/pushes?token=T&limit=N  accepted pushes (oldest first; limit keeps the newest N)
//	GET  /control/stats                   {"accepted":..,"recorded":..,"open_connections":..}
//	POST /control/reset                   Reset()
//	POST /control/unregister              {"token":..,"timestamp_ms":..,"reason":"Unregistered"|"ExpiredToken"}
//	POST /control/reregister              {"token":..}
//	POST /control/bad-tokens              {"token":..}
//	POST /control/token-topics            {"token":..,"topic":..}
//	POST /control/keys                    {"team_id":..,"key_id":..,"public_key_pem":..}
//	POST /control/topics                  {"topic":..}
//	GET  /control/faults, POST /control/faults  see faultsJSON
//	POST /control/drop-connections        {"dropped":n}; closes all other connections
//	POST /control/goaway                  {"marked":n}; GoAway(): every connection gets GOAWAY after its next response
//	GET, PUT, DELETE /control/override    a storm: {"status":503,"reason":..,"fraction":..,"retry_after_ms":..} (override.go)
//	GET  /metrics                         Prometheus text format
//
// POSTs answer 204 No Content on success and 400 with a text message on bad
// input.
func (s *Server) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /control/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /control/pushes", func(w http.ResponseWriter, r *http.Request) {
		pushes := s.store.all(r.URL.Query().Get("token"))
		if l := r.URL.Query().Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 0 {
				http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
				return
			}
			if len(pushes) > n {
				pushes = pushes[len(pushes)-n:]
			}
		}
		writeJSON(w, pushes)
	})
	mux.HandleFunc("GET /control/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"accepted":         s.store.accepted(),
			"recorded":         s.store.len(),
			"open_connections": s.conns.len(),
		})
	})
	mux.HandleFunc("POST /control/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/unregister", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token       string `json:"token"`
			TimestampMs int64  `json:"timestamp_ms"`
			Reason      string `json:"reason"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if !validDeviceToken(req.Token) {
			http.Error(w, "token must be hexadecimal", http.StatusBadRequest)
			return
		}
		at := s.now()
		if req.TimestampMs != 0 {
			at = time.UnixMilli(req.TimestampMs)
		}
		switch req.Reason {
		case "", ReasonUnregistered:
			s.Unregister(req.Token, at)
		case ReasonExpiredToken:
			s.ExpireToken(req.Token, at)
		default:
			http.Error(w, "reason must be Unregistered or ExpiredToken", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/reregister", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.Reregister(req.Token)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/bad-tokens", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Token == "" {
			http.Error(w, "token is required", http.StatusBadRequest)
			return
		}
		s.SetBadToken(req.Token)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/token-topics", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
			Topic string `json:"topic"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Token == "" || req.Topic == "" {
			http.Error(w, "token and topic are required", http.StatusBadRequest)
			return
		}
		s.SetTokenTopic(req.Token, req.Topic)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TeamID       string `json:"team_id"`
			KeyID        string `json:"key_id"`
			PublicKeyPEM string `json:"public_key_pem"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.TeamID == "" || req.KeyID == "" {
			http.Error(w, "team_id and key_id are required", http.StatusBadRequest)
			return
		}
		pub, err := ParsePublicKeyPEM([]byte(req.PublicKeyPEM))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.AddKey(req.TeamID, req.KeyID, pub)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/topics", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Topic string `json:"topic"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Topic == "" {
			http.Error(w, "topic is required", http.StatusBadRequest)
			return
		}
		s.AddTopic(req.Topic)
		s.log.Info("apns-mock topic added", "topic", req.Topic)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /control/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, faultsToJSON(s.Faults()))
	})
	mux.HandleFunc("POST /control/faults", func(w http.ResponseWriter, r *http.Request) {
		req := faultsToJSON(s.Faults()) // fields left out keep their value
		if !readJSON(w, r, &req) {
			return
		}
		f, err := req.faults(s.Faults())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		s.log.Info("apns-mock faults changed", "faults", req)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/drop-connections", func(w http.ResponseWriter, r *http.Request) {
		// Spare the caller's own connection so that it gets its answer.
		var keep net.Conn
		if cs := connFromContext(r.Context()); cs != nil {
			keep = cs.conn
		}
		writeJSON(w, map[string]int{"dropped": s.conns.closeAll(keep)})
	})
	mux.HandleFunc("POST /control/goaway", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int{"marked": s.GoAway()})
	})
	s.controlOverride(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// faultsJSON is the wire form of Faults for /control/faults. Latency is
// uniform in [latency_ms, latency_ms+latency_jitter_ms]; both 0 remove it.
// When latency fields are omitted from a POST, a latency function set in Go
// (Config.Latency) is kept.
type faultsJSON struct {
	Rate500           float64  `json:"rate_500"`
	Rate503           float64  `json:"rate_503"`
	RateStall         float64  `json:"rate_stall"`
	RateReset         float64  `json:"rate_reset"`
	RateDrop          float64  `json:"rate_drop"`
	RateGoAway        float64  `json:"rate_goaway"`
	GoAwayReason      string   `json:"goaway_reason,omitempty"`
	PerDeviceLimit    int      `json:"per_device_limit"`
	PerDeviceWindowMs int64    `json:"per_device_window_ms"`
	LatencyMs         *float64 `json:"latency_ms,omitempty"`
	LatencyJitterMs   *float64 `json:"latency_jitter_ms,omitempty"`
}

func faultsToJSON(f Faults) faultsJSON {
	return faultsJSON{
		Rate500: f.Rate500, Rate503: f.Rate503, RateStall: f.RateStall, RateReset: f.RateReset, RateDrop: f.RateDrop,
		RateGoAway: f.RateGoAway, GoAwayReason: f.GoAwayReason,
		PerDeviceLimit: f.PerDeviceLimit, PerDeviceWindowMs: f.PerDeviceWindow.Milliseconds(),
	}
}

func (j faultsJSON) faults(old Faults) (Faults, error) {
	for _, r := range []float64{j.Rate500, j.Rate503, j.RateStall, j.RateReset, j.RateDrop, j.RateGoAway} {
		if r < 0 || r > 1 {
			return Faults{}, errors.New("rates must be within [0,1]")
		}
	}
	if j.PerDeviceLimit < 0 || j.PerDeviceWindowMs < 0 {
		return Faults{}, errors.New("per_device_limit and per_device_window_ms must not be negative")
	}
	f := Faults{
		Rate500: j.Rate500, Rate503: j.Rate503, RateStall: j.RateStall, RateReset: j.RateReset, RateDrop: j.RateDrop,
		RateGoAway: j.RateGoAway, GoAwayReason: j.GoAwayReason,
		PerDeviceLimit: j.PerDeviceLimit, PerDeviceWindow: time.Duration(j.PerDeviceWindowMs) * time.Millisecond,
		Latency: old.Latency,
	}
	if j.LatencyMs != nil || j.LatencyJitterMs != nil {
		var base, jitter float64
		if j.LatencyMs != nil {
			base = *j.LatencyMs
		}
		if j.LatencyJitterMs != nil {
			jitter = *j.LatencyJitterMs
		}
		if base < 0 || jitter < 0 {
			return Faults{}, errors.New("latency must not be negative")
		}
		ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
		switch {
		case base == 0 && jitter == 0:
			f.Latency = nil
		case jitter == 0:
			f.Latency = FixedLatency(ms(base))
		default:
			f.Latency = UniformLatency(ms(base), ms(base+jitter))
		}
	}
	return f, nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, fmt.Sprintf("bad JSON body: %v", err), http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
