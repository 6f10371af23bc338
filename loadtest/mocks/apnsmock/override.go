package apnsmock

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Override is a storm: for as long as it is set, the mock answers a share of the pushes that
// passed validation with one error status instead of accepting them — every push of a 503 storm,
// half of them in a 429 storm with Retry-After, and so on. It is applied after the per-device
// limit and before the random fault mix (Faults), which it leaves untouched: clearing it puts
// the mock back exactly where it was. Set it with SetOverride or PUT /control/override.
type Override struct {
	// Status is the HTTP status: 429, 500 or 503.
	Status int `json:"status"`
	// Reason is the APNs reason in the body; empty picks the status's usual one
	// (TooManyRequests, InternalServerError, ServiceUnavailable).
	Reason string `json:"reason,omitempty"`
	// Fraction is the share of pushes answered so, in (0,1]; 0 means 1 (all).
	Fraction float64 `json:"fraction,omitempty"`
	// RetryAfter, when > 0, is sent as a Retry-After header (whole seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
}

// overrideReasons are the reasons an override may answer, by status.
var overrideReasons = map[int][]string{
	http.StatusTooManyRequests:     {ReasonTooManyRequests, ReasonTooManyProviderTokenUpdates},
	http.StatusInternalServerError: {ReasonInternalServerError},
	http.StatusServiceUnavailable:  {ReasonServiceUnavailable, ReasonShutdown},
}

// normalize checks o and fills its defaults.
func (o Override) normalize() (Override, error) {
	reasons, ok := overrideReasons[o.Status]
	if !ok {
		return o, fmt.Errorf("override status %d: want 429, 500 or 503", o.Status)
	}
	if o.Reason == "" {
		o.Reason = reasons[0]
	}
	valid := false
	for _, r := range reasons {
		valid = valid || r == o.Reason
	}
	if !valid {
		return o, fmt.Errorf("override reason %q does not go with status %d (want one of %v)", o.Reason, o.Status, reasons)
	}
	if o.Fraction == 0 {
		o.Fraction = 1
	}
	if !(o.Fraction > 0 && o.Fraction <= 1) {
		return o, fmt.Errorf("override fraction %v: want (0,1]", o.Fraction)
	}
	if o.RetryAfter < 0 {
		return o, errors.New("override retry_after must not be negative")
	}
	return o, nil
}

// SetOverride starts a storm (nil ends it). It returns an error, and changes nothing, when
// the status, reason or fraction is invalid.
func (s *Server) SetOverride(o *Override) error {
	if o == nil {
		if s.override.Swap(nil) != nil {
			s.log.Info("apns-mock override cleared")
		}
		return nil
	}
	n, err := o.normalize()
	if err != nil {
		return err
	}
	s.override.Store(&n)
	s.log.Info("apns-mock override set", "status", n.Status, "reason", n.Reason, "fraction", n.Fraction, "retry_after", n.RetryAfter)
	return nil
}

// CurrentOverride returns the storm in force, or nil.
func (s *Server) CurrentOverride() *Override {
	o := s.override.Load()
	if o == nil {
		return nil
	}
	c := *o
	return &c
}

// Overridden returns the number of pushes answered by an override since start.
func (s *Server) Overridden() uint64 { return s.overridden.Load() }

// applyOverride answers the push when a storm is in force and hits it; it reports whether
// the request was consumed.
func (s *Server) applyOverride(w http.ResponseWriter, r *http.Request) bool {
	o := s.override.Load()
	if o == nil || !hit(o.Fraction) {
		return false
	}
	s.overridden.Add(1)
	s.metrics.fault("override-" + strconv.Itoa(o.Status))
	if o.RetryAfter > 0 {
		secs := (o.RetryAfter + time.Second - 1) / time.Second
		w.Header()["Retry-After"] = []string{strconv.FormatInt(int64(secs), 10)}
	}
	s.reject(w, r, o.Reason)
	return true
}

// overrideJSON is the wire form of Override for /control/override.
type overrideJSON struct {
	Status       int     `json:"status"`
	Reason       string  `json:"reason,omitempty"`
	Fraction     float64 `json:"fraction,omitempty"`
	RetryAfterMs int64   `json:"retry_after_ms,omitempty"`
}

func (s *Server) controlOverride(mux *http.ServeMux) {
	mux.HandleFunc("GET /control/override", func(w http.ResponseWriter, _ *http.Request) {
		o := s.CurrentOverride()
		if o == nil {
			writeJSON(w, nil)
			return
		}
		writeJSON(w, overrideJSON{Status: o.Status, Reason: o.Reason, Fraction: o.Fraction, RetryAfterMs: o.RetryAfter.Milliseconds()})
	})
	mux.HandleFunc("PUT /control/override", func(w http.ResponseWriter, r *http.Request) {
		var req overrideJSON
		if !readJSON(w, r, &req) {
			return
		}
		err := s.SetOverride(&Override{Status: req.Status, Reason: req.Reason, Fraction: req.Fraction,
			RetryAfter: time.Duration(req.RetryAfterMs) * time.Millisecond})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /control/override", func(w http.ResponseWriter, _ *http.Request) {
		_ = s.SetOverride(nil)
		w.WriteHeader(http.StatusNoContent)
	})
}
