package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Stream reading errors.
var (
	// ErrStanzaTooLarge: a stanza (or the gap between two) exceeded the size limit.
	ErrStanzaTooLarge = errors.New("xmpp: stanza exceeds the size limit")
	// ErrStreamClosed: the peer closed the stream with </stream:stream>.
	ErrStreamClosed = errors.New("xmpp: stream closed by peer")
	// ErrRestrictedXML: the peer sent a DTD, which XMPP forbids (RFC 6120 §11.1).
	ErrRestrictedXML = errors.New("xmpp: restricted XML (DTD) in stream")
)

// initialBuffer is the size of a stream's read buffer (it grows for a stanza that does not fit).
const initialBuffer = 16 << 10

// limitedByteReader is the stream's read buffer. For the encoding/xml decoder (the exact path)
// it is an io.ByteReader that counts the bytes the decoder consumes and refuses to go past
// limit; the fast path (fast.go) parses buf[pos:end] directly.
type limitedByteReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	n        int64
	limit    int64
	err      error
}

func (l *limitedByteReader) ReadByte() (byte, error) {
	if l.n >= l.limit {
		return 0, ErrStanzaTooLarge
	}
	if l.pos == l.end && !l.fill() {
		return 0, l.err
	}
	c := l.buf[l.pos]
	l.pos++
	l.n++
	return c, nil
}

