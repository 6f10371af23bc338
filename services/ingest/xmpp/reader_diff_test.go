package xmpp_test

import (
	"bufio"
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// refReader is the StreamReader as it was before it used RawToken: encoding/xml's Token
// (namespace translation and end-tag matching by the decoder) into the same Builder. The fuzz
// test below checks the two read the same trees and fail the same way.
type refReader struct {
	dec *xml.Decoder
	b   xmpp.Builder
}

func newRefReader(s string) *refReader {
	dec := xml.NewDecoder(bufio.NewReader(strings.NewReader(s)))
	dec.Strict = true
	return &refReader{dec: dec}
}

func (r *refReader) header() error {
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != xmpp.NSStream || t.Name.Local != "stream" {
				return errors.New("not a stream header")
			}
			return nil
		case xml.Directive:
			return xmpp.ErrRestrictedXML
		case xml.EndElement:
			return errors.New("end element before the header")
		}
	}
}

func (r *refReader) next() (*xmpp.Element, error) {
	for {
		tok, err := r.dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			r.b.Start(t)
		case xml.EndElement:
			if r.b.Depth() == 0 {
				return nil, xmpp.ErrStreamClosed
			}
			if r.b.End() {
				return r.b.Root(), nil
			}
		case xml.CharData:
			if r.b.Depth() > 0 {
				r.b.Text(t)
			}
		case xml.Directive:
			return nil, xmpp.ErrRestrictedXML
		}
	}
}

// errClass is what the component does with a read error.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, xmpp.ErrStreamClosed):
		return "closed"
	case errors.Is(err, xmpp.ErrRestrictedXML):
		return "restricted"
	case xmpp.IsNotWellFormed(err):
		return "not-well-formed"
	case err == io.EOF:
		return "eof"
	}
	return "other"
}

func FuzzStreamReaderMatchesDecoder(f *testing.F) {
	for _, s := range []string{
		header + "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
		header + "<message xml:lang='en'><body>x &amp; y</body><a:b xmlns:a='urn:a' a:c='1' d='2'/></message></stream:stream>",
		header + "<iq><a></iq>",
		header + "<iq><p:q xmlns:p='u1'><p:r xmlns:p='u2'/><p:s/></p:q><p:t/></iq>",
		header + "</foo>",
		header + "<x xmlns=''><y/></x><!DOCTYPE x>",
		"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a/><b xmlns='c'>t<!-- c --><![CDATA[d]]></b>",
		header + "<iq",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref := newRefReader(s)
		sr := xmpp.NewStreamReader(strings.NewReader(s), 1<<20)
		_, herr := sr.Header()
		rerr := ref.header()
		if errClass(herr) != errClass(rerr) {
			t.Fatalf("header: %v, reference %v", herr, rerr)
		}
		if herr != nil {
			return
		}
		for i := 0; ; i++ {
			el, err := sr.Next()
			rel, rerr := ref.next()
			if errClass(err) != errClass(rerr) {
				t.Fatalf("element %d: %v, reference %v", i, err, rerr)
			}
			if err != nil {
				return
			}
			if !reflect.DeepEqual(el, rel) {
				t.Fatalf("element %d:\n got %+v\nwant %+v", i, el, rel)
			}
		}
	})
}
