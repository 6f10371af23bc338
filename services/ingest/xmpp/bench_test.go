package xmpp_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// repeatReader yields data forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		r.off = (r.off + c) % len(r.data)
		n += c
	}
	return n, nil
}

// BenchmarkStreamReader reads Prosody publishes back to back (as a busy component connection
// delivers them): the fast path and, for comparison, the decoder alone.
func BenchmarkStreamReader(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "xep0357", "testdata", "stanzas", "prosody-important.xml"))
	if err != nil {
		b.Fatal(err)
	}
	stanza := []byte(strings.TrimSpace(string(raw)))
	for _, tc := range []struct {
		name string
		new  func(io.Reader, int) *xmpp.StreamReader
	}{{"fast", xmpp.NewStreamReader}, {"decoder", xmpp.NewDecoderStreamReader}} {
		b.Run(tc.name, func(b *testing.B) {
			sr := tc.new(io.MultiReader(strings.NewReader(header), &repeatReader{data: stanza}), 64<<10)
			if _, err := sr.Header(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(stanza)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sr.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
