// Package component is an XEP-0114 (Jabber Component Protocol) client: it connects to an XMPP
// server's component port as the App Server JID, authenticates with the handshake, keeps the
// connection alive and reconnects with backoff and jitter, answers disco#info, disco#items and
// XEP-0199 pings itself, and dispatches other IQs to registered handlers.
//
// Robustness rules: a well-formed stanza never kills the stream (anything malformed gets an IQ
// error of type modify/bad-request); handlers that do I/O run concurrently up to a per-connection
// limit, above which an IQ waits briefly for a free slot (back-pressure through TCP) and is then
// answered wait/resource-constraint; a stanza larger than the
// size limit, XML that is not well-formed, or a DTD end the stream with the matching stream error
// and the client reconnects. On shutdown the client stops reading, lets in-flight handlers finish
// and answers them, then closes the stream.
//
// The connection is plain TCP unless Config.TLS is set: then it is direct TLS (the TLS handshake
// first, then the XEP-0114 stream), which Prosody serves on its ssl_ports (mod_net_multiplex)
// and ejabberd on an ejabberd_service listener with tls: true. The handshake never sends the
// secret (only SHA-1 of stream id and secret), but stanzas — publish-options with the node
// secrets among them — cross a plain connection in clear.
package component

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// Config configures a component connection.
type Config struct {
	// Addr is the server's component port, host:port.
	Addr string
	// JID is the component's domain, e.g. push.example.org.
	JID string
	// Secret is the shared component secret.
	Secret string
	// TLS, when set, makes the connection direct TLS with this configuration (RootCAs,
	// ServerName; an empty ServerName means Addr's host). Nil: plain TCP.
	TLS *tls.Config
	// Connection numbers this connection among several to the same server as the same JID
	// (ejabberd balances stanzas over them); it labels logs and metrics. 0 is treated as 1.
	Connection int

	// Identity and Features are announced in disco#info. Defaults: pubsub/push, and the
	// features disco#info, disco#items, ping and urn:xmpp:push:0.
	Identity Identity
	Features []string

	// KeepAlive is the interval of whitespace keepalives on an idle connection (30s).
	KeepAlive time.Duration
	// DialTimeout bounds connecting (10s); HandshakeTimeout bounds the stream header and
	// handshake (10s); WriteTimeout bounds one write (10s).
	DialTimeout, HandshakeTimeout, WriteTimeout time.Duration
	// MaxStanzaSize is the largest stanza accepted, in bytes (64 KiB).
	MaxStanzaSize int
	// MaxInFlight bounds concurrently running limited handlers per connection (256).
	MaxInFlight int
	// AdmissionWait is how long an IQ that finds MaxInFlight handlers running waits for one to
	// finish before it is answered wait/resource-constraint (250ms; negative: not at all). The
	// read loop waits meanwhile, so the XMPP server feels the pressure through TCP: a stall of
	// Kafka acks shorter than this (a GC pause, a busy host) slows publishes instead of refusing
	// them.
	AdmissionWait time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay (500ms, 30s); each delay is drawn
	// uniformly from [d/2, d] with d doubling per failed attempt.
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds waiting for in-flight handlers at shutdown (20s).
	DrainTimeout time.Duration

	// Overloaded, when set, is called for each IQ refused because MaxInFlight handlers are
	// running (for metrics); kind is the handler's name.
	Overloaded func(ctx context.Context, kind string)

	Log *slog.Logger
}

// Identity is a disco#info identity.
type Identity struct {
	Category, Type, Name string
}

// Handler answers one IQ: a result with an optional payload (serialized XML), or a stanza error.
// ctx is cancelled only when a shutdown's drain timeout expires. The IQ's element tree
// (iq.Payload and everything under it) is valid only until the handler returns: its memory
// then goes to a later stanza (xmpp.Arena). Keep strings taken from it, never its elements.
type Handler func(ctx context.Context, iq xmpp.IQ) (payload string, err *xmpp.StanzaError)

type route struct {
	name    string // metric label
	limited bool
	h       Handler
}

type routeKey struct{ typ, space, local string }

