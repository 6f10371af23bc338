package registry

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"unique"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/identity"
)

// A store holds devices in memory the garbage collector does not scan. A map[string]Device
// holds five or six pointers per device (the key, App, Token, the Registrations slice), and
// with millions of devices marking them was a fifth of the sender's CPU under load. Here a
// device is an entry, a fixed-size struct without pointers (with its first registration), in
// pages of entries; the maps from device id to entry index have no pointers either (a canonical
// device id is its 16 decoded bytes); the device's token and its other registrations are bytes
// in one arena (a lowercase hex token decoded: an APNs token takes 32 bytes, not 64); apps are
// indexes into a small table. The GC sees one pointer per page of entries, the arena, and what
// the exceptions below hold.
//
// Exceptions keep the ordinary layout, so that nothing is lost or changed: a device id that is
// not canonical (tests, hand-written records) is a string key of other; a device that does not
// fit an entry (an enum value beyond a byte, a token of 16 MB, more than 65536 apps or 253
// registrations) is a Device in spill. Both are rare in production.
//
// The store builds a Device (and its summary) on each get, so callers get memory of their own
// and the store is free to move entries and arena bytes. A store is safe for concurrent use.
type store struct {
	mu sync.RWMutex

	ids   map[deviceKey]uint32 // canonical device id → entry index
	other map[string]uint32    // any other device id → entry index
	peak  int                  // most devices since the maps were last rebuilt

	pages [][]entry // entry i is pages[i>>pageShift][i&pageMask]
	used  uint32    // entries handed out (in use or free)
	free  []uint32  // entries of removed devices, handed out again first

	// arena holds the entries' data (entry.data); garbage counts the bytes no entry refers to
	// any more (data that moved or shrank, of devices removed). get copies out of it under the
	// read lock, so apply may write it in place.
	arena   []byte
	garbage int

	apps   []string // interned apps; entry.app indexes it; apps[0] is ""
	appIdx map[string]uint16

	spill map[uint32]Device // entry index → the device that does not fit its entry (no summary)
}

// inlineRegs is how many registrations an entry holds; the others are in the arena (regBytes
// each). Most devices have one. Measured with 1M devices (BenchmarkStoreMemory): with one inline
// registration a device takes 125 bytes, 216 with two registrations (the second in the arena,
// and the copy of the token it moved from until compaction); with two inline, every device
// takes 165 (an entry of 88 bytes instead of 48). One is better while fewer than ~40% of the
// devices have a second registration; the store and its tests work with any value up to 8.
const inlineRegs = 1

const (
	// A page holds 1024 entries (48 KB): big enough that the GC sees few pointers. The last page
	// grows as entries are handed out, so that a small table (tests, a partition of few devices)
	// is small.
	pageShift = 10
	pageSize  = 1 << pageShift
	pageMask  = pageSize - 1

	// entry.n for an entry whose device is in spill, and for an entry no device uses; else it
	// is the number of registrations (up to maxRegs).
	nSpilled = 0xff
	nFree    = 0xfe
	maxRegs  = 0xfd

	// entry.data is offset<<dataOffShift | tokHex | the token's length (of its stored bytes).
	tokLenBits   = 24
	maxTokenLen  = 1<<tokLenBits - 1
	tokHex       = 1 << tokLenBits // the token is lowercase hex, stored decoded
	dataOffShift = tokLenBits + 1
	maxArena     = 1 << (64 - dataOffShift)

	// regBytes is a registration in the arena: id, registeredAt, updatedAt, environment, state
	// and whether it has an id.
	regBytes = 16 + 8 + 8 + 3

	// compactMin is the garbage the arena holds before it is compacted, so that a small table
	// does not copy its arena over and over.
	compactMin = 64 << 10

	maxApps = 1 << 16
)

// deviceKey is a canonical device id (identity.DeviceIDLen lowercase hex characters), decoded.
type deviceKey [identity.DeviceIDLen / 2]byte

// entry is a device in a fixed-size struct without pointers. The inline registrations are kept
// as arrays of fields rather than an array of structs so that the entry has no padding: 48 bytes.
type entry struct {
	at       [inlineRegs][2]int64 // the registrations' registeredAt and updatedAt
	id       [inlineRegs][16]byte // the registrations' ids
	data     uint64               // in the arena: the token, then the registrations beyond inlineRegs
	app      uint16               // index in store.apps
	platform uint8                // a wakepushv1.Platform
	n        uint8                // registrations; nSpilled; nFree
	env      [inlineRegs]uint8    // the registrations' wakepushv1.Environment
	state    [inlineRegs]uint8    // the registrations' wakepushv1.RegistrationState
	hasID    uint8                // bit j: registration j has an id (else it is the v1 one)
}

