package xmpp

import (
	"bufio"
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

// limitedByteReader counts the bytes the decoder consumes and refuses to go past limit.
type limitedByteReader struct {
	r     *bufio.Reader
	n     int64
	limit int64
}

func (l *limitedByteReader) ReadByte() (byte, error) {
	if l.n >= l.limit {
		return 0, ErrStanzaTooLarge
	}
	c, err := l.r.ReadByte()
	if err == nil {
		l.n++
	}
	return c, err
}

func (l *limitedByteReader) Read(p []byte) (int, error) {
	if l.n >= l.limit {
		return 0, ErrStanzaTooLarge
	}
	if rem := l.limit - l.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// StreamReader reads an XMPP stream: the stream header, then one top-level element (stanza or
// nonza) at a time as an Element tree, each at most maxStanza bytes. It is not safe for
// concurrent use.
type StreamReader struct {
	lr        *limitedByteReader
	dec       *xml.Decoder
	maxStanza int64
	b         Builder
}

// NewStreamReader reads from r with a per-stanza size limit in bytes.
func NewStreamReader(r io.Reader, maxStanza int) *StreamReader {
	lr := &limitedByteReader{r: bufio.NewReaderSize(r, 4096), limit: int64(maxStanza)}
	dec := xml.NewDecoder(lr)
	dec.Strict = true
	return &StreamReader{lr: lr, dec: dec, maxStanza: int64(maxStanza)}
}

// Header reads up to the stream header <stream:stream …> and returns it.
func (s *StreamReader) Header() (xml.StartElement, error) {
	for {
		s.lr.limit = s.lr.n + s.maxStanza
		tok, err := s.dec.Token()
		if err != nil {
			return xml.StartElement{}, s.wrap(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != NSStream || t.Name.Local != "stream" {
				return xml.StartElement{}, fmt.Errorf("xmpp: expected a stream header, got <%s xmlns='%s'>", t.Name.Local, t.Name.Space)
			}
			return t.Copy(), nil
		case xml.Directive:
			return xml.StartElement{}, ErrRestrictedXML
		case xml.EndElement:
			return xml.StartElement{}, errors.New("xmpp: unexpected end element before the stream header")
		}
		// XML declaration, comments and white space before the header are fine.
	}
}

// Next returns the next top-level element of the stream. It returns ErrStreamClosed when the
// peer ends the stream, ErrStanzaTooLarge when an element exceeds the limit, and a wrapped
// *xml.SyntaxError when the XML is not well-formed: all three end the stream.
func (s *StreamReader) Next() (*Element, error) {
	for {
		if s.b.Depth() == 0 {
			s.lr.limit = s.lr.n + s.maxStanza
		}
		tok, err := s.dec.Token()
		if err != nil {
			return nil, s.wrap(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			s.b.Start(t)
		case xml.EndElement:
			if s.b.Depth() == 0 {
				return nil, ErrStreamClosed
			}
			if s.b.End() {
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

func (s *StreamReader) wrap(err error) error {
	if errors.Is(err, ErrStanzaTooLarge) {
		return ErrStanzaTooLarge
	}
	return err
}

// IsNotWellFormed reports whether err is an XML syntax error of the stream.
func IsNotWellFormed(err error) bool {
	var se *xml.SyntaxError
	return errors.As(err, &se)
}
