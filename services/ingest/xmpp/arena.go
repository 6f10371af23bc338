package xmpp

import (
	"encoding/xml"
	"sync"
)

// Arena is the memory of one stanza's element tree as the fast path builds it: its elements,
// attribute lists and child lists (a stanza larger than the arena takes the rest from shared
// blocks, as without one). Reading a stanza with NextArena and releasing its arena once the
// tree is no longer used lets the next stanza reuse that memory: a publish allocates its tree
// (~1.3 KB in 8–20 elements) at up to tens of thousands per second, most of ingest's
// allocation.
//
// After Release the tree must not be used: its elements are zeroed and soon belong to another
// stanza. Strings taken from it (names, attribute values, texts) stay valid: they are not
// part of the arena.
type Arena struct {
	els   [arenaElems]Element
	attrs [arenaAttrs]xml.Attr
	ptrs  [arenaPtrs]*Element

	nEl, nAttr, nPtr int
}

// The arena's room: a Prosody or ejabberd publish has 8–21 elements and up to ~15 attributes.
const (
	arenaElems = 24
	arenaAttrs = 32
	arenaPtrs  = 32
)

var arenas = sync.Pool{New: func() any { return new(Arena) }}

// Release hands the arena back for another stanza. A nil arena (a stanza the decoder read)
// releases nothing. Release at most once per arena.
func (a *Arena) Release() {
	if a == nil {
		return
	}
	a.clear()
	arenas.Put(a)
}

// clear zeroes what was used, so every element, list and pointer handed out next is zero.
func (a *Arena) clear() {
	clear(a.els[:a.nEl])
	clear(a.attrs[:a.nAttr])
	clear(a.ptrs[:a.nPtr])
	a.nEl, a.nAttr, a.nPtr = 0, 0, 0
}

// NextArena is Next for a reader that releases each stanza's tree when done with it: the
// element comes with the arena holding its tree (nil when the decoder read the stanza), to be
// released once nothing uses the tree any more.
func (s *StreamReader) NextArena() (*Element, *Arena, error) {
	s.withArena = true
	el, err := s.Next()
	s.withArena = false
	a := s.fast.arena
	if el == nil || a == nil || a.nEl == 0 {
		// No tree, or one the decoder built: the arena stays for the next stanza.
		return el, nil, err
	}
	s.fast.arena = nil
	return el, a, err
}
