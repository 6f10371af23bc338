package xmpp

import (
	"encoding/xml"
	"strings"
	"unicode/utf8"
)

// The fast path of StreamReader: a parser of the XML stanzas servers actually send, straight
// from the read buffer, that builds the same Element trees as the decoder with a handful of
// allocations per stanza instead of one or more per token.
//
// It accepts only what it can read exactly as encoding/xml (Strict) does: element and
// attribute names of ASCII name characters (at most one colon), quoted attribute values,
// character data with the five predefined entities and decimal or hexadecimal character
// references, valid UTF-8 of XML characters, and white space between top-level elements. For
// anything else — comments, CDATA sections, processing instructions, DTDs, non-ASCII names, a
// stanza that is not well-formed, one over the size limit — it reports fastSlow and the
// decoder reads the stanza from its first byte, with exactly its old results (and errors).
// So the fast path never has to produce an error itself, only to refuse what it is not sure of.
//
// All attribute values and texts of a stanza are substrings of one string made at its end (the
// values, decoded, one after the other); names and namespace URIs are interned per stream.
// Elements, attribute lists and child lists come from the stanza's Arena when the caller reads
// with NextArena (and releases the tree when done), otherwise, and beyond the arena's room, from
// blocks shared by consecutive stanzas.

type fastResult int

const (
	fastDone fastResult = iota // an element, or a final error (stream closed, too large)
	fastMore                   // the buffered input ends inside the stanza
	fastSlow                   // the decoder must read the stanza
)

// fastParser is the fast path's scratch state, reused from stanza to stanza.
type fastParser struct {
	stack []fastOpen // open elements of the stanza
	kids  []*Element // children of the open elements, each's from its fastOpen.kids
	refs  []strRef   // string fields to set when the stanza is complete
	extra []byte     // the stanza's values, decoded (entities, CR LF)
	attrs []rawAttr  // the attributes of the start tag being read

	els   []Element  // element block
	attrB []xml.Attr // attribute block
	ptrB  []*Element // child list block
	arena *Arena     // the stanza's own memory, used before the blocks (NextArena)

	names [512]string // interned names and namespace URIs
}

type fastOpen struct {
	el      *Element
	kids    int  // index in fastParser.kids of its first child
	hasText bool // a text segment was added
}

// strRef is a string field whose value is bytes [off, off+n) of the values; appendTo: append to
// the field (a later text segment).
type strRef struct {
	dst      *string
	off, n   int32
	appendTo bool
}

// rawAttr is an attribute as read: its raw name and where its value is in extra.
type rawAttr struct {
	name   xml.Name
	off, n int32
}

// Blocks: elements, attributes and child pointers are allocated this many at a time (a
// publish has ~20 elements, ~15 attributes).
const (
	elemBlock = 32
	attrBlock = 64
	ptrBlock  = 64
)

// Character classes of bytes in character data and attribute values.
const (
	chPlain   = 0
	chSpecial = 1 // '&', '\r', '<', '>', ']', quotes, control characters, non-ASCII
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 0x80, c < 0x20, c == '&', c == '<', c == '>', c == ']', c == '\'', c == '"':
			t[c] = chSpecial
		}
	}
	return t
}()

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func isNameStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == ':'
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == ':' || c == '.' || c == '-'
}

