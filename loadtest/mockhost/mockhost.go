// Package mockhost runs both provider mocks (apnsmock, fcmmock) for the load test with the
// scenario's latency and fault mix, records every push they accept (token, arrival time, wake
// id) and serves those records and the APNs override over a small HTTP API, so that the mocks
// can run in a process of their own (cmd/loadtest-mocks) and the runner reads their arrivals
// and their CPU apart from the generator's.
package mockhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
)

// Config configures the mocks.
type Config struct {
	// Dir receives apns-ca.pem, fcm-ca.pem and fcm-sa.json (the files the services' apps
	// file names).
	Dir string `json:"dir"`
	// Latency is the mocks' injected answer latency: none, fixed (Min), uniform (Min, Max),
	// exponential (Min, Mean, Max).
	Latency Latency `json:"latency"`
	Rate500 float64 `json:"rate_500"`
	Rate503 float64 `json:"rate_503"`
	// APNs: the signing key the sender's JWTs use (PEM public key or .p8 file), its team and
	// key id, and the topics (bundle ids) to accept.
	TeamID  string   `json:"team_id"`
	KeyID   string   `json:"key_id"`
	KeyFile string   `json:"key_file"`
	Topics  []string `json:"topics"`
	// FCM: the project, and how many accepted messages to keep.
	FCMProject    string `json:"fcm_project"`
	FCMMaxRecords int    `json:"fcm_max_records"`
}

// Latency is a latency distribution.
type Latency struct {
	Dist   string `json:"dist"`
	MinNS  int64  `json:"min_ns"`
	MeanNS int64  `json:"mean_ns"`
	MaxNS  int64  `json:"max_ns"`
}

func (l Latency) fn() func() time.Duration {
	min, mean, max := time.Duration(l.MinNS), time.Duration(l.MeanNS), time.Duration(l.MaxNS)
	switch l.Dist {
	case "fixed":
		return apnsmock.FixedLatency(min)
	case "uniform":
		return apnsmock.UniformLatency(min, max)
	case "exponential":
		return apnsmock.ExponentialLatency(min, mean, max)
	}
	return nil
}

// Info is where the mocks listen and the files clients need (written into Config.Dir).
type Info struct {
	APNsURL           string `json:"apns_url"`
	APNsCAFile        string `json:"apns_ca_file"`
	FCMURL            string `json:"fcm_url"`
	FCMCAFile         string `json:"fcm_ca_file"`
	FCMServiceAccount string `json:"fcm_service_account"`
}

// Arrival is one push a mock accepted.
type Arrival struct {
	Token  string `json:"t"`
	At     int64  `json:"a"` // UNIX nanoseconds (the mock's receive time, before injected latency)
	WakeID string `json:"w"`
	// Offered is when the wake was first offered (UNIX nanoseconds), when that was before At:
	// the mock refused it then (an injected fault, the per-device limit, an override) and
	// accepted a later attempt. 0 otherwise.
	Offered int64 `json:"o,omitempty"`
}

// Host runs both mocks.
type Host struct {
	APNs *apnsmock.Server
	FCM  *fcmmock.Server
	Info Info

	mu   sync.Mutex
	apns []Arrival
	// refused is the first time either mock refused a wake id (UNIX nanoseconds); only wakes
	// refused at least once are in it.
	refused map[string]int64
}

