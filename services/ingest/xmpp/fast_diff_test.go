package xmpp_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// chunkReader returns at most n bytes per Read (n 0: everything at once).
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	if r.n > 0 && len(p) > r.n {
		p = p[:r.n]
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

// readClass is errClass with the size limit.
func readClass(err error) string {
	if errors.Is(err, xmpp.ErrStanzaTooLarge) {
		return "too-large"
	}
	return errClass(err)
}

// FuzzFastReaderMatchesDecoder: the StreamReader (its fast path, falling back to the decoder)
// reads the same element trees as the decoder alone (encoding/xml RawToken, what the reader
// was before the fast path) and fails the same way, whatever the size limit and however the
// input is cut into reads.
func FuzzFastReaderMatchesDecoder(f *testing.F) {
	seeds := []string{
		"<iq type='get' id='1' from='a' to='b'><ping xmlns='urn:xmpp:ping'/></iq>",
		"<message xml:lang='en'><body>x &amp; y &lt;&gt;&apos;&quot; &#65;&#x42;&#x1F600;</body><a:b xmlns:a='urn:a' a:c='1' d='2'/></message></stream:stream>",
		"<iq><a></iq>",
		"<iq><p:q xmlns:p='u1'><p:r xmlns:p='u2'/><p:s/></p:q><p:t/></iq>",
		"</foo>",
		"</stream:stream>",
		"<x xmlns=''><y/></x><!DOCTYPE x>",
		"<a/><b xmlns='c'>t<!-- c --><![CDATA[d]]></b>",
		"<iq",
		"  \n <presence/>\t<presence/>  ",
		"<a b=\"x'y\" c='x\"y'>line\r\nnext\rlast</a>",
		"<a>]]></a>",
		"<a b='<'/>",
		"<a>&#0;</a>",
		"<a>&#xD800;</a>",
		"<a>&#xFFFE;</a>",
		"<a>&bogus;</a>",
		"<a>&#12</a>",
		"<a>caf\u00e9 \u65e5\u672c</a>",
		"<a>\xff</a>",
		"<\u00e9/>",
		"<a:b:c/>",
		"<:a/>",
		"<a: x='1'/>",
		"<a b='1'c='2'/>",
		"<a b = '1' ></a >",
		"<a/ >",
		"<a b>",
		"<a b=c/>",
		"<1a/>",
		"<a>x<b/>y<c>z</c>w</a>",
		"<a><?pi x?></a>",
		"text<a/>",
		"<a>\x01</a>",
	}
	for _, s := range seeds {
		f.Add(header+s, uint8(0), uint16(0))
		f.Add(header+s, uint8(3), uint16(40))
		f.Add(header+s+s, uint8(1), uint16(0))
	}
	paths, _ := filepath.Glob(filepath.Join("..", "xep0357", "testdata", "stanzas", "*.xml"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(header+string(b)+string(b), uint8(0), uint16(0))
		f.Add(header+strings.TrimSpace(string(b))+" "+string(b), uint8(100), uint16(len(b)))
		f.Add(header+string(b)+"<a/>"+string(b)+string(b), uint8(255), uint16(0))
	}
	f.Fuzz(func(t *testing.T, s string, chunk uint8, limit uint16) {
		max := 1 << 20
		if limit > 0 {
			max = int(limit)
		}
		ref := xmpp.NewDecoderStreamReader(strings.NewReader(s), max)
		sr := xmpp.NewStreamReader(&chunkReader{s: s, n: int(chunk)}, max)
		_, herr := sr.Header()
		_, rerr := ref.Header()
		if readClass(herr) != readClass(rerr) {
			t.Fatalf("header: %v, reference %v", herr, rerr)
		}
		if herr != nil {
			return
		}
		// An odd chunk size reads with NextArena and releases each tree once compared, so
		// that the next stanzas reuse its memory, and every third element with Next.
		withArena := chunk%2 == 1
		for i := 0; ; i++ {
			var el *xmpp.Element
			var arena *xmpp.Arena
			var err error
			if withArena && i%3 != 2 {
				el, arena, err = sr.NextArena()
			} else {
				el, err = sr.Next()
			}
			rel, rerr := ref.Next()
			if readClass(err) != readClass(rerr) {
				t.Fatalf("element %d: %v, reference %v", i, err, rerr)
			}
			if err != nil {
				return
			}
			if !reflect.DeepEqual(el, rel) {
				t.Fatalf("element %d:\n got %+v\nwant %+v", i, el, rel)
			}
			arena.Release()
		}
	})
}

// TestFastPathReadsServerStanzas: the publishes servers send (and pretty-printed ones, split
// over reads) are read by the fast path, not handed to the decoder.
func TestFastPathReadsServerStanzas(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "xep0357", "testdata", "stanzas", "*.xml"))
	if len(paths) == 0 {
		t.Fatal("no stanzas")
	}
	var all strings.Builder
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		all.WriteString("\n ")
	}
	all.WriteString("<a>\n  <b c='&lt;&amp;&#x41;'>caf\u00e9\r\n</b>\n</a>")
	in := header + "<handshake/>" + all.String()
	for _, chunk := range []int{0, 1000, 97} {
		sr := xmpp.NewStreamReader(&chunkReader{s: in, n: chunk}, 64<<10)
		ref := xmpp.NewDecoderStreamReader(strings.NewReader(in), 64<<10)
		if _, err := sr.Header(); err != nil {
			t.Fatal(err)
		}
		ref.Header()
		n := 0
		for {
			el, err := sr.Next()
			rel, rerr := ref.Next()
			if err != nil || rerr != nil {
				if err != rerr && !(xmpp.IsNotWellFormed(err) && xmpp.IsNotWellFormed(rerr)) {
					t.Fatalf("chunk %d: %v, reference %v", chunk, err, rerr)
				}
				break
			}
			if !reflect.DeepEqual(el, rel) {
				t.Fatalf("chunk %d, element %d:\n got %+v\nwant %+v", chunk, n, el, rel)
			}
			n++
		}
		if n != len(paths)+2 {
			t.Fatalf("chunk %d: %d stanzas, want %d", chunk, n, len(paths)+2)
		}
		// Only the first stanza after the stream header goes to the decoder.
		if d := sr.Decoded(); d != 1 {
			t.Errorf("chunk %d: the decoder read %d stanzas, want 1 (the handshake)", chunk, d)
		}
	}
}