// fastNextElement reads the next top-level element from the buffered input.
func (s *StreamReader) fastNextElement() (*Element, fastResult, error) {
	l := s.lr
	data := l.buf[l.pos:l.end]
	s.pendingEnd = s.pendingEnd[:0]
	i := 0
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	// White space between stanzas (keepalives) is consumed at once; the decoder would have
	// read it as one text token ending with the next '<', within the size limit.
	if i > 0 {
		l.pos += i
		l.n += int64(i)
		s.ws += int64(i)
		data = data[i:]
		if s.ws >= s.maxStanza {
			return nil, fastDone, ErrStanzaTooLarge
		}
	}
	if len(data) < 2 {
		return nil, fastMore, nil
	}
	if data[0] != '<' {
		return nil, fastSlow, nil // text that is not white space: the decoder checks it
	}
	// The stanza's budget: the decoder counts a '<' after a text token in that token.
	allowed := int(s.maxStanza)
	if s.ws > 0 {
		allowed++
	}
	switch data[1] {
	case '!', '?':
		return nil, fastSlow, nil
	case '/':
		// The end of the stream.
		e, res := s.fastEndTag(data, 0)
		if res != fastDone {
			return nil, res, nil
		}
		if e > allowed || len(s.open) != 1 {
			return nil, fastSlow, nil
		}
		s.popOpen()
		l.pos += e
		l.n += int64(e)
		s.ws = 0
		return nil, fastDone, ErrStreamClosed
	}
	nOpen, nNS := len(s.open), len(s.ns)
	switch {
	case s.withArena && s.fast.arena == nil:
		s.fast.arena = arenas.Get().(*Arena)
	case !s.withArena && s.fast.arena != nil:
		s.fast.arena = nil // a Next caller keeps its tree: none of it may be in an arena
	}
	el, e, res := s.fast.parse(s, data)
	if res == fastDone && e > allowed {
		res = fastSlow
	}
	if res == fastMore && len(data) > allowed {
		res = fastSlow // too large, or not well-formed before: the decoder says which
	}
	if res == fastMore && len(s.open) > nOpen {
		// Its start tag is complete: it cannot be before its end tag arrives.
		root := s.open[nOpen].name
		s.pendingEnd = append(s.pendingEnd, "</"...)
		if root.Space != "" {
			s.pendingEnd = append(append(s.pendingEnd, root.Space...), ':')
		}
		s.pendingEnd = append(s.pendingEnd, root.Local...)
		s.pendingSearched = len(data)
	}
	if res != fastDone {
		s.fast.reset()
		clear(s.open[nOpen:])
		s.open = s.open[:nOpen]
		clear(s.ns[nNS:])
		s.ns = s.ns[:nNS]
		return nil, res, nil
	}
	l.pos += e
	l.n += int64(e)
	s.ws = 0
	return el, fastDone, nil
}

// reset forgets a stanza the fast path gave up on.
func (p *fastParser) reset() {
	clear(p.stack)
	p.stack = p.stack[:0]
	clear(p.kids)
	p.kids = p.kids[:0]
	clear(p.refs)
	p.refs = p.refs[:0]
	p.extra = p.extra[:0]
	p.attrs = p.attrs[:0]
	if p.arena != nil {
		p.arena.clear() // nothing refers to the elements of the abandoned parse
	}
}

// readName reads a name at data[i:]: its end, or fastMore/fastSlow (not an ASCII name).
func readName(data []byte, i int) (int, fastResult) {
	if i >= len(data) {
		return 0, fastMore
	}
	if !isNameStart(data[i]) {
		return 0, fastSlow
	}
	j := i + 1
	for j < len(data) && isNameByte(data[j]) {
		j++
	}
	if j == len(data) {
		return 0, fastMore
	}
	if data[j] >= utf8.RuneSelf {
		return 0, fastSlow
	}
	return j, fastDone
}

// intern returns b as a string, the same string as for the last bytes equal to b with the same
// slot: names and namespace URIs repeat from stanza to stanza, so most need no allocation.
func (p *fastParser) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	h %= uint32(len(p.names))
	if s := p.names[h]; s == string(b) {
		return s
	}
	s := string(b)
	p.names[h] = s
	return s
}

// splitName is encoding/xml's nsname: a name with one colon inside is prefix:local; ok is false
// for more than one colon (not well-formed).
func splitName(s string) (xml.Name, bool) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return xml.Name{Local: s}, true
	}
	if strings.IndexByte(s[i+1:], ':') >= 0 {
		return xml.Name{}, false
	}
	if i == 0 || i == len(s)-1 {
		return xml.Name{Local: s}, true
	}
	return xml.Name{Space: s[:i], Local: s[i+1:]}, true
}

// nameIs reports whether raw name n is spelled b.
func nameIs(n xml.Name, b []byte) bool {
	if n.Space == "" {
		return string(b) == n.Local
	}
	return len(b) == len(n.Space)+1+len(n.Local) && string(b[:len(n.Space)]) == n.Space &&
		b[len(n.Space)] == ':' && string(b[len(n.Space)+1:]) == n.Local
}

// fastEndTag reads an end tag at data[i:] ("</") and checks it closes the innermost open
// element of the stream (the caller pops it); it returns the index after '>'.
func (s *StreamReader) fastEndTag(data []byte, i int) (int, fastResult) {
	j, res := readName(data, i+2)
	if res != fastDone {
		return 0, res
	}
	name := data[i+2 : j]
	for j < len(data) && isSpace(data[j]) {
		j++
	}
	if j == len(data) {
		return 0, fastMore
	}
	if data[j] != '>' {
		return 0, fastSlow
	}
	if n := len(s.open); n == 0 || !nameIs(s.open[n-1].name, name) {
		return 0, fastSlow
	}
	return j + 1, fastDone
}

