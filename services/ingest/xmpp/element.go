// Package xmpp holds the small XMPP building blocks ingest needs: a namespace-resolved element
// tree read from a stream, escaping writers for stanzas, stanza errors (RFC 6120 §8.3) and JID
// helpers. It is deliberately lenient about what it reads: servers differ.
package xmpp

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// Namespaces used by ingest.
const (
	NSStream    = "http://etherx.jabber.org/streams"
	NSComponent = "jabber:component:accept"
	NSStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams   = "urn:ietf:params:xml:ns:xmpp-streams"
	NSDiscoInfo = "http://jabber.org/protocol/disco#info"
	NSDiscoItem = "http://jabber.org/protocol/disco#items"
	NSPing      = "urn:xmpp:ping"
	NSPubSub    = "http://jabber.org/protocol/pubsub"
	NSPush      = "urn:xmpp:push:0"
	NSData      = "jabber:x:data"
)

// Element is one XML element with resolved namespaces. Text is the concatenated character data
// directly inside it.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []*Element
	Text     string
}

// AttrValue returns the value of the unqualified attribute local ("" when absent).
func (e *Element) AttrValue(local string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Name.Local == local && (a.Name.Space == "" || a.Name.Space == e.Name.Space) {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child named local in namespace space ("" matches any namespace), or nil.
func (e *Element) Child(space, local string) *Element {
	if e == nil {
		return nil
	}
	for _, c := range e.Children {
		if c.Name.Local == local && (space == "" || c.Name.Space == space) {
			return c
		}
	}
	return nil
}

// ChildrenNamed returns every child named local in namespace space ("" matches any namespace).
func (e *Element) ChildrenNamed(space, local string) []*Element {
	if e == nil {
		return nil
	}
	var out []*Element
	for _, c := range e.Children {
		if c.Name.Local == local && (space == "" || c.Name.Space == space) {
			out = append(out, c)
		}
	}
	return out
}

// FirstChild returns the first child element, or nil.
func (e *Element) FirstChild() *Element {
	if e == nil || len(e.Children) == 0 {
		return nil
	}
	return e.Children[0]
}

// TrimmedText is Text without surrounding white space.
func (e *Element) TrimmedText() string {
	if e == nil {
		return ""
	}
	return strings.TrimSpace(e.Text)
}

// Builder accumulates an element tree from decoder tokens (StartElement, EndElement, CharData).
type Builder struct {
	stack []*Element
	root  *Element
	slab  []Element // elements are allocated in blocks: one allocation for several elements
}

// slabSize is how many elements one allocation holds (a publish has ~20).
const slabSize = 32

// Start opens an element. It keeps se.Attr's array (filtered in place: namespace declarations
// removed), so the caller must not reuse it; decoder tokens are fresh each time.
func (b *Builder) Start(se xml.StartElement) {
	if len(b.slab) == 0 {
		b.slab = make([]Element, slabSize)
	}
	el := &b.slab[0]
	b.slab = b.slab[1:]
	el.Name = se.Name
	attrs := se.Attr[:0]
	for _, a := range se.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue // namespace declarations are already resolved into names
		}
		attrs = append(attrs, a)
	}
	if len(attrs) > 0 {
		el.Attr = attrs
	}
	if n := len(b.stack); n > 0 {
		p := b.stack[n-1]
		if p.Children == nil {
			p.Children = make([]*Element, 0, 4)
		}
		p.Children = append(p.Children, el)
	} else {
		b.root = el
	}
	b.stack = append(b.stack, el)
}

// Text adds character data to the open element.
func (b *Builder) Text(cd xml.CharData) {
	if n := len(b.stack); n > 0 {
		if el := b.stack[n-1]; el.Text == "" {
			el.Text = string(cd)
		} else {
			el.Text += string(cd)
		}
	}
}

// End closes the open element and reports whether the root is complete.
func (b *Builder) End() bool {
	if len(b.stack) > 0 {
		b.stack = b.stack[:len(b.stack)-1]
	}
	return len(b.stack) == 0
}

// Depth is the number of open elements.
func (b *Builder) Depth() int { return len(b.stack) }

// Root returns the built element and resets the builder.
func (b *Builder) Root() *Element {
	r := b.root
	b.root = nil
	clear(b.stack)
	b.stack = b.stack[:0]
	return r
}

// Escape returns s escaped for use in XML character data or a quoted attribute value.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var buf bytes.Buffer
	// xml.EscapeText escapes <, >, &, ', " and control characters; it never fails on a Buffer.
	_ = xml.EscapeText(&buf, []byte(s))
	return buf.String()
}

// needsEscape reports whether s has a byte xml.EscapeText would change: <, >, &, ', ", a control
// character or anything not ASCII (EscapeText also replaces invalid UTF-8 and some code points).
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' || c == '\'' || c == '"' {
			return true
		}
	}
	return false
}
