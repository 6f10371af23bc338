package apnsmock

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errorBodies holds the pre-encoded JSON body of every non-410 rejection.
var errorBodies = func() map[string][]byte {
	m := make(map[string][]byte, len(reasonStatus))
	for r := range reasonStatus {
		if r != "" {
			m[r] = []byte(`{"reason":"` + r + `"}`)
		}
	}
	return m
}()

var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	connectionClose = []string{"close"}
	bodyPool        = sync.Pool{New: func() any { b := make([]byte, maxVoIPPayloadSize+1); return &b }}
)

// ServeHTTP implements http.Handler: /control/ and /metrics go to the control
// API, everything else is treated as an APNs request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; strings.HasPrefix(p, "/control/") || p == "/metrics" {
		s.control.ServeHTTP(w, r)
		return
	}
	s.servePush(w, r)
}

// servePush validates an APNs request in the order of pushy's MockApnsServer
// (apns-id, method, topic, collapse id, priority, push type, path/token,
// token state, authentication, payload), then applies per-device limits and
// injected faults, and finally records the push.
func (s *Server) servePush(w http.ResponseWriter, r *http.Request) {
	arrived := s.now()
	f := s.faults.Load()
	if f.Latency != nil {
		if d := f.Latency(); d > 0 && !s.sleep(r, d) {
			return
		}
	}
	if r.ProtoMajor != 2 {
		http.Error(w, "APNs requires HTTP/2", http.StatusHTTPVersionNotSupported)
		return
	}
	h := r.Header
	wh := w.Header()
	cs := connFromContext(r.Context())
	if cs != nil && cs.goAway.Load() && cs.goAway.CompareAndSwap(true, false) {
		wh["Connection"] = connectionClose // Server.GoAway: GOAWAY after this response
	}

	// apns-id: echoed (lowercased) when valid, otherwise assigned.
	apnsID, idOK := "", true
	if v := h["Apns-Id"]; len(v) > 0 {
		if validUUID(v[0]) {
			apnsID = strings.ToLower(v[0])
		} else {
			idOK = false
		}
	}
	if apnsID == "" {
		apnsID = newUUID()
	}
	wh["Apns-Id"] = []string{apnsID}
	if !idOK {
		s.reject(w, r, ReasonBadMessageID)
		return
	}
	if r.Method != http.MethodPost {
		s.reject(w, r, ReasonMethodNotAllowed)
		return
	}
	if duplicateHeaders(h) {
		s.reject(w, r, ReasonDuplicateHeaders)
		return
	}

	// Certificate auth: a connection that presented a client certificate is
	// authenticated by it (an authorization header on it is ignored, as
	// Apple documents). The certificate names the topics.
	cv := s.certAuth(r, cs)
	if cv != nil && cv.reason != "" {
		s.reject(w, r, cv.reason)
		return
	}
	topic := first(h["Apns-Topic"])
	if topic == "" && cv != nil {
		topic = cv.topic // with a certificate, the topic defaults to its subject
	}
	if topic == "" {
		s.reject(w, r, ReasonMissingTopic)
		return
	}
	var ti topicInfo
	if cv != nil {
		if !cv.allows(topic) {
			s.reject(w, r, ReasonTopicDisallowed)
			return
		}
		base, pt := splitTopic(topic)
		ti = topicInfo{base: base, pushType: pt}
	} else {
		var ok bool
		if ti, ok = s.lookupTopic(topic); !ok {
			s.reject(w, r, ReasonTopicDisallowed)
			return
		}
	}

	collapseID := first(h["Apns-Collapse-Id"])
	if len(collapseID) > maxCollapseIDSize {
		s.reject(w, r, ReasonBadCollapseID)
		return
	}

	priority := 10 // APNs default when the header is absent
	if v, ok := h["Apns-Priority"]; ok {
		p, err := strconv.Atoi(first(v))
		if err != nil || (p != 1 && p != 5 && p != 10) {
			s.reject(w, r, ReasonBadPriority)
			return
		}
		priority = p
	}

	var expiration int64
	if v, ok := h["Apns-Expiration"]; ok {
		e, err := strconv.ParseInt(first(v), 10, 64)
		if err != nil || e < 0 {
			s.reject(w, r, ReasonBadExpirationDate)
			return
		}
		expiration = e
	}

	pushType := first(h["Apns-Push-Type"])
	if pushType == "" {
		pushType = ti.pushType
		if pushType == "" {
			pushType = "alert"
		}
	}
	needsSuffix, known := pushTypes[pushType]
	if !known || (ti.pushType == "" && needsSuffix) || (ti.pushType != "" && ti.pushType != pushType) {
		s.reject(w, r, ReasonInvalidPushType)
		return
	}
	if pushType == "background" && priority == 10 {
		// Background pushes must use priority 5 (an absent header means 10).
		s.reject(w, r, ReasonBadPriority)
		return
	}

	token, ok := strings.CutPrefix(r.URL.Path, devicePathPrefix)
	if !ok {
		s.reject(w, r, ReasonBadPath)
		return
	}
	if token == "" {
		s.reject(w, r, ReasonMissingDeviceToken)
		return
	}
	if !validDeviceToken(token) {
		s.reject(w, r, ReasonBadDeviceToken)
		return
	}
	if g, ok := s.unregistered.Load(token); ok {
		s.rejectGone(w, r, g.(goneToken))
		return
	}
	if _, ok := s.badTokens.Load(token); ok {
		s.reject(w, r, ReasonBadDeviceToken)
		return
	}
	if t, ok := s.tokenTopics.Load(token); ok && t.(string) != topic {
		s.reject(w, r, ReasonDeviceTokenNotForTopic)
		return
	}

	authKind := "certificate"
	id := cv.identity()
	if cv == nil {
		authKind = "token"
		var reason string
		if id, reason = s.authenticate(r, arrived); reason != "" {
			s.reject(w, r, reason)
			return
		}
	}

	limit := maxPayloadSize
	if pushType == "voip" {
		limit = maxVoIPPayloadSize
	}
	bufp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bufp)
	n, err := readUpTo(r.Body, (*bufp)[:limit+1])
	if err != nil {
		return // stream reset or connection lost: nobody to answer
	}
	body := (*bufp)[:n]
	switch {
	case n == 0:
		s.reject(w, r, ReasonPayloadEmpty)
		return
	case n > limit:
		s.reject(w, r, ReasonPayloadTooLarge)
		return
	case !jsonObject(body):
		s.reject(w, r, ReasonBadPayload)
		return
	}

	p := Push{
		ApnsID:     apnsID,
		Token:      token,
		Topic:      topic,
		PushType:   pushType,
		CollapseID: collapseID,
		Priority:   priority,
		Expiration: expiration,
		Payload:    json.RawMessage(append([]byte(nil), body...)),
		ReceivedAt: arrived,
		TeamID:     id.teamID,
		KeyID:      id.keyID,
		Auth:       authKind,
	}
	if s.refused(w, r, f, token, arrived) {
		if s.onRefuse != nil {
			s.onRefuse(p)
		}
		return
	}
	s.store.add(p)
	if s.onPush != nil {
		s.onPush(p)
	}
	s.metrics.accepted.Inc()
	w.WriteHeader(http.StatusOK)
}