// popOpen closes the innermost open element of the stream: its namespace declarations go out
// of scope.
func (s *StreamReader) popOpen() {
	n := len(s.open)
	o := s.open[n-1]
	s.open[n-1] = openElement{}
	s.open = s.open[:n-1]
	clear(s.ns[o.nsMark:])
	s.ns = s.ns[:o.nsMark]
}

// parse reads the element starting at data[0] ('<' and a name start). It returns the element
// and the index after its end.
func (p *fastParser) parse(s *StreamReader, data []byte) (*Element, int, fastResult) {
	var root *Element
	i := 0
	for {
		if i >= len(data) {
			return nil, 0, fastMore
		}
		if data[i] != '<' {
			// Character data of the innermost open element.
			j, res := p.chars(data, i, 0)
			if res != fastDone {
				return nil, 0, res
			}
			top := &p.stack[len(p.stack)-1]
			ref := p.refs[len(p.refs)-1]
			ref.dst, ref.appendTo = &top.el.Text, top.hasText
			p.refs[len(p.refs)-1] = ref
			top.hasText = true
			i = j
			continue
		}
		if i+1 >= len(data) {
			return nil, 0, fastMore
		}
		switch data[i+1] {
		case '!', '?':
			return nil, 0, fastSlow
		case '/':
			j, res := s.fastEndTag(data, i)
			if res != fastDone {
				return nil, 0, res
			}
			s.popOpen()
			p.close()
			i = j
			if len(p.stack) == 0 {
				p.finish()
				return root, i, fastDone
			}
			continue
		}
		el, j, empty, res := p.startTag(s, data, i)
		if res != fastDone {
			return nil, 0, res
		}
		if len(p.stack) == 0 {
			root = el
		} else {
			p.kids = append(p.kids, el)
		}
		p.stack = append(p.stack, fastOpen{el: el, kids: len(p.kids)})
		i = j
		if empty {
			// <a/>: its end, as encoding/xml returns it.
			s.popOpen()
			p.close()
			if len(p.stack) == 0 {
				p.finish()
				return root, i, fastDone
			}
		}
	}
}

// close ends the innermost open element: its children become its child list.
func (p *fastParser) close() {
	top := p.stack[len(p.stack)-1]
	p.stack[len(p.stack)-1] = fastOpen{}
	p.stack = p.stack[:len(p.stack)-1]
	if n := len(p.kids) - top.kids; n > 0 {
		list := p.newChildren(n)
		copy(list, p.kids[top.kids:])
		top.el.Children = list
		clear(p.kids[top.kids:])
		p.kids = p.kids[:top.kids]
	}
}

// finish makes the string of the stanza's values and sets the values and texts.
func (p *fastParser) finish() {
	str := string(p.extra)
	for i := range p.refs {
		r := &p.refs[i]
		v := str[r.off : r.off+r.n]
		if r.appendTo {
			*r.dst += v
		} else {
			*r.dst = v
		}
		r.dst = nil
	}
	p.refs = p.refs[:0]
	p.extra = p.extra[:0]
}

// newElement returns a zero element from the arena, or the block when the arena is full.
func (p *fastParser) newElement() *Element {
	if a := p.arena; a != nil && a.nEl < len(a.els) {
		a.nEl++
		return &a.els[a.nEl-1]
	}
	if len(p.els) == 0 {
		p.els = make([]Element, elemBlock)
	}
	el := &p.els[0]
	p.els = p.els[1:]
	return el
}

// newAttrs returns a zero attribute list of n from the arena, or the block.
func (p *fastParser) newAttrs(n int) []xml.Attr {
	if a := p.arena; a != nil && a.nAttr+n <= len(a.attrs) {
		a.nAttr += n
		return a.attrs[a.nAttr-n : a.nAttr : a.nAttr]
	}
	if len(p.attrB) < n {
		p.attrB = make([]xml.Attr, max(attrBlock, n))
	}
	list := p.attrB[:n:n]
	p.attrB = p.attrB[n:]
	return list
}

