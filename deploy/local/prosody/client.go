package prosody

import (
	"context"
	"encoding/xml"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	mxmpp "mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Client is a real XMPP client (mellium) logged in to Prosody over plain c2s.
type Client struct {
	t    testing.TB
	sess *mxmpp.Session
	conn net.Conn
	done chan error
}

// Login logs user in to srv over plain c2s; the session is closed when the test ends.
func (srv *Server) Login(t testing.TB, user, password string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	addr := jid.MustParse(srv.JID(user) + "/test")
	conn, err := net.DialTimeout("tcp", srv.C2SAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The connection is plain TCP on loopback: tell the negotiator it is secure so that SASL
	// PLAIN is attempted (Prosody allows it here: allow_unencrypted_plain_auth).
	sess, err := mxmpp.NewSession(ctx, addr.Domain(), addr, conn, mxmpp.Secure, mxmpp.NewNegotiator(
		func(*mxmpp.Session, *mxmpp.StreamConfig) mxmpp.StreamConfig {
			return mxmpp.StreamConfig{Features: []mxmpp.StreamFeature{mxmpp.SASL("", password, sasl.Plain), mxmpp.BindResource()}}
		}))
	if err != nil {
		conn.Close()
		t.Fatalf("login %s: %v", user, err)
	}
	c := &Client{t: t, sess: sess, conn: conn, done: make(chan error, 1)}
	go func() { c.done <- sess.Serve(nil) }()
	t.Cleanup(c.Close)
	return c
}

// rawTokens turns XML text into tokens for mellium (namespace declarations are re-derived
// from the element names).
type rawTokens struct{ d *xml.Decoder }

func raw(s string) xml.TokenReader { return rawTokens{xml.NewDecoder(strings.NewReader(s))} }

func (r rawTokens) Token() (xml.Token, error) {
	tok, err := r.d.Token()
	if se, ok := tok.(xml.StartElement); ok {
		attrs := se.Attr[:0]
		for _, a := range se.Attr {
			if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
				attrs = append(attrs, a)
			}
		}
		se.Attr = attrs
		return se, err
	}
	return tok, err
}

// IQ sends an IQ set with payload and returns the answer's type.
func (c *Client) IQ(payload string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.sess.SendIQElement(ctx, raw(payload), stanza.IQ{Type: stanza.SetIQ})
	if err != nil {
		c.t.Fatalf("IQ: %v", err)
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		c.t.Fatalf("IQ answer: %v", err)
	}
	for _, a := range tok.(xml.StartElement).Attr {
		if a.Name.Local == "type" {
			return a.Value
		}
	}
	return ""
}

// IQTo sends an IQ of type typ ("get" or "set") with payload to the JID to and decodes the
// whole answer (the <iq/> element) into v with encoding/xml.
func (c *Client) IQTo(typ, to, payload string, v any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.sess.SendIQElement(ctx, raw(payload), stanza.IQ{Type: stanza.IQType(typ), To: jid.MustParse(to)})
	if err != nil {
		c.t.Fatalf("IQ to %s: %v", to, err)
	}
	defer resp.Close()
	if err := xml.NewTokenDecoder(resp).Decode(v); err != nil {
		c.t.Fatalf("IQ answer from %s: %v", to, err)
	}
}

// EnablePush sends the XEP-0357 enable for the App Server jid and node, with the secret in the
// publish-options form.
func (c *Client) EnablePush(appServer, node, secret string) {
	c.t.Helper()
	c.EnablePushFields(appServer, node, "secret", secret)
}

// EnablePushFields sends the XEP-0357 enable for the App Server jid and node with the given
// publish-options fields (name, value pairs), e.g. fpush's pushModule without a secret.
func (c *Client) EnablePushFields(appServer, node string, fields ...string) {
	c.t.Helper()
	payload := `<enable xmlns='urn:xmpp:push:0' jid='` + appServer + `' node='` + node + `'>` +
		`<x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`
	for i := 0; i+1 < len(fields); i += 2 {
		payload += `<field var='` + fields[i] + `'><value>` + fields[i+1] + `</value></field>`
	}
	payload += `</x></enable>`
	if typ := c.IQ(payload); typ != "result" {
		c.t.Fatalf("push enable answered %q", typ)
	}
}

// Message sends a chat message with body to the bare JID to.
func (c *Client) Message(to, body string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.sess.Send(ctx, raw(`<message xmlns='jabber:client' to='`+to+`' type='chat' id='m`+time.Now().Format("150405.000000000")+`'><body>`+body+`</body></message>`))
	if err != nil {
		c.t.Fatalf("send message: %v", err)
	}
}

// MessageXML sends a chat message to the bare JID to whose children are inner (XML text, e.g.
// an OMEMO <encrypted/> element or a Jingle Message Initiation <propose/>).
func (c *Client) MessageXML(to, inner string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.sess.Send(ctx, raw(`<message xmlns='jabber:client' to='`+to+`' type='chat' id='m`+time.Now().Format("150405.000000000")+`'>`+inner+`</message>`))
	if err != nil {
		c.t.Fatalf("send message: %v", err)
	}
}

// Close ends the session cleanly: the user goes offline.
func (c *Client) Close() {
	if c.sess == nil {
		return
	}
	c.sess.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	c.conn.Close()
	c.sess = nil
}