// fill reads more input after the unread bytes buf[pos:end] (moved to the front; the buffer
// doubles when they fill it); it reports false (with l.err set) when there is none.
func (l *limitedByteReader) fill() bool {
	if l.err != nil {
		return false
	}
	switch {
	case l.pos == l.end && len(l.buf) > 4*initialBuffer:
		// A large stanza grew the buffer: give it back.
		l.buf = make([]byte, initialBuffer)
		l.pos, l.end = 0, 0
	case l.pos > 0:
		l.end = copy(l.buf, l.buf[l.pos:l.end])
		l.pos = 0
	}
	if l.end == len(l.buf) {
		nb := make([]byte, 2*len(l.buf))
		copy(nb, l.buf[:l.end])
		l.buf = nb
	}
	for i := 0; i < 100; i++ {
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if err != nil {
			l.err = err
		}
		if n > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	l.err = io.ErrNoProgress
	return false
}

// peek returns the next unread byte without consuming it (ok false at the end of the input).
func (l *limitedByteReader) peek() (byte, bool) {
	if l.pos == l.end && !l.fill() {
		return 0, false
	}
	return l.buf[l.pos], true
}

func (l *limitedByteReader) Read(p []byte) (int, error) {
	if l.n >= l.limit {
		return 0, ErrStanzaTooLarge
	}
	if rem := l.limit - l.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	if l.pos == l.end && !l.fill() {
		return 0, l.err
	}
	n := copy(p, l.buf[l.pos:l.end])
	l.pos += n
	l.n += int64(n)
	return n, nil
}

// nsBinding is one namespace declaration in scope (prefix "" is the default namespace).
type nsBinding struct{ prefix, uri string }

// openElement is an element of the stream that is not closed yet: its raw (prefixed) name and
// the number of namespace bindings in scope before it.
type openElement struct {
	name   xml.Name
	nsMark int
}

// StreamReader reads an XMPP stream: the stream header, then one top-level element (stanza or
// nonza) at a time as an Element tree, each at most maxStanza bytes. It is not safe for
// concurrent use.
//
// It uses the decoder's RawToken (the tokenizer without encoding/xml's namespace maps and
// per-token copies) and does the two things Token adds itself: matching end tags to start tags
// (not well-formed → *xml.SyntaxError) and resolving namespace prefixes, with encoding/xml's
// rules (unprefixed attributes have no namespace, prefix xml is the XML namespace, an unknown
// prefix stays as it is).
//
// Stanzas are first parsed by a purpose-built parser straight from the read buffer (fast.go),
// which accepts only the XML it can read exactly as encoding/xml does (ASCII names, quoted
// attributes, character data with the predefined entities and character references); at
// anything else (comments, CDATA, processing instructions, DTDs, non-ASCII names, anything not
// well-formed, a stanza over the size limit, a stanza that keeps arriving in pieces) it gives
// the stanza, from its first byte, to the decoder, which then decides. FuzzFastReaderMatchesDecoder
// checks the two read the same trees and fail the same way.
type StreamReader struct {
	lr        *limitedByteReader
	dec       *xml.Decoder
	maxStanza int64
	b         Builder
	ns        []nsBinding
	open      []openElement

	// slowNext: the next stanza goes to the decoder (it may hold a token of the stream header).
	slowNext bool
	// decoderOnly turns the fast path off (tests: the reference it is compared with).
	decoderOnly bool
	// decoded counts the stanzas the decoder read (tests).
	decoded int
	// ws is the white space consumed at the top level since the last top-level token (it
	// counts against the size limit of the text token the decoder would have read).
	ws   int64
	fast fastParser
	// withArena: the caller (NextArena) takes the stanza's arena.
	withArena bool
	// pendingEnd is "</" and the root name of the stanza the fast path found incomplete
	// (empty if it did not get past its start tag); the first pendingSearched bytes of the
	// stanza do not contain it.
	pendingEnd      []byte
	pendingSearched int
}

// NewStreamReader reads from r with a per-stanza size limit in bytes.
func NewStreamReader(r io.Reader, maxStanza int) *StreamReader {
	lr := &limitedByteReader{r: r, buf: make([]byte, initialBuffer), limit: int64(maxStanza)}
	dec := xml.NewDecoder(lr)
	dec.Strict = true
	return &StreamReader{lr: lr, dec: dec, maxStanza: int64(maxStanza), slowNext: true}
}

const xmlNamespaceURL = "http://www.w3.org/XML/1998/namespace"

// token returns the next raw token. The caller passes start elements to startElement and end
// elements to endElement (handled there, not here, so that the token is not boxed twice).
func (s *StreamReader) token() (xml.Token, error) {
	tok, err := s.dec.RawToken()
	if err != nil {
		if errors.Is(err, ErrStanzaTooLarge) {
			return nil, ErrStanzaTooLarge
		}
		if err == io.EOF && len(s.open) > 0 {
			return nil, s.syntaxError("unexpected EOF")
		}
		return nil, err
	}
	return tok, nil
}

// startElement records t's namespace declarations and resolves its name and attributes.
func (s *StreamReader) startElement(t *xml.StartElement) {
	mark := len(s.ns)
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "xmlns":
			s.ns = append(s.ns, nsBinding{a.Name.Local, a.Value})
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			s.ns = append(s.ns, nsBinding{"", a.Value})
		}
	}
	s.open = append(s.open, openElement{name: t.Name, nsMark: mark})
	t.Name.Space = s.resolve(t.Name, true)
	for i := range t.Attr {
		t.Attr[i].Name.Space = s.resolve(t.Attr[i].Name, false)
	}
}

// endElement checks that t closes the open element (else the stream is not well-formed) and
// drops the element's namespace declarations.
func (s *StreamReader) endElement(t xml.EndElement) error {
	n := len(s.open)
	if n == 0 {
		return s.syntaxError("unexpected end element </" + t.Name.Local + ">")
	}
	o := s.open[n-1]
	if o.name != t.Name {
		return s.syntaxError("element <" + o.name.Local + "> closed by </" + t.Name.Local + ">")
	}
	s.open = s.open[:n-1]
	clear(s.ns[o.nsMark:])
	s.ns = s.ns[:o.nsMark]
	return nil
}

// resolve returns the namespace of a raw name, like encoding/xml's Decoder.Token.
func (s *StreamReader) resolve(n xml.Name, isElementName bool) string {
	switch {
	case n.Space == "xmlns":
		return n.Space
	case n.Space == "" && !isElementName:
		return ""
	case n.Space == "xml":
		return xmlNamespaceURL
	case n.Space == "" && n.Local == "xmlns":
		return ""
	}
	for i := len(s.ns) - 1; i >= 0; i-- {
		if s.ns[i].prefix == n.Space {
			return s.ns[i].uri
		}
	}
	return n.Space // unknown prefix, or no default namespace ("")
}