// Start starts both mocks on free loopback ports and writes the client files into cfg.Dir.
func Start(cfg Config) (*Host, error) {
	h := &Host{refused: map[string]int64{}}
	lat := cfg.Latency.fn()
	var err error
	h.APNs, err = apnsmock.New(apnsmock.Config{
		Addr: "127.0.0.1:0", Latency: lat, Rate500: cfg.Rate500, Rate503: cfg.Rate503, MaxRecords: -1,
		OnRefuse: func(p apnsmock.Push) { h.refuse(payloadWakeID(p.Payload), p.ReceivedAt.UnixNano()) },
		OnPush: func(p apnsmock.Push) {
			id := payloadWakeID(p.Payload)
			h.mu.Lock()
			h.apns = append(h.apns, Arrival{Token: p.Token, At: p.ReceivedAt.UnixNano(), WakeID: id})
			h.mu.Unlock()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("apns mock: %w", err)
	}
	pemKey, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		h.Close()
		return nil, err
	}
	pub, err := apnsmock.ParsePublicKeyPEM(pemKey)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("apns key %s: %w", cfg.KeyFile, err)
	}
	h.APNs.AddKey(cfg.TeamID, cfg.KeyID, pub)
	for _, t := range cfg.Topics {
		h.APNs.AddTopic(t)
	}
	h.FCM, err = fcmmock.New(fcmmock.Config{Addr: "127.0.0.1:0", ProjectID: cfg.FCMProject, MaxRecords: cfg.FCMMaxRecords,
		Faults:   fcmmock.Faults{Rate500: cfg.Rate500, Rate503: cfg.Rate503, Latency: lat},
		OnRefuse: func(m fcmmock.Message) { h.refuse(m.Data["wake_id"], m.ReceivedAt.UnixNano()) }})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("fcm mock: %w", err)
	}
	h.Info = Info{APNsURL: h.APNs.URL(), APNsCAFile: filepath.Join(cfg.Dir, "apns-ca.pem"), FCMURL: h.FCM.URL(),
		FCMCAFile: filepath.Join(cfg.Dir, "fcm-ca.pem"), FCMServiceAccount: filepath.Join(cfg.Dir, "fcm-sa.json")}
	err = errors.Join(os.WriteFile(h.Info.APNsCAFile, h.APNs.CACertPEM(), 0o600), os.WriteFile(h.Info.FCMCAFile, h.FCM.CACertPEM(), 0o600),
		h.FCM.WriteServiceAccount(h.Info.FCMServiceAccount, cfg.FCMProject))
	if err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// refuse notes the first time a mock refused the wake id.
func (h *Host) refuse(wakeID string, at int64) {
	if wakeID == "" {
		return
	}
	h.mu.Lock()
	if first, ok := h.refused[wakeID]; !ok || at < first {
		h.refused[wakeID] = at
	}
	h.mu.Unlock()
}

// Arrivals is every push the mocks accepted so far: APNs's in arrival order, then FCM's, each
// with its first offer when a mock refused it before.
func (h *Host) Arrivals() []Arrival {
	msgs := h.FCM.Messages()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]Arrival(nil), h.apns...)
	for _, m := range msgs {
		out = append(out, Arrival{Token: m.Token, At: m.ReceivedAt.UnixNano(), WakeID: m.Data["wake_id"]})
	}
	for i := range out {
		if first, ok := h.refused[out[i].WakeID]; ok && first < out[i].At {
			out[i].Offered = first
		}
	}
	return out
}

// Count is the number of pushes accepted so far.
func (h *Host) Count() int {
	h.mu.Lock()
	n := len(h.apns)
	h.mu.Unlock()
	return n + len(h.FCM.Messages())
}

// Override is apnsmock.Override on the wire.
type Override struct {
	Status       int     `json:"status"`
	Fraction     float64 `json:"fraction,omitempty"`
	RetryAfterMS int64   `json:"retry_after_ms,omitempty"`
}

// SetAPNsOverride sets (nil: clears) the APNs mock's override.
func (h *Host) SetAPNsOverride(o *apnsmock.Override) error { return h.APNs.SetOverride(o) }