func (e *entry) reg(j int) Registration {
	return Registration{
		id:           e.id[j],
		hasID:        e.hasID>>j&1 != 0,
		Environment:  wakepushv1.Environment(e.env[j]),
		State:        wakepushv1.RegistrationState(e.state[j]),
		registeredAt: e.at[j][0],
		updatedAt:    e.at[j][1],
	}
}

func (e *entry) setReg(j int, r Registration) {
	e.id[j], e.at[j] = r.id, [2]int64{r.registeredAt, r.updatedAt}
	e.env[j], e.state[j] = uint8(r.Environment), uint8(r.State)
	e.hasID &^= 1 << j
	if r.hasID {
		e.hasID |= 1 << j
	}
}

// The entry's data in the arena: [off, off+tokLen) the token, then extras() registrations.
func (e *entry) off() uint64    { return e.data >> dataOffShift }
func (e *entry) tokLen() uint64 { return e.data & maxTokenLen }
func (e *entry) extras() uint64 {
	if e.n >= nFree || e.n <= inlineRegs {
		return 0
	}
	return uint64(e.n) - inlineRegs
}
func (e *entry) dataLen() uint64 { return e.tokLen() + regBytes*e.extras() }

func appendReg(b []byte, r Registration) []byte {
	b = append(b, r.id[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.registeredAt))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.updatedAt))
	hasID := byte(0)
	if r.hasID {
		hasID = 1
	}
	return append(b, uint8(r.Environment), uint8(r.State), hasID)
}

func readReg(b []byte) (r Registration) {
	_ = b[regBytes-1]
	copy(r.id[:], b)
	r.registeredAt = int64(binary.LittleEndian.Uint64(b[16:]))
	r.updatedAt = int64(binary.LittleEndian.Uint64(b[24:]))
	r.Environment, r.State, r.hasID = wakepushv1.Environment(b[32]), wakepushv1.RegistrationState(b[33]), b[34] != 0
	return r
}

func newStore() *store {
	return &store{
		ids:    map[deviceKey]uint32{},
		other:  map[string]uint32{},
		apps:   []string{""},
		appIdx: map[string]uint16{"": 0},
		spill:  map[uint32]Device{},
	}
}

// draft is a device being changed: a Device without its token (which stays where it is unless
// the change brings a new one) and without the summary.
type draft struct {
	app      string
	platform wakepushv1.Platform
	regs     []Registration
}

// apply sets a registration's state (what Table.Apply does); false for a registration id that
// is not one, which is ignored.
func (s *store) apply(reg *wakepushv1.Registration) bool {
	id, hasID, ok := parseRegistrationID(reg.GetRegistrationId())
	if !ok {
		return false
	}
	r := Registration{
		id: id, hasID: hasID,
		Environment:  reg.GetEnvironment(),
		State:        reg.GetState(),
		registeredAt: reg.GetRegisteredAt().AsTime().UnixNano(),
		updatedAt:    reg.GetCreatedAt().AsTime().UnixNano(),
	}
	if reg.GetRegisteredAt() == nil {
		r.registeredAt = r.updatedAt
	}
	var buf [inlineRegs + 3]Registration
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.lookup(reg.GetDeviceId())
	var d draft
	if found {
		d = s.load(i, buf[:0])
	} else {
		d.regs = buf[:0]
	}
	if d.app == "" || reg.GetApp() != "" {
		d.app, d.platform = reg.GetApp(), reg.GetPlatform()
	}
	replaced := false
	for j, old := range d.regs {
		if old.id == id && old.hasID == hasID {
			if reg.GetState() == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED {
				// An unregistration record may lack the environment and registration time.
				if reg.GetEnvironment() == wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED {
					r.Environment = old.Environment
				}
				if reg.GetRegisteredAt() == nil {
					r.registeredAt = old.registeredAt
				}
			}
			d.regs[j], replaced = r, true
		}
	}
	if !replaced {
		d.regs = append(d.regs, r)
	}
	if !found {
		i = s.add(reg.GetDeviceId())
	}
	s.save(i, &d, reg.GetToken()) // unregistrations from ingest carry no token: "" keeps it
	s.compactIfWorth()
	return true
}