// refused answers a valid push with the per-device limit, the override or a
// random fault when one applies, and reports whether one did.
func (s *Server) refused(w http.ResponseWriter, r *http.Request, f *Faults, token string, arrived time.Time) bool {
	if f.PerDeviceLimit > 0 && !s.limiter.allow(token, arrived, f.PerDeviceLimit, f.PerDeviceWindow) {
		s.metrics.fault("429")
		s.reject(w, r, ReasonTooManyRequests)
		return true
	}
	return s.applyOverride(w, r) || s.injectFault(w, r, f)
}

// injectFault applies the random faults; it reports whether the request was
// consumed.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, f *Faults) bool {
	if f.Rate500 == 0 && f.Rate503 == 0 && f.RateStall == 0 && f.RateReset == 0 && f.RateDrop == 0 && f.RateGoAway == 0 {
		return false
	}
	switch {
	case hit(f.Rate500):
		s.metrics.fault("500")
		s.reject(w, r, ReasonInternalServerError)
	case hit(f.Rate503):
		s.metrics.fault("503")
		s.reject(w, r, ReasonServiceUnavailable)
	case hit(f.RateStall):
		s.metrics.fault("stall")
		select {
		case <-r.Context().Done():
		case <-s.closing:
			s.reject(w, r, ReasonShutdown)
		}
	case hit(f.RateReset):
		s.metrics.fault("reset")
		panic(http.ErrAbortHandler) // the HTTP/2 server answers with RST_STREAM
	case hit(f.RateDrop):
		s.metrics.fault("drop")
		if cs := connFromContext(r.Context()); cs != nil {
			_ = cs.conn.Close()
		} else {
			panic(http.ErrAbortHandler)
		}
	case hit(f.RateGoAway):
		s.metrics.fault("goaway")
		w.Header()["Connection"] = connectionClose
		if f.GoAwayReason == "" {
			return false // accepted as usual; GOAWAY follows the response
		}
		s.reject(w, r, f.GoAwayReason)
	default:
		return false
	}
	return true
}