// TestArenaReuse: stanzas read with NextArena into arenas that earlier stanzas used and
// released (smaller and larger ones, some taking blocks beyond the arena, a pretty-printed one
// arriving in pieces) are exactly the decoder's trees; a tree kept from Next is untouched by
// later stanzas; and strings taken from a released tree keep their values.
func TestArenaReuse(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "xep0357", "testdata", "stanzas", "*.xml"))
	if len(paths) == 0 {
		t.Fatal("no stanzas")
	}
	var stanzas []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		stanzas = append(stanzas, string(b))
	}
	var big strings.Builder // more elements, attributes and children than an arena holds
	big.WriteString("<iq id='big'>")
	for i := range 40 {
		fmt.Fprintf(&big, "<x n='%d' m='%d'><y>%d</y></x>", i, i, i)
	}
	big.WriteString("</iq>")
	stanzas = append(stanzas, big.String(), "<a/>", "<presence from='p'><status>s</status></presence>")
	var in strings.Builder
	in.WriteString(header + "<handshake/>")
	for round := range 3 {
		for i := range stanzas {
			in.WriteString(stanzas[(i*7+round)%len(stanzas)])
			in.WriteString("\n")
		}
	}
	n := 3 * len(stanzas)
	for _, chunk := range []int{0, 97} {
		sr := xmpp.NewStreamReader(&chunkReader{s: in.String(), n: chunk}, 64<<10)
		ref := xmpp.NewDecoderStreamReader(strings.NewReader(in.String()), 64<<10)
		if _, err := sr.Header(); err != nil {
			t.Fatal(err)
		}
		ref.Header()
		sr.Next() // the handshake: the decoder reads the first stanza
		ref.Next()
		type kept struct {
			el, want *xmpp.Element
		}
		var keep []kept
		var ids []string
		arenas := 0
		for i := range n {
			var el *xmpp.Element
			var arena *xmpp.Arena
			var err error
			if i%5 == 4 {
				el, err = sr.Next()
			} else {
				el, arena, err = sr.NextArena()
			}
			rel, rerr := ref.Next()
			if err != nil || rerr != nil {
				t.Fatalf("chunk %d, stanza %d: %v, reference %v", chunk, i, err, rerr)
			}
			if !reflect.DeepEqual(el, rel) {
				t.Fatalf("chunk %d, stanza %d:\n got %+v\nwant %+v", chunk, i, el, rel)
			}
			if arena != nil {
				arenas++
				ids = append(ids, el.AttrValue("id"))
				arena.Release()
				if el.Name.Local != "" {
					t.Fatalf("chunk %d, stanza %d: a released tree still has its root's name", chunk, i)
				}
			} else if i%5 == 4 {
				keep = append(keep, kept{el, rel})
			}
		}
		if arenas < n/2 {
			t.Errorf("chunk %d: %d of %d stanzas read with NextArena came in an arena", chunk, arenas, n)
		}
		for j, k := range keep {
			if !reflect.DeepEqual(k.el, k.want) {
				t.Errorf("chunk %d: tree %d read with Next changed after later stanzas:\n got %+v\nwant %+v", chunk, j, k.el, k.want)
			}
		}
		for j, id := range ids {
			if id != "" && !strings.Contains(in.String(), "id='"+id+"'") && !strings.Contains(in.String(), "id=\""+id+"\"") {
				t.Errorf("chunk %d: id %d taken from a tree is %q after its release", chunk, j, id)
			}
		}
	}
}
