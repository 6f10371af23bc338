package xmpp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

const header = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='abc'>"

func TestStreamReader(t *testing.T) {
	sr := xmpp.NewStreamReader(strings.NewReader(header+
		"  <iq type='get' id='1' from='a.example' to='push.example'><ping xmlns='urn:xmpp:ping'/></iq>\n"+
		"<message><body>x &amp; y</body></message> "+
		"<iq id='big'>"+strings.Repeat("z", 300)+"</iq></stream:stream>"), 256)
	h, err := sr.Header()
	if err != nil || h.Name.Local != "stream" {
		t.Fatalf("header %v %v", h, err)
	}
	el, err := sr.Next()
	if err != nil {
		t.Fatal(err)
	}
	iq := xmpp.ParseIQ(el)
	if iq.ID != "1" || iq.Type != "get" || iq.From != "a.example" || iq.Payload.Name.Space != xmpp.NSPing {
		t.Fatalf("iq %+v", iq)
	}
	el, err = sr.Next()
	if err != nil || el.Child("", "body").Text != "x & y" || el.Name.Space != xmpp.NSComponent {
		t.Fatalf("message %+v %v", el, err)
	}
	if _, err := sr.Next(); !errors.Is(err, xmpp.ErrStanzaTooLarge) {
		t.Fatalf("oversized stanza: %v", err)
	}

	sr = xmpp.NewStreamReader(strings.NewReader(header+"</stream:stream>"), 256)
	sr.Header()
	if _, err := sr.Next(); err != xmpp.ErrStreamClosed {
		t.Fatalf("closed stream: %v", err)
	}
	sr = xmpp.NewStreamReader(strings.NewReader(header+"<iq><a></iq>"), 256)
	sr.Header()
	if _, err := sr.Next(); !xmpp.IsNotWellFormed(err) {
		t.Fatalf("not well-formed: %v", err)
	}
	// Many small stanzas: the limit applies to each, not to the stream.
	sr = xmpp.NewStreamReader(strings.NewReader(header+strings.Repeat("<presence/> ", 1000)), 160)
	sr.Header()
	for i := 0; i < 1000; i++ {
		if _, err := sr.Next(); err != nil {
			t.Fatalf("stanza %d: %v", i, err)
		}
	}
}

func TestAnswers(t *testing.T) {
	iq := xmpp.IQ{ID: `a'<"&`, From: "example.com", To: "push.example.org"}
	got := xmpp.ResultXML(iq, "")
	if got != `<iq type='result' id='a&#39;&lt;&#34;&amp;' from='push.example.org' to='example.com'/>` {
		t.Fatalf("result %s", got)
	}
	got = xmpp.ErrorXML(iq, xmpp.NewError(xmpp.ErrorWait, xmpp.ResourceConstraint, "a <b>"))
	want := `<iq type='error' id='a&#39;&lt;&#34;&amp;' from='push.example.org' to='example.com'><error type='wait'>` +
		`<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>a &lt;b&gt;</text></error></iq>`
	if got != want {
		t.Fatalf("error\n got %s\nwant %s", got, want)
	}
	for in, want := range map[string]string{"Example.COM": "example.com", "user@example.com/res": "example.com", "example.com.": "example.com", "a@b@c/d@e": "c"} {
		if got := xmpp.Domain(in); got != want {
			t.Errorf("Domain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendResultXML(t *testing.T) {
	for _, iq := range []xmpp.IQ{
		{ID: `a'<"&`, From: "example.com", To: "push.example.org"},
		{ID: "1"},
		{ID: "x", From: "caf\u00e9.example"},
	} {
		for _, payload := range []string{"", "<query xmlns='urn:x'/>"} {
			if got, want := string(xmpp.AppendResultXML([]byte("pre"), iq, payload)), "pre"+xmpp.ResultXML(iq, payload); got != want {
				t.Errorf("AppendResultXML(%+v, %q) = %s, want %s", iq, payload, got, want)
			}
		}
	}
}