// forget removes a registration after its tombstone, and the device with its last one.
func (s *store) forget(deviceID, registrationID string) {
	id, hasID, ok := parseRegistrationID(registrationID)
	if !ok {
		return
	}
	var buf [inlineRegs + 3]Registration
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.lookup(deviceID)
	if !found {
		return
	}
	d := s.load(i, buf[:0])
	regs := d.regs[:0]
	for _, r := range d.regs {
		if r.id != id || r.hasID != hasID {
			regs = append(regs, r)
		}
	}
	switch {
	case len(regs) == 0:
		s.remove(deviceID, i)
		s.shrinkLocked()
	case len(regs) < len(d.regs):
		d.regs = regs
		s.save(i, &d, "")
	default:
		return // not one of the device's registrations
	}
	s.compactIfWorth()
}

// get returns a device, built from its entry: the Device and its Registrations are the
// caller's (the token is copied out of the arena, which apply overwrites and compaction
// replaces).
func (s *store) get(deviceID string) (Device, bool) {
	s.mu.RLock()
	i, ok := s.lookup(deviceID)
	if !ok {
		s.mu.RUnlock()
		return Device{}, false
	}
	var d Device
	if e := s.entry(i); e.n == nSpilled {
		d = s.spill[i]
		d.Registrations = slices.Clone(d.Registrations)
	} else {
		d = Device{App: s.apps[e.app], Platform: wakepushv1.Platform(e.platform), Token: s.tokenString(e),
			Registrations: s.regs(e, make([]Registration, 0, e.n))}
	}
	s.mu.RUnlock()
	return summarize(d), true
}

// len is the number of devices.
func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.count()
}

func (s *store) count() int { return len(s.ids) + len(s.other) }

func (s *store) entry(i uint32) *entry { return &s.pages[i>>pageShift][i&pageMask] }

// unhex is the value of a lowercase hex digit, 0xff for any other byte.
var unhex = func() (t [256]byte) {
	for c := range t {
		t[c] = 0xff
	}
	for v, c := range []byte("0123456789abcdef") {
		t[c] = byte(v)
	}
	return t
}()

// canonicalKey decodes a device id of the form ingest gives them (identity.ValidDeviceID);
// false for any other id. Only lowercase hex is canonical, so that the key gives the id back.
func canonicalKey(id string) (k deviceKey, ok bool) {
	if len(id) != 2*len(k) {
		return k, false
	}
	for j := range k {
		hi, lo := unhex[id[2*j]], unhex[id[2*j+1]]
		if hi|lo > 0xf {
			return k, false
		}
		k[j] = hi<<4 | lo
	}
	return k, true
}

func (s *store) lookup(deviceID string) (uint32, bool) {
	if k, ok := canonicalKey(deviceID); ok {
		i, found := s.ids[k]
		return i, found
	}
	i, found := s.other[deviceID]
	return i, found
}

// add gives a new device an entry.
func (s *store) add(deviceID string) uint32 {
	i := s.alloc()
	if k, ok := canonicalKey(deviceID); ok {
		s.ids[k] = i
	} else {
		s.other[strings.Clone(deviceID)] = i // not a piece of a larger string (the Kafka key)
	}
	s.peak = max(s.peak, s.count())
	return i
}

func (s *store) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		*s.entry(i) = entry{}
		return i
	}
	i := s.used
	p := int(i >> pageShift)
	if p == len(s.pages) {
		s.pages = append(s.pages, nil)
	}
	if pg := s.pages[p]; len(pg) == cap(pg) {
		s.pages[p] = append(make([]entry, 0, min(max(2*cap(pg), 16), pageSize)), pg...)
	}
	s.pages[p] = append(s.pages[p], entry{})
	s.used++
	return i
}

// remove forgets a device.
func (s *store) remove(deviceID string, i uint32) {
	e := s.entry(i)
	if e.n == nSpilled {
		delete(s.spill, i)
	}
	s.garbage += int(e.dataLen())
	*e = entry{n: nFree}
	s.free = append(s.free, i)
	if k, ok := canonicalKey(deviceID); ok {
		delete(s.ids, k)
	} else {
		delete(s.other, deviceID)
	}
}

// load reads entry i's device, its registrations appended to regs.
func (s *store) load(i uint32, regs []Registration) draft {
	e := s.entry(i)
	if e.n == nSpilled {
		d := s.spill[i]
		return draft{app: d.App, platform: d.Platform, regs: append(regs, d.Registrations...)}
	}
	return draft{app: s.apps[e.app], platform: wakepushv1.Platform(e.platform), regs: s.regs(e, regs)}
}

