// Package xmppserver is the XMPP-server side of XEP-0114 (Jabber Component Protocol) for the
// load test: it listens on a component port, accepts ingest's connection (stream header,
// handshake = hex(SHA1(stream id ‖ secret))), then sends Prosody-shaped XEP-0357 publish IQs
// and matches the answers by id.
package xmppserver

import (
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	nsComponent = "jabber:component:accept"
	nsStream    = "http://etherx.jabber.org/streams"
)

// Answer is ingest's answer to one publish.
type Answer struct {
	Type      string // result or error; empty when Err is set
	ErrorType string // wait, cancel, auth, modify
	Condition string // e.g. internal-server-error
	At        time.Time
	Err       error // the connection ended before an answer
}

// OK reports a result answer.
func (a Answer) OK() bool { return a.Err == nil && a.Type == "result" }

// Server is one impersonated XMPP server's component listener.
type Server struct {
	JID, Secret, Domain string

	ln      net.Listener
	ids     atomic.Int64
	rr      atomic.Uint64
	mu      sync.Mutex
	conns   []*conn
	changed chan struct{} // closed and replaced when conns changes
	closed  bool
	wg      sync.WaitGroup
	// Sessions counts successful handshakes; Rejected counts failed ones.
	Sessions, Rejected atomic.Int64
}

type conn struct {
	nc      net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[string]func(Answer)
	dead    bool
}

// Listen starts a component listener on addr (e.g. 127.0.0.1:0) for the component jid.
func Listen(addr, jid, secret, domain string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{JID: jid, Secret: secret, Domain: domain, ln: ln, changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
		}()
	}
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Connected is the number of authenticated component connections.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitConnected waits until at least n component connections are authenticated.
func (s *Server) WaitConnected(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := len(s.conns), s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("xmppserver %s: %d of %d component connections: %w", s.JID, got, n, ctx.Err())
		case <-ch:
		}
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	dec := xml.NewDecoder(nc)
	start, err := nextStart(dec)
	if err != nil {
		return
	}
	if start.Name.Local != "stream" || start.Name.Space != nsStream {
		io.WriteString(nc, streamError("invalid-namespace"))
		return
	}
	to := attr(start, "to")
	id := strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatInt(s.ids.Add(1), 36)
	if _, err := io.WriteString(nc, "<?xml version='1.0'?><stream:stream xmlns='"+nsComponent+"' xmlns:stream='"+nsStream+
		"' from='"+esc(to)+"' id='"+id+"'>"); err != nil {
		return
	}
	if to != s.JID {
		s.Rejected.Add(1)
		io.WriteString(nc, streamError("host-unknown"))
		return
	}
	hs, err := nextStart(dec)
	if err != nil {
		return
	}
	var digest string
	if hs.Name.Local != "handshake" || dec.DecodeElement(&digest, &hs) != nil {
		s.Rejected.Add(1)
		io.WriteString(nc, streamError("not-authorized"))
		return
	}
	sum := sha1.Sum([]byte(id + s.Secret))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(strings.TrimSpace(digest))), []byte(want)) != 1 {
		s.Rejected.Add(1)
		io.WriteString(nc, streamError("not-authorized"))
		return
	}
	if _, err := io.WriteString(nc, "<handshake/>"); err != nil {
		return
	}
	nc.SetDeadline(time.Time{})
	c := &conn{nc: nc, pending: map[string]func(Answer){}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.conns = append(s.conns, c)
	s.notify()
	s.mu.Unlock()
	s.Sessions.Add(1)

	err = c.read(dec)
	s.mu.Lock()
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			break
		}
	}
	s.notify()
	s.mu.Unlock()
	c.mu.Lock()
	c.dead = true
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	if err == nil {
		err = io.EOF
	}
	for _, cb := range pending {
		cb(Answer{At: time.Now(), Err: fmt.Errorf("component connection ended: %w", err)})
	}
}