func (s *StreamReader) syntaxError(msg string) error {
	line, _ := s.dec.InputPos()
	return &xml.SyntaxError{Msg: msg, Line: line}
}

// Header reads up to the stream header <stream:stream …> and returns it.
func (s *StreamReader) Header() (xml.StartElement, error) {
	for {
		s.lr.limit = s.lr.n + s.maxStanza
		tok, err := s.token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			s.startElement(&t)
			if t.Name.Space != NSStream || t.Name.Local != "stream" {
				return xml.StartElement{}, fmt.Errorf("xmpp: expected a stream header, got <%s xmlns='%s'>", t.Name.Local, t.Name.Space)
			}
			return t, nil
		case xml.Directive:
			return xml.StartElement{}, ErrRestrictedXML
		case xml.EndElement:
			if err := s.endElement(t); err != nil {
				return xml.StartElement{}, err
			}
			return xml.StartElement{}, errors.New("xmpp: unexpected end element before the stream header")
		}
		// XML declaration, comments and white space before the header are fine.
	}
}

// Next returns the next top-level element of the stream. It returns ErrStreamClosed when the
// peer ends the stream, ErrStanzaTooLarge when an element exceeds the limit, and a wrapped
// *xml.SyntaxError when the XML is not well-formed: all three end the stream.
func (s *StreamReader) Next() (*Element, error) {
	if !s.slowNext && !s.decoderOnly {
		for tries := 0; ; {
			el, res, err := s.fastNextElement()
			if res == fastDone {
				return el, err
			}
			if res == fastSlow {
				break
			}
			// fastMore: wait for more input, unless the stanza keeps arriving in pieces (each
			// try parses it from its start again).
			if s.lr.pos < s.lr.end {
				if tries++; tries > maxFastTries {
					break
				}
			}
			if !s.awaitMore() {
				break // the decoder reports the end of the input as it always did
			}
		}
	}
	return s.decodeNext()
}

// awaitMore reads more input, until the stanza the fast path found incomplete may be complete:
// its root's end tag arrived (or the size limit is reached). It reports false at the end of the
// input.
func (s *StreamReader) awaitMore() bool {
	for {
		if !s.lr.fill() {
			return false
		}
		if len(s.pendingEnd) == 0 {
			return true
		}
		data := s.lr.buf[s.lr.pos:s.lr.end]
		from := max(0, s.pendingSearched-len(s.pendingEnd)+1)
		s.pendingSearched = len(data)
		if len(data) > int(s.maxStanza)+1 || bytes.Contains(data[from:], s.pendingEnd) {
			return true
		}
	}
}

// maxFastTries bounds how often the fast path parses a stanza that is not complete yet.
const maxFastTries = 4

// decodeNext reads the next top-level element with the decoder.
func (s *StreamReader) decodeNext() (*Element, error) {
	first := true
	for {
		if s.b.Depth() == 0 {
			s.lr.limit = s.lr.n + s.maxStanza
			if first && s.ws > 0 {
				// White space before this was consumed by the fast path: with the decoder, it
				// would have been one text token with what follows (a stanza's '<' is its last
				// byte).
				if c, ok := s.lr.peek(); ok && c == '<' {
					s.lr.limit++
				} else {
					s.lr.limit -= s.ws
				}
			}
			first = false
			s.ws = 0
		}
		tok, err := s.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			s.startElement(&t)
			s.b.Start(t)
		case xml.EndElement:
			if err := s.endElement(t); err != nil {
				return nil, err
			}
			if s.b.Depth() == 0 {
				return nil, ErrStreamClosed
			}
			if s.b.End() {
				// A complete stanza leaves the decoder with nothing read ahead: the fast path
				// can go on from here.
				s.slowNext = false
				s.decoded++
				return s.b.Root(), nil
			}
		case xml.CharData:
			if s.b.Depth() > 0 {
				s.b.Text(t)
			}
		case xml.Directive:
			return nil, ErrRestrictedXML
		}
		// Comments and processing instructions are ignored (lenient).
	}
}

// IsNotWellFormed reports whether err is an XML syntax error of the stream.
func IsNotWellFormed(err error) bool {
	var se *xml.SyntaxError
	return errors.As(err, &se)
}