// regs appends the registrations of e (not spilled) to regs.
func (s *store) regs(e *entry, regs []Registration) []Registration {
	for j := range min(int(e.n), inlineRegs) {
		regs = append(regs, e.reg(j))
	}
	for b := s.extraBytes(e); len(b) > 0; b = b[regBytes:] {
		regs = append(regs, readReg(b))
	}
	return regs
}

// save stores d as entry i's device, with token as its token unless token is "" (then the
// device keeps its token). The device goes to spill when it does not fit the entry, and comes
// back when it does again.
func (s *store) save(i uint32, d *draft, token string) {
	e := s.entry(i)
	var sp Device
	spilled := e.n == nSpilled
	if spilled {
		sp = s.spill[i]
	}
	app, fits := s.intern(d.app)
	fits = fits && len(d.regs) <= maxRegs && byteSized(d.platform)
	for _, r := range d.regs {
		fits = fits && byteSized(r.Environment) && byteSized(r.State)
	}
	switch {
	case token != "":
		fits = fits && len(token) <= maxTokenLen
	case spilled:
		fits = fits && len(sp.Token) <= maxTokenLen
	}
	fits = fits && len(s.arena)+maxTokenLen+regBytes*maxRegs < maxArena
	if !fits {
		if !spilled {
			sp.Token = s.tokenString(e)
			s.garbage += int(e.dataLen())
			*e = entry{n: nSpilled}
		}
		if token != "" {
			sp.Token = token
		}
		sp.App, sp.Platform = unique.Make(d.app).Value(), d.platform // a few apps, millions of devices
		sp.Registrations = slices.Clone(d.regs)
		s.spill[i] = sp
		return
	}
	if spilled {
		delete(s.spill, i)
		*e = entry{}
		if token == "" {
			token = sp.Token
		}
	}
	// The device's data: its token, then its registrations beyond the entry's. The arena is
	// written only when it changes (not for a renewal of a device's only registration).
	var buf [64 + 4*regBytes]byte
	data, tok := buf[:0], e.data&(tokHex|maxTokenLen)
	if token != "" && !s.tokenIs(e, token) {
		data, tok = appendToken(data, token)
	} else {
		data = append(data, s.tokenBytes(e)...)
	}
	for _, r := range d.regs[min(len(d.regs), inlineRegs):] {
		data = appendReg(data, r)
	}
	if tok != e.data&(tokHex|maxTokenLen) || !bytes.Equal(data, s.dataBytes(e)) {
		s.putData(e, data, tok)
	}
	for j := range inlineRegs {
		var r Registration // unused ones are zeroed
		if j < len(d.regs) {
			r = d.regs[j]
		}
		e.setReg(j, r)
	}
	e.app, e.platform, e.n = app, uint8(d.platform), uint8(len(d.regs))
}

func byteSized[E ~int32](v E) bool { return v >= 0 && v <= 0xff }

// intern returns app's index in the app table, adding it; false when the table is full.
func (s *store) intern(app string) (uint16, bool) {
	if k, ok := s.appIdx[app]; ok {
		return k, true
	}
	if len(s.apps) == maxApps {
		return 0, false
	}
	k := uint16(len(s.apps))
	app = strings.Clone(app)
	s.apps = append(s.apps, app)
	s.appIdx[app] = k
	return k, true
}

// putData makes data e's data in the arena, tok its token's flag and length. The data is
// written in place when it is no longer than before (a renewal or an unregistration of a
// registration in the arena, a forgotten one) or the last of the arena, else appended.
func (s *store) putData(e *entry, data []byte, tok uint64) {
	off, old := e.off(), e.dataLen()
	switch {
	case uint64(len(data)) <= old:
		copy(s.arena[off:], data)
		s.garbage += int(old) - len(data)
	case off+old == uint64(len(s.arena)):
		s.arena = append(s.arena[:off], data...)
	default:
		off = uint64(len(s.arena))
		s.arena = append(s.arena, data...)
		s.garbage += int(old)
	}
	if len(data) == 0 {
		off = 0 // no data: no offset, which compaction would not move
	}
	e.data = off<<dataOffShift | tok
}