func hit(rate float64) bool { return rate > 0 && (rate >= 1 || rand.Float64() < rate) }

// sleep waits d; false means the request was cancelled meanwhile.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return true
	}
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, reason string) {
	status := reasonStatus[reason]
	body := errorBodies[reason]
	if status == 0 { // an unknown reason (GoAwayReason): as APNs' 503 Shutdown
		status, body = http.StatusServiceUnavailable, []byte(`{"reason":`+strconv.Quote(reason)+`}`)
	}
	wh := w.Header()
	wh["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
	s.metrics.rejected(reason)
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("apns-mock rejected push", "status", status, "reason", reason,
			"path", r.URL.Path, "topic", r.Header.Get("Apns-Topic"), "apns_id", wh.Get("Apns-Id"))
	}
}

func (s *Server) rejectGone(w http.ResponseWriter, r *http.Request, g goneToken) {
	wh := w.Header()
	wh["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusGone)
	b := make([]byte, 0, 64)
	b = append(b, `{"reason":"`...)
	b = append(b, g.reason...)
	b = append(b, `","timestamp":`...)
	b = strconv.AppendInt(b, g.atMs, 10)
	b = append(b, '}')
	_, _ = w.Write(b)
	s.metrics.rejected(g.reason)
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("apns-mock rejected push", "status", http.StatusGone, "reason", g.reason, "path", r.URL.Path)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// duplicateHeaders reports whether an APNs header or authorization was sent
// more than once.
func duplicateHeaders(h http.Header) bool {
	for _, k := range [...]string{"Apns-Id", "Apns-Topic", "Apns-Priority", "Apns-Push-Type",
		"Apns-Expiration", "Apns-Collapse-Id", "Authorization"} {
		if len(h[k]) > 1 {
			return true
		}
	}
	return false
}

// validDeviceToken accepts a non-empty, even-length hexadecimal string of at
// most maxDeviceTokenHexLen characters (real tokens are 64 hex digits today,
// but Apple says not to assume a length).
func validDeviceToken(t string) bool {
	if len(t) == 0 || len(t)%2 != 0 || len(t) > maxDeviceTokenHexLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !isHex(t[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// validUUID accepts the canonical 8-4-4-4-12 hexadecimal form, any case.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// newUUID returns a random (version 4) lowercase UUID. math/rand/v2 is
// seeded from the OS and is plenty for unique ids in a mock.
func newUUID() string {
	var u [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = hexDigits[c>>4]
		out[j+1] = hexDigits[c&0x0f]
		j += 2
	}
	return string(out[:])
}

// readUpTo reads until EOF or until buf is full.
func readUpTo(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// jsonObject reports whether b is valid JSON whose top level is an object.
func jsonObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return json.Valid(b)
		default:
			return false
		}
	}
	return false
}