// newChildren returns a child list of n from the arena, or the block.
func (p *fastParser) newChildren(n int) []*Element {
	if a := p.arena; a != nil && a.nPtr+n <= len(a.ptrs) {
		a.nPtr += n
		return a.ptrs[a.nPtr-n : a.nPtr : a.nPtr]
	}
	if len(p.ptrB) < n {
		p.ptrB = make([]*Element, max(ptrBlock, n))
	}
	list := p.ptrB[:n:n]
	p.ptrB = p.ptrB[n:]
	return list
}

// startTag reads a start tag at data[i:] ('<' and not '/', '!', '?'): it opens the element in
// the stream's namespace scope and returns it, the index after '>' and whether it was empty
// (<a/>).
func (p *fastParser) startTag(s *StreamReader, data []byte, i int) (*Element, int, bool, fastResult) {
	j, res := readName(data, i+1)
	if res != fastDone {
		return nil, 0, false, res
	}
	name, ok := splitName(p.intern(data[i+1 : j]))
	if !ok {
		return nil, 0, false, fastSlow
	}
	p.attrs = p.attrs[:0]
	empty := false
	for {
		for j < len(data) && isSpace(data[j]) {
			j++
		}
		if j >= len(data) {
			return nil, 0, false, fastMore
		}
		c := data[j]
		if c == '>' {
			j++
			break
		}
		if c == '/' {
			if j+1 >= len(data) {
				return nil, 0, false, fastMore
			}
			if data[j+1] != '>' {
				return nil, 0, false, fastSlow
			}
			j += 2
			empty = true
			break
		}
		k, res := readName(data, j)
		if res != fastDone {
			return nil, 0, false, res
		}
		an, ok := splitName(p.intern(data[j:k]))
		if !ok {
			return nil, 0, false, fastSlow
		}
		j = k
		for j < len(data) && isSpace(data[j]) {
			j++
		}
		if j >= len(data) {
			return nil, 0, false, fastMore
		}
		if data[j] != '=' {
			return nil, 0, false, fastSlow
		}
		j++
		for j < len(data) && isSpace(data[j]) {
			j++
		}
		if j >= len(data) {
			return nil, 0, false, fastMore
		}
		q := data[j]
		if q != '\'' && q != '"' {
			return nil, 0, false, fastSlow
		}
		k, res = p.chars(data, j+1, q)
		if res != fastDone {
			return nil, 0, false, res
		}
		// chars added a reference to the value: keep it with the attribute for now.
		ref := p.refs[len(p.refs)-1]
		p.refs = p.refs[:len(p.refs)-1]
		p.attrs = append(p.attrs, rawAttr{name: an, off: ref.off, n: ref.n})
		j = k
	}

	// Namespace declarations, then the resolved names (StreamReader.startElement), then the
	// element without its declarations (Builder.Start).
	mark := len(s.ns)
	nAttr := 0
	for _, a := range p.attrs {
		switch {
		case a.name.Space == "xmlns":
			s.ns = append(s.ns, nsBinding{a.name.Local, p.value(a)})
		case a.name.Space == "" && a.name.Local == "xmlns":
			s.ns = append(s.ns, nsBinding{"", p.value(a)})
		default:
			nAttr++
		}
	}
	s.open = append(s.open, openElement{name: name, nsMark: mark})
	el := p.newElement()
	el.Name = xml.Name{Space: s.resolve(name, true), Local: name.Local}
	if nAttr > 0 {
		list := p.newAttrs(nAttr)
		k := 0
		for _, a := range p.attrs {
			if a.name.Space == "xmlns" || (a.name.Space == "" && a.name.Local == "xmlns") {
				continue
			}
			list[k].Name = xml.Name{Space: s.resolve(a.name, false), Local: a.name.Local}
			p.refs = append(p.refs, strRef{dst: &list[k].Value, off: a.off, n: a.n})
			k++
		}
		el.Attr = list
	}
	return el, j, empty, fastDone
}

// value returns an attribute's value now (namespace URIs, interned).
func (p *fastParser) value(a rawAttr) string {
	return p.intern(p.extra[a.off : a.off+a.n])
}

