package xmpp

import "io"

// NewDecoderStreamReader is a StreamReader without the fast path: every stanza is read by
// encoding/xml's RawToken, as before the fast path existed.
func NewDecoderStreamReader(r io.Reader, maxStanza int) *StreamReader {
	s := NewStreamReader(r, maxStanza)
	s.decoderOnly = true
	return s
}

// Decoded is the number of stanzas the decoder (not the fast path) read.
func (s *StreamReader) Decoded() int { return s.decoded }