// appendToken appends a token to b, decoded when it is lowercase hex (an APNs token as ingest
// normalizes it), and returns its tokHex flag and length for entry.data.
func appendToken(b []byte, t string) ([]byte, uint64) {
	off := len(b)
	if len(t)%2 == 0 {
		b = append(b, make([]byte, len(t)/2)...)
		dec := b[off:]
		for j := range dec {
			hi, lo := unhex[t[2*j]], unhex[t[2*j+1]]
			if hi|lo > 0xf { // not lowercase hex: kept as it is
				dec = nil
				break
			}
			dec[j] = hi<<4 | lo
		}
		if dec != nil {
			return b, tokHex | uint64(len(dec))
		}
		b = b[:off]
	}
	return append(b, t...), uint64(len(t))
}

func (s *store) dataBytes(e *entry) []byte {
	off, end := e.off(), e.off()+e.dataLen()
	return s.arena[off:end:end]
}

func (s *store) tokenBytes(e *entry) []byte {
	off, n := e.off(), e.tokLen()
	return s.arena[off : off+n : off+n]
}

func (s *store) extraBytes(e *entry) []byte {
	off := e.off() + e.tokLen()
	end := off + regBytes*e.extras()
	return s.arena[off:end:end]
}

// tokenString copies e's token out of the arena.
func (s *store) tokenString(e *entry) string {
	b := s.tokenBytes(e)
	if e.data&tokHex == 0 {
		return string(b)
	}
	var buf [512]byte // an APNs token is at most 255 bytes: one allocation, the string's
	if 2*len(b) <= len(buf) {
		return string(hex.AppendEncode(buf[:0], b))
	}
	return hex.EncodeToString(b)
}

// tokenIs reports whether e's token is t.
func (s *store) tokenIs(e *entry, t string) bool {
	b := s.tokenBytes(e)
	if e.data&tokHex == 0 {
		return string(b) == t
	}
	if len(t) != 2*len(b) {
		return false
	}
	const digits = "0123456789abcdef"
	for j, c := range b {
		if t[2*j] != digits[c>>4] || t[2*j+1] != digits[c&0xf] {
			return false
		}
	}
	return true
}

// compactIfWorth copies the entries' data to a new arena once more than half of the arena is
// garbage (data of removed devices, or replaced). Amortized, each byte of garbage copies at
// most one byte of live data; compactMin keeps a small table from copying for every few bytes.
func (s *store) compactIfWorth() {
	if s.garbage < compactMin || 2*s.garbage <= len(s.arena) {
		return
	}
	old := s.arena
	live := len(old) - s.garbage
	s.arena, s.garbage = make([]byte, 0, live+live/4), 0
	for _, pg := range s.pages { // free and spilled entries, and those not handed out, have no data
		for j := range pg {
			s.moveData(old, &pg[j])
		}
	}
}

// moveData appends e's data, in the arena old, to the current arena.
func (s *store) moveData(old []byte, e *entry) {
	n := e.dataLen()
	if n == 0 {
		e.data &= tokHex | maxTokenLen // no offset into the old arena
		return
	}
	off := uint64(len(s.arena))
	s.arena = append(s.arena, old[e.off():e.off()+n]...)
	e.data = off<<dataOffShift | e.data&(tokHex|maxTokenLen)
}

// shrinkLocked rebuilds the store once it holds less than half of its peak: a Go map never
// gives back the memory of deleted entries, and tombstones of expired unregistrations may
// remove a large part of the table. The entries are packed into new pages and their data into a
// new arena on the way. Amortized, each deletion copies at most one device.
func (s *store) shrinkLocked() {
	if s.peak < 1024 || s.count() > s.peak/2 {
		return
	}
	pages, spill, arena := s.pages, s.spill, s.arena
	s.pages, s.used, s.free = nil, 0, nil
	s.spill = make(map[uint32]Device, len(spill))
	s.arena, s.garbage = make([]byte, 0, len(arena)-s.garbage), 0
	move := func(i uint32) uint32 {
		e := pages[i>>pageShift][i&pageMask]
		j := s.alloc()
		if e.n == nSpilled {
			s.spill[j] = spill[i]
		}
		s.moveData(arena, &e)
		*s.entry(j) = e
		return j
	}
	ids := make(map[deviceKey]uint32, len(s.ids))
	for k, i := range s.ids {
		ids[k] = move(i)
	}
	other := make(map[string]uint32, len(s.other))
	for k, i := range s.other {
		other[k] = move(i)
	}
	s.ids, s.other, s.peak = ids, other, s.count()
}