// chars reads character data at data[i:] up to '<' (quote 0) or up to the closing quote of an
// attribute value, as encoding/xml's text: entities and character references replaced, CR LF
// and CR as LF, "]]>" refused outside values, and the result valid UTF-8 of XML characters. It
// appends a reference to the value to p.refs (dst unset) and returns the index after it (after
// the quote of a value).
func (p *fastParser) chars(data []byte, i int, quote byte) (int, fastResult) {
	start := i
	for i < len(data) && charClass[data[i]] == chPlain {
		i++
	}
	x := len(p.extra)
	p.extra = append(p.extra, data[start:i]...)
	if i < len(data) {
		c := data[i]
		if quote != 0 && c == quote {
			p.refs = append(p.refs, strRef{off: int32(x), n: int32(i - start)})
			return i + 1, fastDone
		}
		if quote == 0 && c == '<' {
			p.refs = append(p.refs, strRef{off: int32(x), n: int32(i - start)})
			return i, fastDone
		}
	}
	// Something to check or decode: byte by byte.
	for {
		if i >= len(data) {
			return 0, fastMore
		}
		c := data[i]
		switch {
		case quote != 0 && c == quote:
			p.refs = append(p.refs, strRef{off: int32(x), n: int32(len(p.extra) - x)})
			return i + 1, fastDone
		case c == '<':
			if quote != 0 {
				return 0, fastSlow // not well-formed
			}
			p.refs = append(p.refs, strRef{off: int32(x), n: int32(len(p.extra) - x)})
			return i, fastDone
		case c == '&':
			j, res := p.entity(data, i)
			if res != fastDone {
				return 0, res
			}
			i = j
			continue
		case c == '\r':
			p.extra = append(p.extra, '\n')
			if i+1 >= len(data) {
				return 0, fastMore
			}
			if data[i+1] == '\n' {
				i++ // CR LF is one LF
			}
			i++
			continue
		case c == '>':
			if quote == 0 && i-start >= 2 && data[i-1] == ']' && data[i-2] == ']' {
				return 0, fastSlow // "]]>" outside CDATA
			}
		case c < 0x20:
			if c != '\t' && c != '\n' {
				return 0, fastSlow // not an XML character
			}
		case c >= utf8.RuneSelf:
			if !utf8.FullRune(data[i:]) {
				return 0, fastMore
			}
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
				return 0, fastSlow
			}
			p.extra = append(p.extra, data[i:i+n]...)
			i += n
			continue
		}
		p.extra = append(p.extra, c)
		i++
	}
}

// entity reads an entity or character reference at data[i:] ('&') and appends its text to
// extra; anything but the predefined entities and valid references is fastSlow.
func (p *fastParser) entity(data []byte, i int) (int, fastResult) {
	j := i + 1
	if j >= len(data) {
		return 0, fastMore
	}
	if data[j] == '#' {
		j++
		if j >= len(data) {
			return 0, fastMore
		}
		hex := data[j] == 'x'
		if hex {
			j++
		}
		var n uint64
		digits := 0
		for ; j < len(data); j++ {
			c := data[j]
			var d uint64
			switch {
			case '0' <= c && c <= '9':
				d = uint64(c - '0')
			case hex && 'a' <= c && c <= 'f':
				d = uint64(c-'a') + 10
			case hex && 'A' <= c && c <= 'F':
				d = uint64(c-'A') + 10
			default:
				goto end
			}
			if hex {
				n = n*16 + d
			} else {
				n = n*10 + d
			}
			if n > utf8.MaxRune {
				return 0, fastSlow
			}
			digits++
		}
	end:
		if j >= len(data) {
			return 0, fastMore
		}
		if data[j] != ';' || digits == 0 {
			return 0, fastSlow
		}
		r := rune(n)
		if !utf8.ValidRune(r) {
			r = utf8.RuneError // string(rune(n)) of a surrogate
		}
		if !inCharacterRange(r) {
			return 0, fastSlow
		}
		p.extra = utf8.AppendRune(p.extra, r)
		return j + 1, fastDone
	}
	k := j
	for k < len(data) && isNameByte(data[k]) {
		k++
	}
	if k >= len(data) {
		return 0, fastMore
	}
	if data[k] != ';' {
		return 0, fastSlow
	}
	var c byte
	switch string(data[j:k]) {
	case "lt":
		c = '<'
	case "gt":
		c = '>'
	case "amp":
		c = '&'
	case "apos":
		c = '\''
	case "quot":
		c = '"'
	default:
		return 0, fastSlow
	}
	p.extra = append(p.extra, c)
	return k + 1, fastDone
}

// inCharacterRange is encoding/xml's isInCharacterRange.
func inCharacterRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