type iqStanza struct {
	Type  string `xml:"type,attr"`
	ID    string `xml:"id,attr"`
	From  string `xml:"from,attr"`
	To    string `xml:"to,attr"`
	Error *struct {
		Type  string `xml:"type,attr"`
		Conds []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"error"`
}

// read handles the component's stanzas until the stream ends.
func (c *conn) read(dec *xml.Decoder) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil // </stream:stream>
		case xml.StartElement:
			if t.Name.Local != "iq" {
				if err := dec.Skip(); err != nil {
					return err
				}
				continue
			}
			var iq iqStanza
			if err := dec.DecodeElement(&iq, &t); err != nil {
				return err
			}
			now := time.Now()
			switch iq.Type {
			case "result", "error":
				a := Answer{Type: iq.Type, At: now}
				if iq.Error != nil {
					a.ErrorType = iq.Error.Type
					for _, cond := range iq.Error.Conds {
						if cond.XMLName.Local != "text" {
							a.Condition = cond.XMLName.Local
							break
						}
					}
				}
				c.mu.Lock()
				cb := c.pending[iq.ID]
				delete(c.pending, iq.ID)
				c.mu.Unlock()
				if cb != nil {
					cb(a)
				}
			case "get", "set":
				// A component does not query its server in this protocol subset: refuse politely.
				c.write("<iq type='error' from='" + esc(iq.To) + "' to='" + esc(iq.From) + "' id='" + esc(iq.ID) +
					"'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
			}
		}
	}
}

func (c *conn) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := io.WriteString(c.nc, s)
	return err
}

// ErrNotConnected is returned by Publish when no component is connected.
var ErrNotConnected = errors.New("xmppserver: no component connected")

// Publish sends a publish IQ for node with secret from account (a bare JID of this server)
// and calls done exactly once with the answer (from the connection's reader goroutine; keep it
// short). It returns an error, and does not call done, when the IQ could not be written.
func (s *Server) Publish(account, node, secret string, urgent bool, done func(Answer)) error {
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return ErrNotConnected
	}
	c := s.conns[int(s.rr.Add(1)%uint64(len(s.conns)))]
	s.mu.Unlock()
	id := "lt" + strconv.FormatInt(s.ids.Add(1), 36)
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return ErrNotConnected
	}
	c.pending[id] = done
	c.mu.Unlock()
	if err := c.write(PublishStanza(id, account, s.JID, node, secret, urgent)); err != nil {
		c.mu.Lock()
		_, still := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if still {
			return err
		}
		// The reader already failed it and called done.
		return nil
	}
	return nil
}

// PublishStanza is the publish IQ Prosody's mod_cloud_notify sends for an offline message
// with a body (summary form with every field); urgent adds the custom `urgent` summary field.
func PublishStanza(id, from, to, node, secret string, urgent bool) string {
	var b strings.Builder
	b.Grow(1100)
	b.WriteString("<iq type='set' from='" + esc(from) + "' to='" + esc(to) + "' id='" + id + "'>")
	b.WriteString("<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + esc(node) + "'>")
	b.WriteString("<item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>")
	b.WriteString("<field type='hidden' var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>")
	b.WriteString("<field type='text-single' var='message-count'><value>1</value></field>")
	b.WriteString("<field type='text-single' var='pending-subscription-count'/>")
	b.WriteString("<field type='jid-single' var='last-message-sender'><value>juliet@capulet.lit/balcony</value></field>")
	b.WriteString("<field type='text-single' var='last-message-body'><value>New Message!</value></field>")
	if urgent {
		b.WriteString("<field type='boolean' var='urgent'><value>true</value></field>")
	}
	b.WriteString("</x></notification></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>")
	b.WriteString("<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>")
	b.WriteString("<field var='secret'><value>" + esc(secret) + "</value></field></x></publish-options></pubsub></iq>")
	return b.String()
}

// Close ends every connection (with </stream:stream>) and stops listening.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := append([]*conn(nil), s.conns...)
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.write("</stream:stream>")
		c.nc.Close()
	}
	s.wg.Wait()
	return err
}

func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if st, ok := tok.(xml.StartElement); ok {
			return st, nil
		}
	}
}

func attr(st xml.StartElement, name string) string {
	for _, a := range st.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

func streamError(cond string) string {
	return "<stream:error><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")

func esc(s string) string { return escaper.Replace(s) }
