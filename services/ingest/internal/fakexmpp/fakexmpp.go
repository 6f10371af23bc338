// Package fakexmpp is the XMPP server side of an XEP-0114 component connection, for tests and
// benchmarks: it accepts ingest's component, checks the handshake, sends stanzas and matches
// the IQ answers to them by id.
package fakexmpp

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// Server listens for component connections.
type Server struct {
	ln     net.Listener
	secret string
	conns  chan *Conn
	ids    atomic.Int64
}

// Listen starts a server on a loopback port accepting components with secret.
func Listen(secret string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, secret: secret, conns: make(chan *Conn, 4)}
	go s.serve()
	return s, nil
}

// Addr is the component port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening (established connections stay).
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serve() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			c, err := s.handshake(nc)
			if err != nil {
				nc.Close()
				return
			}
			s.conns <- c
		}()
	}
}

// Accept returns the next authenticated component connection.
func (s *Server) Accept(timeout time.Duration) (*Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-time.After(timeout):
		return nil, errors.New("fakexmpp: no component connected")
	}
}

// Answer is the component's answer to an IQ.
type Answer struct {
	Type      string // result or error
	ErrorType string // for errors: wait, cancel, auth, modify
	Condition string
	At        time.Time
}

// Conn is one component connection.
type Conn struct {
	nc      net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[string]chan Answer
	done    chan struct{}
	err     error
	srv     *Server
}

func (s *Server) handshake(nc net.Conn) (*Conn, error) {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	sr := xmpp.NewStreamReader(nc, 1<<20)
	h, err := sr.Header()
	if err != nil {
		return nil, err
	}
	to := ""
	for _, a := range h.Attr {
		if a.Name.Local == "to" {
			to = a.Value
		}
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := io.WriteString(nc, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='"+
		xmpp.Escape(to)+"' id='"+id+"'>"); err != nil {
		return nil, err
	}
	el, err := sr.Next()
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum([]byte(id + s.secret))
	if el.Name.Local != "handshake" || el.TrimmedText() != hex.EncodeToString(sum[:]) {
		io.WriteString(nc, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
		return nil, fmt.Errorf("fakexmpp: bad handshake")
	}
	if _, err := io.WriteString(nc, "<handshake/>"); err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, pending: map[string]chan Answer{}, done: make(chan struct{}), srv: s}
	go c.read(sr)
	return c, nil
}

func (c *Conn) read(sr *xmpp.StreamReader) {
	defer close(c.done)
	for {
		el, err := sr.Next()
		if err != nil {
			c.err = err
			return
		}
		if el.Name.Local != "iq" {
			continue
		}
		iq := xmpp.ParseIQ(el)
		a := Answer{Type: iq.Type, At: time.Now()}
		if iq.Type == "error" {
			if e := el.Child("", "error"); e != nil {
				se := xmpp.ReadStanzaError(e, xmpp.NSStanzas)
				a.ErrorType, a.Condition = se.Type, se.Condition
			}
		}
		c.mu.Lock()
		ch := c.pending[iq.ID]
		delete(c.pending, iq.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
}

// NextID returns a fresh IQ id.
func (c *Conn) NextID() string { return "q" + strconv.FormatInt(c.srv.ids.Add(1), 10) }

// Send writes an IQ stanza whose id is id and returns a channel that receives its answer.
func (c *Conn) Send(id, stanza string) (<-chan Answer, error) {
	ch := make(chan Answer, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	_, err := io.WriteString(c.nc, stanza)
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, err
	}
	return ch, nil
}

// Done is closed when the connection ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the connection.
func (c *Conn) Close() error {
	c.wmu.Lock()
	io.WriteString(c.nc, "</stream:stream>")
	c.wmu.Unlock()
	return c.nc.Close()
}

// Publish is a Prosody-shaped publish IQ for node with secret, from domain.
func Publish(id, from, to, node, secret string) string {
	return `<iq type='set' from='` + from + `' to='` + to + `' id='` + id + `'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'>` +
		`<item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>` +
		`<field type='hidden' var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>` +
		`<field type='text-single' var='message-count'><value>1</value></field>` +
		`<field type='text-single' var='pending-subscription-count'/>` +
		`<field type='jid-single' var='last-message-sender'><value>romeo@montague.lit/orchard</value></field>` +
		`<field type='text-single' var='last-message-body'><value>New Message!</value></field>` +
		`</x></notification></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
		`<field var='secret'><value>` + secret + `</value></field></x></publish-options></pubsub></iq>`
}