// Component is an XEP-0114 client. Register handlers with Handle before Run.
type Component struct {
	cfg    Config
	log    *slog.Logger
	routes map[routeKey]route

	connected atomic.Bool
	attrCache sync.Map      // answerKey → metric.MeasurementOption
	connAttrs attribute.Set // component_jid, server, connection

	iqDuration  metric.Float64Histogram
	connections metric.Int64UpDownCounter
	sessions    metric.Int64Counter
}

// New validates cfg and returns a component client.
func New(cfg Config) (*Component, error) {
	var errs []string
	if cfg.Addr == "" {
		errs = append(errs, "address is required")
	} else if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		errs = append(errs, fmt.Sprintf("address %q: %v", cfg.Addr, err))
	}
	if cfg.JID == "" || strings.ContainsAny(cfg.JID, "@/ ") {
		errs = append(errs, fmt.Sprintf("JID %q: want a bare domain such as push.example.org", cfg.JID))
	}
	if cfg.Secret == "" {
		errs = append(errs, "secret is required")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("component: %s", strings.Join(errs, "; "))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.KeepAlive, 30*time.Second)
	def(&cfg.DialTimeout, 10*time.Second)
	def(&cfg.HandshakeTimeout, 10*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.BackoffMin, 500*time.Millisecond)
	def(&cfg.BackoffMax, 30*time.Second)
	def(&cfg.DrainTimeout, 20*time.Second)
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.MaxStanzaSize <= 0 {
		cfg.MaxStanzaSize = 64 << 10
	}
	if cfg.AdmissionWait == 0 {
		cfg.AdmissionWait = 250 * time.Millisecond
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Identity.Category == "" {
		cfg.Identity = Identity{Category: "pubsub", Type: "push", Name: "wakepush"}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Connection <= 0 {
		cfg.Connection = 1
	}
	c := &Component{cfg: cfg, log: cfg.Log.With("component_jid", cfg.JID, "server", cfg.Addr, "connection", cfg.Connection), routes: map[routeKey]route{},
		connAttrs: attribute.NewSet(attribute.String("component_jid", cfg.JID), attribute.String("server", cfg.Addr), attribute.Int("connection", cfg.Connection))}
	meter := otel.Meter("github.com/wakepush/wakepush/services/ingest")
	var err error
	if c.iqDuration, err = meter.Float64Histogram("wakepush.ingest.iq.duration", metric.WithUnit("s"),
		metric.WithDescription("time from reading an IQ to writing its answer, by kind, answer and condition"),
		metric.WithExplicitBucketBoundaries(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if c.connections, err = meter.Int64UpDownCounter("wakepush.ingest.component.connections",
		metric.WithDescription("established XEP-0114 component connections, by component_jid, server and connection (1 while connected)")); err != nil {
		return nil, err
	}
	if c.sessions, err = meter.Int64Counter("wakepush.ingest.component.sessions",
		metric.WithDescription("component connection attempts by component_jid, server, connection and outcome")); err != nil {
		return nil, err
	}
	// 0 from the start, so a connection that never comes up shows (and alerts) as 0 rather than
	// as a missing series.
	c.connections.Add(context.Background(), 0, metric.WithAttributeSet(c.connAttrs))
	return c, nil
}

// JID is the component's JID.
func (c *Component) JID() string { return c.cfg.JID }

// Name is "jid@server#connection", which names the connection in logs and readiness.
func (c *Component) Name() string {
	return fmt.Sprintf("%s@%s#%d", c.cfg.JID, c.cfg.Addr, c.cfg.Connection)
}

// Connected reports whether the component is currently connected and authenticated.
func (c *Component) Connected() bool { return c.connected.Load() }

// Handle routes IQs of type iqType ("get" or "set") whose payload is <local xmlns=space> to h.
// name labels metrics and logs. Limited handlers run concurrently and count against MaxInFlight;
// others run inline in the read loop and must not block.
func (c *Component) Handle(iqType, space, local, name string, limited bool, h Handler) {
	c.routes[routeKey{iqType, space, local}] = route{name: name, limited: limited, h: h}
}

func (c *Component) features() []string {
	if c.cfg.Features != nil {
		return c.cfg.Features
	}
	return []string{xmpp.NSDiscoInfo, xmpp.NSDiscoItem, xmpp.NSPing, xmpp.NSPush}
}

// Run connects and serves until ctx ends, reconnecting after failures. When ctx ends it drains
// the current connection (see package doc) and returns nil.
func (c *Component) Run(ctx context.Context) error {
	c.warnPlaintext()
	attempt := 0
	for {
		began := time.Now()
		established, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		outcome := "failed"
		if established {
			outcome = "ended"
			if time.Since(began) >= c.cfg.BackoffMax {
				attempt = 0
			}
		}
		attrs := append(c.connAttrs.ToSlice(), attribute.String("outcome", outcome))
		c.sessions.Add(context.Background(), 1, metric.WithAttributes(attrs...))
		d := c.backoff(attempt)
		attempt++
		c.logSessionEnd(err, d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

func (c *Component) backoff(attempt int) time.Duration {
	d := c.cfg.BackoffMin
	for i := 0; i < attempt && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1)
}

func (c *Component) logSessionEnd(err error, retry time.Duration) {
	var se *StreamError
	switch {
	case errors.As(err, &se) && se.Condition == "not-authorized":
		c.log.Error("component handshake rejected: check the component secret", "err", err, "retry_in", retry)
	case errors.As(err, &se) && se.Condition == "host-unknown":
		c.log.Error("the server does not know the component JID: check its Component configuration", "err", err, "retry_in", retry)
	case errors.As(err, &se) && se.Condition == "conflict":
		c.log.Warn("another connection holds the component JID (Prosody allows one per JID)", "err", err, "retry_in", retry)
	default:
		c.log.Warn("component connection ended", "err", err, "retry_in", retry)
	}
}

// StreamError is a stream-level error sent by the server.
type StreamError struct {
	Condition, Text string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("stream error %s: %s", e.Condition, e.Text)
	}
	return "stream error " + e.Condition
}

// conn is one established connection.
type conn struct {
	c      *Component
	nc     net.Conn
	wmu    sync.Mutex // serialises writes; guards closed, spare and spareMeta
	closed bool
	// Answers waiting to be written together (see answer): guarded by omu.
	omu      sync.Mutex
	out      []byte
	outMeta  []pendingAnswer
	flushing bool // an answer is about to write out (a leader has yielded)
	// The buffers of the previous write, reused for the next batch.
	spare     []byte
	spareMeta []pendingAnswer
	lastW     atomic.Int64 // unix nanos of the last write
	sem       chan struct{}
	tasks     chan func()   // idle workers take limited handlers' work from here (unbuffered)
	done      chan struct{} // closed when the read loop has ended: idle workers exit
	wg        sync.WaitGroup
	hctx      context.Context // handlers' context
	hcancel   context.CancelFunc
}

// warnPlaintext logs, once per JID and server, that a plain connection leaves the loopback
// interface.
func (c *Component) warnPlaintext() {
	if c.cfg.TLS != nil || c.cfg.Connection != 1 {
		return
	}
	host, _, _ := net.SplitHostPort(c.cfg.Addr)
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	c.log.Warn("the component connection is plain TCP to a host that is not loopback: stanzas, node secrets among them, " +
		"cross the network in clear; use TLS (;tls in WAKEPUSH_COMPONENTS) or keep the path private (same host or pod, " +
		"a tunnel or a service-mesh mTLS sidecar)")
}

// dial connects to the server, with TLS when configured.
func (c *Component) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
	nc, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if c.cfg.TLS == nil {
		return nc, nil
	}
	tc := c.cfg.TLS.Clone()
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(c.cfg.Addr)
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	tlsConn := tls.Client(nc, tc)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	if err := tlsConn.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tlsConn, nil
}

// session runs one connection until it fails or ctx ends (then drains).
func (c *Component) session(ctx context.Context) (established bool, err error) {
	nc, err := c.dial(ctx)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	// Abort the handshake when ctx ends.
	stopWatch := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	sr, err := c.handshake(nc)
	if !stopWatch() || err != nil {
		if err == nil {
			err = ctx.Err()
		}
		return false, err
	}
	nc.SetDeadline(time.Time{})

	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	cn := &conn{c: c, nc: nc, sem: make(chan struct{}, c.cfg.MaxInFlight), tasks: make(chan func()), done: make(chan struct{}),
		hctx: hctx, hcancel: hcancel}
	cn.lastW.Store(time.Now().UnixNano())
	c.connected.Store(true)
	c.connections.Add(context.Background(), 1, metric.WithAttributeSet(c.connAttrs))
	defer func() {
		c.connected.Store(false)
		c.connections.Add(context.Background(), -1, metric.WithAttributeSet(c.connAttrs))
	}()
	c.log.Info("component connected")

	// Stop reading when ctx ends: the deadline unblocks the read loop.
	var draining atomic.Bool
	stopRead := context.AfterFunc(ctx, func() {
		draining.Store(true)
		nc.SetReadDeadline(time.Now())
	})
	defer stopRead()
	kaDone := make(chan struct{})
	defer close(kaDone)
	go cn.keepalive(kaDone)

	err = cn.readLoop(sr)
	close(cn.done)
	if draining.Load() {
		cn.drain()
		hcancel()
		return true, nil
	}
	// The connection failed: in-flight handlers still finish (their events may be recorded) but
	// their answers cannot be delivered.
	cn.close()
	go func() { cn.wg.Wait(); hcancel() }()
	return true, err
}

// handshake opens the stream and authenticates (XEP-0114 §3).
func (c *Component) handshake(nc net.Conn) (*xmpp.StreamReader, error) {
	nc.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	header := "<?xml version='1.0'?><stream:stream xmlns='" + xmpp.NSComponent + "' xmlns:stream='" + xmpp.NSStream +
		"' to='" + xmpp.Escape(c.cfg.JID) + "'>"
	if _, err := io.WriteString(nc, header); err != nil {
		return nil, fmt.Errorf("write stream header: %w", err)
	}
	sr := xmpp.NewStreamReader(nc, c.cfg.MaxStanzaSize)
	h, err := sr.Header()
	if err != nil {
		return nil, fmt.Errorf("read stream header: %w", err)
	}
	var id string
	for _, a := range h.Attr {
		if a.Name.Local == "id" && a.Name.Space == "" {
			id = a.Value
		}
	}
	if id == "" {
		// Some servers send an error right after a header without id.
		if el, err := sr.Next(); err == nil && isStreamError(el) {
			return nil, readStreamError(el)
		}
		return nil, errors.New("stream header has no id")
	}
	sum := sha1.Sum([]byte(id + c.cfg.Secret))
	if _, err := io.WriteString(nc, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>"); err != nil {
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	el, err := sr.Next()
	if err != nil {
		return nil, fmt.Errorf("read handshake answer: %w", err)
	}
	switch {
	case el.Name.Local == "handshake":
		return sr, nil
	case isStreamError(el):
		return nil, readStreamError(el)
	}
	return nil, fmt.Errorf("unexpected <%s/> instead of the handshake answer", el.Name.Local)
}

func isStreamError(el *xmpp.Element) bool {
	return el.Name.Space == xmpp.NSStream && el.Name.Local == "error"
}

func readStreamError(el *xmpp.Element) *StreamError {
	e := xmpp.ReadStanzaError(el, xmpp.NSStreams)
	return &StreamError{Condition: e.Condition, Text: e.Text}
}

// write sends raw XML after the answers waiting to be written, serialized with other writers.
func (cn *conn) write(s string) error {
	return cn.flush(s)
}

// pendingAnswer is what is recorded about an answer once it has been written.
type pendingAnswer struct {
	key      answerKey
	start    time.Time
	id, from string
}

// maxSpare bounds the write buffer kept between batches (a large disco or ad-hoc answer is not
// kept).
const maxSpare = 64 << 10

// flush writes the waiting answers, then raw (if any), in one write, and records each answer's
// latency (or logs it as undelivered).
func (cn *conn) flush(raw string) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.omu.Lock()
	b, metas := cn.out, cn.outMeta
	cn.out, cn.outMeta = cn.spare[:0], cn.spareMeta[:0]
	cn.flushing = false
	cn.omu.Unlock()
	b = append(b, raw...)
	var err error
	if len(b) > 0 {
		err = cn.writeLocked(b)
	}
	for i := range metas {
		cn.recordAnswer(&metas[i], err)
	}
	clear(metas)
	cn.spareMeta = metas[:0]
	if cap(b) <= maxSpare {
		cn.spare = b[:0]
	} else {
		cn.spare = nil
	}
	return err
}

// writeLocked writes b; cn.wmu is held.
func (cn *conn) writeLocked(b []byte) error {
	if cn.closed {
		return net.ErrClosed
	}
	now := time.Now()
	cn.nc.SetWriteDeadline(now.Add(cn.c.cfg.WriteTimeout))
	_, err := cn.nc.Write(b)
	cn.lastW.Store(now.UnixNano())
	if err != nil {
		// A failed write leaves the stream in an unknown state: end the connection.
		cn.closed = true
		cn.nc.Close()
	}
	return err
}

// closeWith sends a stream error (if given) and the stream end, and closes the connection.
func (cn *conn) closeWith(streamErr string) {
	if streamErr != "" {
		_ = cn.write("<stream:error><" + streamErr + " xmlns='" + xmpp.NSStreams + "'/></stream:error>")
	}
	cn.close()
}

// close sends the stream end and closes the connection.
func (cn *conn) close() {
	_ = cn.write("</stream:stream>")
	cn.wmu.Lock()
	cn.closed = true
	cn.wmu.Unlock()
	cn.nc.Close()
}

func (cn *conn) keepalive(done <-chan struct{}) {
	t := time.NewTicker(cn.c.cfg.KeepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if time.Since(time.Unix(0, cn.lastW.Load())) >= cn.c.cfg.KeepAlive {
				if err := cn.write(" "); err != nil {
					return
				}
			}
		}
	}
}

// readLoop reads and dispatches stanzas until the stream fails or the read deadline is set.
func (cn *conn) readLoop(sr *xmpp.StreamReader) error {
	for {
		el, arena, err := sr.NextArena()
		if err != nil {
			switch {
			case errors.Is(err, xmpp.ErrStanzaTooLarge):
				cn.c.log.Warn("stanza over the size limit: closing the stream", "limit", cn.c.cfg.MaxStanzaSize)
				cn.closeWith("policy-violation")
			case errors.Is(err, xmpp.ErrRestrictedXML):
				cn.closeWith("restricted-xml")
			case xmpp.IsNotWellFormed(err):
				cn.closeWith("not-well-formed")
			}
			return err
		}
		if isStreamError(el) {
			return readStreamError(el)
		}
		cn.dispatch(el, arena)
	}
}

// drain waits for in-flight handlers (bounded by DrainTimeout; then they are cancelled and
// answer with whatever their context's end makes them answer), then closes the stream and waits
// briefly for the server's closing tag.
func (cn *conn) drain() {
	done := make(chan struct{})
	go func() { cn.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cn.c.cfg.DrainTimeout):
		cn.c.log.Warn("drain timeout: cancelling in-flight IQs")
		cn.hcancel()
		select {
		case <-done:
		case <-time.After(cn.c.cfg.WriteTimeout):
		}
	}
	_ = cn.write("</stream:stream>")
	waitStreamEnd(cn.nc, 2*time.Second)
	cn.wmu.Lock()
	cn.closed = true
	cn.wmu.Unlock()
	cn.nc.Close()
	cn.c.log.Info("component disconnected (drained)")
}

// waitStreamEnd reads (and discards) what the server still sends until its closing stream tag,
// the connection's end or the timeout. Stanzas arriving now are not answered: the stream is
// closed on our side.
func waitStreamEnd(nc net.Conn, timeout time.Duration) {
	nc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	var tailBuf []byte
	for {
		n, err := nc.Read(buf)
		tailBuf = append(tailBuf, buf[:n]...)
		if len(tailBuf) > 64 {
			tailBuf = tailBuf[len(tailBuf)-64:]
		}
		if t := string(tailBuf); strings.Contains(t, ":stream>") || strings.Contains(t, "</stream>") || err != nil {
			return
		}
	}
}

// dispatch handles one top-level element and releases its arena once the element is answered
// (the handler has returned).
func (cn *conn) dispatch(el *xmpp.Element, arena *xmpp.Arena) {
	async := false
	defer func() {
		if !async {
			arena.Release()
		}
	}()
	if el.Name.Local != "iq" || (el.Name.Space != xmpp.NSComponent && el.Name.Space != "jabber:client" && el.Name.Space != "") {
		return // messages, presences and unknown nonzas need no answer
	}
	start := time.Now()
	iq := xmpp.ParseIQ(el)
	if iq.From == "" {
		cn.c.log.Debug("dropping IQ without from: it cannot be answered", "id", iq.ID)
		return
	}
	if iq.To == "" {
		iq.To = cn.c.cfg.JID
	}
	switch iq.Type {
	case "result", "error":
		return // answers to IQs this client never sends
	case "get", "set":
	default:
		cn.answer(iq, "malformed", start, "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "IQ type must be get, set, result or error"))
		return
	}
	if iq.Payload == nil {
		cn.answer(iq, "malformed", start, "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "an IQ get/set needs a payload element"))
		return
	}
	p := iq.Payload
	if r, ok := cn.c.routes[routeKey{iq.Type, p.Name.Space, p.Name.Local}]; ok {
		if !r.limited {
			payload, serr := cn.run(r, iq)
			cn.answer(iq, r.name, start, payload, serr)
			return
		}
		if !cn.admit() {
			if cn.c.cfg.Overloaded != nil {
				cn.c.cfg.Overloaded(context.Background(), r.name)
			}
			cn.answer(iq, r.name, start, "", xmpp.NewError(xmpp.ErrorWait, xmpp.ResourceConstraint, "too many requests in flight, retry later"))
			return
		}
		cn.wg.Add(1)
		async = true
		task := func() {
			defer cn.wg.Done()
			defer func() { <-cn.sem }()
			payload, serr := cn.run(r, iq)
			cn.answer(iq, r.name, start, payload, serr)
			arena.Release()
		}
		select {
		case cn.tasks <- task: // an idle worker takes it
		default:
			go cn.worker(task)
		}
		return
	}
	switch {
	case iq.Type == "get" && p.Name.Space == xmpp.NSDiscoInfo && p.Name.Local == "query":
		if node := p.AttrValue("node"); node != "" {
			cn.answer(iq, "disco_info", start, "", xmpp.NewError(xmpp.ErrorCancel, xmpp.ItemNotFound, ""))
			return
		}
		cn.answer(iq, "disco_info", start, cn.c.discoInfo(), nil)
	case iq.Type == "get" && p.Name.Space == xmpp.NSDiscoItem && p.Name.Local == "query":
		cn.answer(iq, "disco_items", start, "<query xmlns='"+xmpp.NSDiscoItem+"'/>", nil)
	case iq.Type == "get" && p.Name.Space == xmpp.NSPing && p.Name.Local == "ping":
		cn.answer(iq, "ping", start, "", nil)
	default:
		cn.answer(iq, "unsupported", start, "", xmpp.NewError(xmpp.ErrorCancel, xmpp.ServiceUnavailable, ""))
	}
}

// admit takes a handler slot, waiting up to AdmissionWait for one (the read loop waits with
// it, or until the handlers' context ends at shutdown); false: the IQ is refused.
func (cn *conn) admit() bool {
	select {
	case cn.sem <- struct{}{}:
		return true
	default:
	}
	if cn.c.cfg.AdmissionWait <= 0 {
		return false
	}
	t := time.NewTimer(cn.c.cfg.AdmissionWait)
	defer t.Stop()
	select {
	case cn.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-cn.hctx.Done():
		return false
	}
}

// workerIdle is how long a worker waits for more work before it exits.
const workerIdle = 5 * time.Second

// worker runs task, then further tasks while there are some. Reusing goroutines instead of
// starting one per publish saves growing a fresh goroutine's stack through the handler's call
// depth each time (~7 % of a publish's CPU). Busy workers are bounded by sem (MaxInFlight); a
// task that finds no idle worker starts one, so a few more may exist briefly, and idle ones
// exit after workerIdle or when the read loop ends.
func (cn *conn) worker(task func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		task()
		t.Reset(workerIdle)
		select {
		case task = <-cn.tasks:
		case <-t.C:
			return
		case <-cn.done:
			return
		}
	}
}

// run calls a handler, turning a panic into wait/internal-server-error.
func (cn *conn) run(r route, iq xmpp.IQ) (payload string, serr *xmpp.StanzaError) {
	defer func() {
		if p := recover(); p != nil {
			cn.c.log.Error("IQ handler panicked", "handler", r.name, "panic", p, "stack", string(debug.Stack()))
			payload, serr = "", xmpp.NewError(xmpp.ErrorWait, xmpp.InternalServerError, "")
		}
	}()
	return r.h(cn.hctx, iq)
}

func (c *Component) discoInfo() string {
	var b strings.Builder
	b.WriteString("<query xmlns='" + xmpp.NSDiscoInfo + "'><identity category='")
	b.WriteString(xmpp.Escape(c.cfg.Identity.Category))
	b.WriteString("' type='")
	b.WriteString(xmpp.Escape(c.cfg.Identity.Type))
	b.WriteString("'")
	if c.cfg.Identity.Name != "" {
		b.WriteString(" name='")
		b.WriteString(xmpp.Escape(c.cfg.Identity.Name))
		b.WriteString("'")
	}
	b.WriteString("/>")
	for _, f := range c.features() {
		b.WriteString("<feature var='")
		b.WriteString(xmpp.Escape(f))
		b.WriteString("'/>")
	}
	b.WriteString("</query>")
	return b.String()
}

// answer writes the result or error of iq and records its latency.
//
// Answers are written in batches. One Kafka acknowledgement makes every publish of its batch
// runnable at once; each appends its answer, and the first of them (the leader) yields once
// (runtime.Gosched) so the others can append theirs before it writes them all with one write.
// A write system call costs several microseconds (a quarter of a publish's CPU when each answer
// had its own); the yield costs a fraction of one. The others return without waiting: the
// leader records their latency and logs the ones it could not deliver.
func (cn *conn) answer(iq xmpp.IQ, kind string, start time.Time, payload string, serr *xmpp.StanzaError) {
	k := answerKey{kind: kind, answer: "result"}
	if serr != nil {
		k.answer, k.condition = serr.Type, serr.Condition
	}
	cn.omu.Lock()
	if serr == nil {
		cn.out = xmpp.AppendResultXML(cn.out, iq, payload)
	} else {
		cn.out = append(cn.out, xmpp.ErrorXML(iq, serr)...)
	}
	cn.outMeta = append(cn.outMeta, pendingAnswer{key: k, start: start, id: iq.ID, from: iq.From})
	lead := !cn.flushing
	cn.flushing = true
	cn.omu.Unlock()
	if lead {
		runtime.Gosched()
		_ = cn.flush("")
	}
}

// recordAnswer records an answer's latency once its write returned err.
func (cn *conn) recordAnswer(a *pendingAnswer, err error) {
	k := a.key
	if err != nil {
		// Only the sender's domain: a full JID (ad-hoc commands come from users) names a user
		// and their device.
		cn.c.log.Warn("could not answer IQ", "kind", k.kind, "id", a.id, "from_domain", xmpp.Domain(a.from), "err", err)
		k.answer = "undelivered"
	}
	cn.c.iqDuration.Record(context.Background(), time.Since(a.start).Seconds(), cn.c.answerAttrs(k))
}

type answerKey struct{ kind, answer, condition string }

// answerAttrs returns the (cached) attribute set of an answer: building one per IQ costs
// several microseconds.
func (c *Component) answerAttrs(k answerKey) metric.MeasurementOption {
	if o, ok := c.attrCache.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := c.attrCache.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("kind", k.kind), attribute.String("answer", k.answer), attribute.String("condition", k.condition))))
	return o.(metric.MeasurementOption)
}