// Handler serves GET /arrivals (JSON []Arrival), GET /count, PUT /apns-override (Override) and
// DELETE /apns-override.
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /arrivals", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.Arrivals())
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, h.Count())
	})
	mux.HandleFunc("PUT /apns-override", func(w http.ResponseWriter, r *http.Request) {
		var o Override
		if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := h.APNs.SetOverride(&apnsmock.Override{Status: o.Status, Fraction: o.Fraction, RetryAfter: time.Duration(o.RetryAfterMS) * time.Millisecond}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("DELETE /apns-override", func(w http.ResponseWriter, _ *http.Request) {
		h.APNs.SetOverride(nil)
	})
	return mux
}

// Close stops both mocks.
func (h *Host) Close() {
	if h.APNs != nil {
		h.APNs.Close()
	}
	if h.FCM != nil {
		h.FCM.Close()
	}
}

// Client is the runner's side of a Host in another process (Serve).
type Client struct {
	Base string // http://host:port of the control API
	hc   *http.Client
}

// NewClient is a client of the control API at base.
func NewClient(base string) *Client {
	return &Client{Base: base, hc: &http.Client{Timeout: 2 * time.Minute}}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, into any) error {
	var rd *bytesReader
	if body != nil {
		rd = &bytesReader{b: body}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd.reader())
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("mocks %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b [512]byte
		n, _ := resp.Body.Read(b[:])
		return fmt.Errorf("mocks %s %s: %s: %s", method, path, resp.Status, b[:n])
	}
	if into != nil {
		return json.NewDecoder(resp.Body).Decode(into)
	}
	return nil
}

// Arrivals fetches every push the mocks accepted so far.
func (c *Client) Arrivals(ctx context.Context) ([]Arrival, error) {
	var out []Arrival
	err := c.do(ctx, http.MethodGet, "/arrivals", nil, &out)
	return out, err
}

// Count fetches the number of pushes accepted so far.
func (c *Client) Count(ctx context.Context) (int, error) {
	var n int
	err := c.do(ctx, http.MethodGet, "/count", nil, &n)
	return n, err
}

// SetAPNsOverride sets (nil: clears) the APNs mock's override.
func (c *Client) SetAPNsOverride(ctx context.Context, o *apnsmock.Override) error {
	if o == nil {
		return c.do(ctx, http.MethodDelete, "/apns-override", nil, nil)
	}
	b, _ := json.Marshal(Override{Status: o.Status, Fraction: o.Fraction, RetryAfterMS: o.RetryAfter.Milliseconds()})
	return c.do(ctx, http.MethodPut, "/apns-override", b, nil)
}

// Serve runs a Host for cfg with its control API on a free loopback port, writes Info plus the
// control address ("control") as JSON to readyFile once everything listens (atomically: a
// temporary file renamed), and serves until ctx ends.
func Serve(ctx context.Context, cfg Config, readyFile string) error {
	h, err := Start(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	b, _ := json.Marshal(Ready{Info: h.Info, Control: "http://" + ln.Addr().String()})
	tmp := readyFile + ".tmp." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, readyFile); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// Ready is what Serve writes to its ready file.
type Ready struct {
	Info
	Control string `json:"control"`
}

// wakeIDField is how the sender's alert and background payloads end: `…,"wake_id":"<id>"}` (a
// VoIP payload ends with "urgent" and takes encoding/json's way).
var wakeIDField = []byte(`,"wake_id":"`)

// payloadWakeID is the top-level "wake_id" of an APNs payload ("" when there is none). The
// sender's payloads end with it, so it is read off the end without decoding the JSON
// (encoding/json here was ~7 % of the mocks' CPU under the load test, harness CPU that target 7
// wants small); anything else (escapes, another layout) goes through encoding/json.
func payloadWakeID(payload []byte) string {
	if rest, ok := bytes.CutSuffix(payload, []byte(`"}`)); ok {
		if i := bytes.LastIndex(rest, wakeIDField); i >= 0 {
			id := rest[i+len(wakeIDField):]
			if bytes.IndexAny(id, `"\`) < 0 && json.Valid(payload) {
				return string(id)
			}
		}
	}
	return jsonWakeID(payload)
}

// jsonWakeID is the top-level "wake_id" as encoding/json reads it ("" when absent or invalid).
func jsonWakeID(payload []byte) string {
	var body struct {
		WakeID string `json:"wake_id"`
	}
	json.Unmarshal(payload, &body)
	return body.WakeID
}
