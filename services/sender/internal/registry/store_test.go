package registry

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unique"
	"unsafe"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// oldTable is the registration table as it was before store: a map[string]Device, each Device
// summarized on every change. It is the differential test's reference (its apply and forget are
// the old Table.Apply and Table.forget, unchanged) and the benchmarks' baseline.
type oldTable struct {
	devices map[string]Device
	peak    int
}

func newOldTable() *oldTable { return &oldTable{devices: map[string]Device{}} }

func (t *oldTable) forget(deviceID, registrationID string) {
	id, hasID, ok := parseRegistrationID(registrationID)
	if !ok {
		return
	}
	d, found := t.devices[deviceID]
	if !found {
		return
	}
	regs := make([]Registration, 0, len(d.Registrations))
	for _, r := range d.Registrations {
		if r.id != id || r.hasID != hasID {
			regs = append(regs, r)
		}
	}
	if len(regs) == 0 {
		delete(t.devices, deviceID)
		t.shrink()
		return
	}
	d.Registrations = regs
	t.devices[deviceID] = summarize(d)
}

func (t *oldTable) apply(reg *wakepushv1.Registration) bool {
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
	d := t.devices[reg.GetDeviceId()]
	if d.App == "" || reg.GetApp() != "" {
		d.App = unique.Make(reg.GetApp()).Value()
		d.Platform = reg.GetPlatform()
	}
	if reg.GetToken() != "" {
		d.Token = reg.GetToken()
	}
	regs := make([]Registration, 0, len(d.Registrations)+1)
	replaced := false
	for _, old := range d.Registrations {
		if old.id == id && old.hasID == hasID {
			if reg.GetState() == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED {
				if reg.GetEnvironment() == wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED {
					r.Environment = old.Environment
				}
				if reg.GetRegisteredAt() == nil {
					r.registeredAt = old.registeredAt
				}
			}
			regs, replaced = append(regs, r), true
			continue
		}
		regs = append(regs, old)
	}
	if !replaced {
		regs = append(regs, r)
	}
	d.Registrations = regs
	t.devices[reg.GetDeviceId()] = summarize(d)
	t.peak = max(t.peak, len(t.devices))
	return true
}

func (t *oldTable) shrink() {
	if t.peak < 1024 || len(t.devices) > t.peak/2 {
		return
	}
	m := make(map[string]Device, len(t.devices))
	for k, v := range t.devices {
		m[k] = v
	}
	t.devices, t.peak = m, len(m)
}

var storeT0 = time.Unix(1_800_000_000, 0)

// rec is a registration record of device dev made at storeT0+minutes.
func rec(dev, regID, app, token string, state wakepushv1.RegistrationState, env wakepushv1.Environment, minutes int) *wakepushv1.Registration {
	at := records.Timestamp(storeT0.Add(time.Duration(minutes) * time.Minute))
	return &wakepushv1.Registration{DeviceId: dev, RegistrationId: regID, App: app, Platform: wakepushv1.Platform_PLATFORM_APNS,
		Environment: env, Token: token, State: state, CreatedAt: at, RegisteredAt: at}
}

const (
	canonID   = "0123456789abcdef0123456789abcdef"
	canonID2  = "fedcba9876543210fedcba9876543210"
	upperID   = "0123456789ABCDEF0123456789ABCDEF" // not canonical: ingest's ids are lowercase
	apnsToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	fcmToken  = "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
)

func TestEntrySize(t *testing.T) {
	// The documented size: no padding (see entry).
	if got, want := unsafe.Sizeof(entry{}), uintptr((35*inlineRegs+12+7)/8*8); got != want {
		t.Fatalf("entry is %d bytes, want %d", got, want)
	}
}

func TestStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T, s *store)
		check func(t *testing.T, s *store)
	}{{
		name: "canonical id: a key of ids, the APNs token decoded",
		run: func(t *testing.T, s *store) {
			s.apply(rec(canonID, regID(1), "im.x", apnsToken, active, prod, 0))
		},
		check: func(t *testing.T, s *store) {
			wantDevice(t, s, canonID, apnsToken, "im.x", 1, true)
			if len(s.ids) != 1 || len(s.other) != 0 || len(s.arena) != 32 {
				t.Errorf("ids %d, other %d, arena %d bytes; want 1, 0, 32", len(s.ids), len(s.other), len(s.arena))
			}
		},
	}, {
		name: "other ids: short, uppercase, wrong length",
		run: func(t *testing.T, s *store) {
			for i, id := range []string{"d1", upperID, canonID + "0", canonID[:31] + "g", canonID} {
				s.apply(rec(id, "", "im.x", fmt.Sprintf("%s-%d", fcmToken, i), active, prod, i))
			}
		},
		check: func(t *testing.T, s *store) {
			for i, id := range []string{"d1", upperID, canonID + "0", canonID[:31] + "g", canonID} {
				wantDevice(t, s, id, fmt.Sprintf("%s-%d", fcmToken, i), "im.x", 1, true)
			}
			if len(s.ids) != 1 || len(s.other) != 4 || s.len() != 5 {
				t.Errorf("ids %d, other %d, len %d; want 1, 4, 5", len(s.ids), len(s.other), s.len())
			}
		},
	}, {
		name: "tokens that are not lowercase hex are kept as they are",
		run: func(t *testing.T, s *store) {
			s.apply(rec("a", "", "im.x", strings.ToUpper(apnsToken), active, prod, 0))
			s.apply(rec("b", "", "im.x", apnsToken[:63], active, prod, 0)) // odd length
			s.apply(rec("c", "", "im.x", fcmToken, active, prod, 0))
		},
		check: func(t *testing.T, s *store) {
			wantDevice(t, s, "a", strings.ToUpper(apnsToken), "im.x", 1, true)
			wantDevice(t, s, "b", apnsToken[:63], "im.x", 1, true)
			wantDevice(t, s, "c", fcmToken, "im.x", 1, true)
		},
	}, {
		name: "token change; a renewal with the same token writes nothing",
		run: func(t *testing.T, s *store) {
			s.apply(rec(canonID, regID(1), "im.x", apnsToken, active, prod, 0))
			s.apply(rec(canonID2, regID(1), "im.x", apnsToken, active, prod, 0))
			s.apply(rec(canonID, regID(1), "im.x", fcmToken, active, prod, 1)) // longer: appended
			s.apply(rec(canonID, regID(1), "im.x", fcmToken, active, prod, 2))
			if len(s.arena) != 64+len(fcmToken) || s.garbage != 32 {
				t.Fatalf("arena %d bytes with %d of garbage, want %d and 32", len(s.arena), s.garbage, 64+len(fcmToken))
			}
			s.apply(rec(canonID2, regID(1), "im.x", fcmToken[:20], active, prod, 3)) // shorter: in place
			s.apply(rec(canonID, regID(1), "im.x", fcmToken+"xyz", active, prod, 3)) // the last data grows in place
		},
		check: func(t *testing.T, s *store) {
			wantDevice(t, s, canonID, fcmToken+"xyz", "im.x", 1, true)
			wantDevice(t, s, canonID2, fcmToken[:20], "im.x", 1, true)
			if len(s.arena) != 64+len(fcmToken)+3 || s.garbage != 32+12 {
				t.Errorf("arena %d bytes with %d of garbage, want %d and 44", len(s.arena), s.garbage, 64+len(fcmToken)+3)
			}
		},
	}, {
		name: "an unregistration without token keeps the token",
		run: func(t *testing.T, s *store) {
			s.apply(rec(canonID, regID(1), "im.x", apnsToken, active, prod, 0))
			s.apply(rec(canonID, regID(1), "", "", inactive, wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED, 1))
		},
		check: func(t *testing.T, s *store) {
			d := wantDevice(t, s, canonID, apnsToken, "im.x", 1, false)
			if d.Environment != prod {
				t.Errorf("environment %v, want the registration's", d.Environment)
			}
		},
	}, {
		name: "apps interned",
		run: func(t *testing.T, s *store) {
			for i := range 100 {
				s.apply(rec(fmt.Sprintf("d%d", i), "", []string{"im.x", "im.y"}[i%2], fcmToken, active, prod, 0))
			}
		},
		check: func(t *testing.T, s *store) {
			if !slices.Equal(s.apps, []string{"", "im.x", "im.y"}) {
				t.Errorf("apps %q", s.apps)
			}
			wantDevice(t, s, "d7", fcmToken, "im.y", 1, true)
		},
	}, {
		name: "more registrations than an entry holds (in the arena), then back",
		run: func(t *testing.T, s *store) {
			for i := range inlineRegs + 2 {
				s.apply(rec(canonID, regID(byte(i+1)), "im.x", apnsToken, active, []wakepushv1.Environment{sandbox, prod}[i%2], i))
			}
			if e := s.entry(s.ids[mustKey(t, canonID)]); e.n != inlineRegs+2 || e.dataLen() != 32+2*regBytes || len(s.spill) != 0 {
				t.Fatalf("a device of %d registrations: %d of them and %d bytes of data, spill %d", inlineRegs+2, e.n, e.dataLen(), len(s.spill))
			}
			d := wantDevice(t, s, canonID, apnsToken, "im.x", inlineRegs+2, true)
			for i, r := range d.Registrations {
				if r.ID() != regID(byte(i+1)) {
					t.Errorf("registration %d is %s, want %s", i, r.ID(), regID(byte(i+1)))
				}
			}
			s.apply(rec(canonID, regID(2), "", "", inactive, wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED, 10)) // no token: kept
			for i := range 2 {
				s.forget(canonID, regID(byte(i+1)))
			}
		},
		check: func(t *testing.T, s *store) {
			d := wantDevice(t, s, canonID, apnsToken, "im.x", inlineRegs, true)
			if e := s.entry(s.ids[mustKey(t, canonID)]); e.n != inlineRegs || e.dataLen() != 32 || d.Registrations[0].ID() != regID(3) {
				t.Errorf("after forgetting two registrations: %d bytes of data, registrations %v", e.dataLen(), d.Registrations)
			}
		},
	}, {
		name: "more registrations than an entry counts: spill, then back",
		run: func(t *testing.T, s *store) {
			for j := range maxRegs + 1 {
				s.apply(rec(canonID, fmt.Sprintf("%032x", j), "im.x", apnsToken, active, prod, j))
			}
			if len(s.spill) != 1 || len(s.arena) != s.garbage {
				t.Fatalf("a device of %d registrations: spill %d, arena %d bytes (%d garbage)", maxRegs+1, len(s.spill), len(s.arena), s.garbage)
			}
			wantDevice(t, s, canonID, apnsToken, "im.x", maxRegs+1, true)
			s.forget(canonID, fmt.Sprintf("%032x", 7))
		},
		check: func(t *testing.T, s *store) {
			d := wantDevice(t, s, canonID, apnsToken, "im.x", maxRegs, true)
			e := s.entry(s.ids[mustKey(t, canonID)])
			if len(s.spill) != 0 || e.dataLen() != 32+regBytes*(maxRegs-inlineRegs) || d.Registrations[7].ID() != fmt.Sprintf("%032x", 8) {
				t.Errorf("spill %d, %d bytes of data, registration 7 %s", len(s.spill), e.dataLen(), d.Registrations[7].ID())
			}
		},
	}, {
		name: "enum values beyond a byte are kept exactly (in spill)",
		run: func(t *testing.T, s *store) {
			r := rec("d1", "", "im.x", apnsToken, active, 300, 0)
			r.Platform = -1
			s.apply(r)
			if d, _ := s.get("d1"); d.Registrations[0].Environment != 300 || d.Platform != -1 || len(s.spill) != 1 {
				t.Fatalf("device %+v, spill %d", d, len(s.spill))
			}
			s.apply(rec("d1", "", "im.x", "", active, prod, 1))
		},
		check: func(t *testing.T, s *store) {
			d := wantDevice(t, s, "d1", apnsToken, "im.x", 1, true)
			if d.Environment != prod || d.Platform != wakepushv1.Platform_PLATFORM_APNS || len(s.spill) != 0 {
				t.Errorf("device %+v, spill %d", d, len(s.spill))
			}
		},
	}, {
		name: "forgetting the last registration removes the device; its entry is reused",
		run: func(t *testing.T, s *store) {
			s.apply(rec(canonID, regID(1), "im.x", apnsToken, active, prod, 0))
			s.apply(rec(canonID, "", "im.x", apnsToken, active, prod, 0))
			s.forget(canonID, regID(1))
			if s.len() != 1 {
				t.Fatal("the device went with one of its registrations")
			}
			s.forget(canonID, regID(2)) // not one of the device's
			s.forget("unknown", "")
			s.forget(canonID, "")
			if _, ok := s.get(canonID); ok || s.len() != 0 || len(s.free) != 1 || s.garbage != len(s.arena) {
				t.Fatalf("after its last tombstone: len %d, free %v, garbage %d", s.len(), s.free, s.garbage)
			}
			s.apply(rec(canonID2, "", "im.y", fcmToken, active, sandbox, 1))
		},
		check: func(t *testing.T, s *store) {
			wantDevice(t, s, canonID2, fcmToken, "im.y", 1, true)
			if s.len() != 1 || s.used != 1 || len(s.free) != 0 {
				t.Errorf("len %d, entries %d, free %v", s.len(), s.used, s.free)
			}
		},
	}, {
		name: "a malformed registration id is skipped",
		run: func(t *testing.T, s *store) {
			if s.apply(rec("d2", "xyz", "im.x", apnsToken, active, prod, 0)) {
				t.Error("apply accepted a malformed registration id")
			}
			s.apply(rec("d2", regID(1), "im.x", apnsToken, active, prod, 0))
			s.forget("d2", "xyz")
		},
		check: func(t *testing.T, s *store) {
			wantDevice(t, s, "d2", apnsToken, "im.x", 1, true)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore()
			tc.run(t, s)
			tc.check(t, s)
		})
	}
}

func mustKey(t *testing.T, id string) deviceKey {
	t.Helper()
	k, ok := canonicalKey(id)
	if !ok {
		t.Fatalf("%s is not canonical", id)
	}
	return k
}

func wantDevice(t *testing.T, s *store, id, token, app string, regs int, active bool) Device {
	t.Helper()
	d, ok := s.get(id)
	if !ok || d.Token != token || d.App != app || len(d.Registrations) != regs || d.Active() != active {
		t.Fatalf("device %s = %+v (known %v), want token %s, app %s, %d registrations, active %v", id, d, ok, token, app, regs, active)
	}
	return d
}

// Many token changes: the arena is compacted and every device keeps its token.
func TestStoreTokenCompaction(t *testing.T) {
	s := newStore()
	const devices = 50
	tokens := map[string]string{}
	compacted, garbage := false, 0
	for round := range 200 {
		for i := range devices {
			id := fmt.Sprintf("%032x", i)
			// Of changing lengths: a longer token moves (a shorter one is written in place).
			tok := fmt.Sprintf("%0*x", 64+32*(round%2), round*devices+i) // lowercase hex: stored decoded
			if i%3 == 0 {
				tok = fmt.Sprintf("fcm:%d:%d:%s", i, round, strings.Repeat("x", round%5*10))
			}
			s.apply(rec(id, regID(1), "im.x", tok, active, prod, round))
			tokens[id] = tok
		}
		if round%20 == 19 { // and devices that go and come back
			s.forget(fmt.Sprintf("%032x", round%devices), regID(1))
			delete(tokens, fmt.Sprintf("%032x", round%devices))
		}
		live := 0
		for id, tok := range tokens {
			wantDevice(t, s, id, tok, "im.x", 1, true)
			live += len(tok)
		}
		if s.len() != len(tokens) {
			t.Fatalf("round %d: %d devices, want %d", round, s.len(), len(tokens))
		}
		compacted = compacted || s.garbage < garbage
		garbage = s.garbage
		if len(s.arena) > 2*live+compactMin {
			t.Fatalf("round %d: the arena holds %d bytes for %d of tokens", round, len(s.arena), live)
		}
	}
	if !compacted {
		t.Fatal("the arena was never compacted")
	}
}

// A Device from get is the caller's: later changes, compaction and the caller's own writes
// do not reach across.
func TestStoreGetDoesNotAlias(t *testing.T) {
	s := newStore()
	s.apply(rec(canonID, regID(1), "im.x", apnsToken, active, prod, 0))
	s.apply(rec("d1", regID(1), "im.x", fcmToken, active, prod, 0))
	s.apply(rec("d1", regID(2), "im.x", fcmToken, active, prod, 0)) // spilled when inlineRegs is 1
	got := map[string]Device{}
	want := map[string]Device{}
	for _, id := range []string{canonID, "d1"} {
		got[id], _ = s.get(id)
		d, _ := s.get(id)
		d.Registrations = slices.Clone(d.Registrations)
		want[id] = d
	}
	for i := range 5000 { // token changes, written in place or moved, and arena compactions
		for _, id := range []string{canonID, "d1"} {
			s.apply(rec(id, regID(1), "im.y", fmt.Sprintf("%0*x", 64+32*(i%2), i), inactive, sandbox, i+1))
			s.apply(rec(id, regID(3), "im.y", "", active, sandbox, i+1))
		}
	}
	for id, d := range got {
		if !reflect.DeepEqual(d, want[id]) {
			t.Errorf("device %s changed under its reader: %+v, was %+v", id, d, want[id])
		}
		d.Registrations[0].State = 7
		if now, _ := s.get(id); now.Registrations[0].State == 7 {
			t.Errorf("a write to a Device from get reached the store")
		}
	}
}

// Renewals of registrations kept in the arena: it is compacted, every device stays right.
func TestStoreArenaRegistrationsCompaction(t *testing.T) {
	s, ref := newStore(), newOldTable()
	put := func(r *wakepushv1.Registration) { s.apply(r); ref.apply(r) }
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("%032x", i))
		for j := range 4 {
			tok := apnsToken
			if i%2 == 0 {
				tok = "" // a device without token: its data is registrations only
			}
			put(rec(ids[i], regID(byte(j)), "im.x", tok, active, prod, j))
		}
	}
	compacted, garbage := false, 0
	for round := range 100 {
		for i, id := range ids {
			put(rec(id, regID(byte(1+(round+i)%3)), "im.x", "", []wakepushv1.RegistrationState{active, inactive}[round%2], sandbox, 10+round))
		}
		if round%10 == 9 { // registrations forgotten, new ones
			for _, id := range ids {
				s.forget(id, regID(0))
				ref.forget(id, regID(0))
				put(rec(id, regID(byte(4+round/10)), "im.x", "", active, prod, round))
			}
		}
		compacted = compacted || s.garbage < garbage
		garbage = s.garbage
		compare(t, s, ref, ids)
	}
	if !compacted {
		t.Fatal("the arena was never compacted")
	}
}

// After mass deletions the store rebuilds its maps, entries and arena; nothing else changes.
func TestStoreShrink(t *testing.T) {
	s, ref := newStore(), newOldTable()
	const n = 4000
	for i := range n {
		id := fmt.Sprintf("%032x", i)
		if i%10 == 0 {
			id = fmt.Sprintf("dev-%d", i)
		}
		for j := range 1 + i%3 {
			r := rec(id, regID(byte(j)), "im.x", fmt.Sprintf("%064x", i), active, prod, i)
			s.apply(r)
			ref.apply(r)
		}
	}
	for i := range n {
		if i%4 != 0 {
			id := fmt.Sprintf("%032x", i)
			if i%10 == 0 {
				id = fmt.Sprintf("dev-%d", i)
			}
			for j := range 1 + i%3 {
				s.forget(id, regID(byte(j)))
				ref.forget(id, regID(byte(j)))
			}
		}
	}
	if s.len() != n/4 || s.peak != n/4 || s.used != uint32(n/4) || len(s.free) != 0 || s.garbage != 0 {
		t.Fatalf("after the deletions: %d devices, peak %d, %d entries (%d free), %d bytes of garbage",
			s.len(), s.peak, s.used, len(s.free), s.garbage)
	}
	compare(t, s, ref, slices.Collect(maps.Keys(ref.devices)))
}

// compare checks that s and ref hold the same devices for ids (and no others).
func compare(t *testing.T, s *store, ref *oldTable, ids []string) {
	t.Helper()
	if s.len() != len(ref.devices) {
		t.Fatalf("store holds %d devices, the reference %d", s.len(), len(ref.devices))
	}
	for _, id := range ids {
		got, ok := s.get(id)
		want, wantOK := ref.devices[id]
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("device %q:\n got %+v (%v)\nwant %+v (%v)", id, got, ok, want, wantOK)
		}
	}
}

// Random registrations and tombstones applied to the store and to the old table: every device
// reads the same.
func TestStoreDifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 42))
	s, ref := newStore(), newOldTable()
	var ids []string
	for i := range 1500 {
		switch i % 8 {
		case 0:
			ids = append(ids, fmt.Sprintf("dev-%d", i))
		case 1:
			ids = append(ids, fmt.Sprintf("%032X", rnd.Uint64())) // not canonical (uppercase)
		default:
			ids = append(ids, fmt.Sprintf("%032x", rnd.Uint64()))
		}
	}
	regIDs := []string{"", regID(1), regID(2), regID(3), regID(4), "0123456789abcdef0123456789abcdef", "bad"}
	tokens := func() string {
		switch rnd.IntN(7) {
		case 0, 1:
			return ""
		case 2:
			return fmt.Sprintf("%064x", rnd.Uint64())
		case 3:
			return fmt.Sprintf("%016x", rnd.Uint64())
		case 4:
			return fmt.Sprintf("%064X", rnd.Uint64())
		case 5:
			return fmt.Sprintf("fcm:%d", rnd.Uint64())
		}
		return strings.Repeat("ab", 255) // the longest APNs token
	}
	enum := func(values ...int32) int32 {
		if rnd.IntN(50) == 0 {
			return []int32{300, -1, 256}[rnd.IntN(3)]
		}
		return values[rnd.IntN(len(values))]
	}
	step := func(phaseDelete bool) {
		id := ids[rnd.IntN(len(ids))]
		rid := regIDs[rnd.IntN(len(regIDs))]
		if phaseDelete || rnd.IntN(4) == 0 {
			s.forget(id, rid)
			ref.forget(id, rid)
			return
		}
		r := &wakepushv1.Registration{DeviceId: id, RegistrationId: rid,
			App:         []string{"", "im.x", "im.y", "im.z"}[rnd.IntN(4)],
			Platform:    wakepushv1.Platform(enum(0, 1, 2)),
			Environment: wakepushv1.Environment(enum(0, 1, 2)),
			State:       wakepushv1.RegistrationState(enum(0, 1, 2, 1, 2)),
			Token:       tokens(),
		}
		if rnd.IntN(10) != 0 {
			r.CreatedAt = records.Timestamp(storeT0.Add(time.Duration(rnd.IntN(1e6)) * time.Millisecond))
		}
		if rnd.IntN(3) != 0 {
			r.RegisteredAt = records.Timestamp(storeT0.Add(time.Duration(rnd.IntN(1e6)) * time.Millisecond))
		}
		if s.apply(r) != ref.apply(r) {
			t.Fatalf("apply(%v): store and reference disagree about the registration id", r)
		}
	}
	shrunk := 0
	for round := range 20 {
		for range 2000 {
			step(false)
		}
		compare(t, s, ref, ids)
		if round%5 == 4 { // tombstones for most registrations: the store shrinks
			used := s.used
			for range 20000 {
				step(true)
			}
			compare(t, s, ref, ids)
			if s.used < used {
				shrunk++
			}
		}
	}
	if shrunk == 0 {
		t.Error("the store never shrank")
	}
}

// get runs under the read lock while apply and forget change the store (for -race).
func TestStoreConcurrent(t *testing.T) {
	s := newStore()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			for i := range 10 {
				if d, ok := s.get(fmt.Sprintf("%032x", i)); ok && len(d.Token) != 64 {
					t.Errorf("token %q", d.Token)
				}
			}
			_ = s.len()
		}
	})
	for round := range 300 {
		for i := range 10 {
			s.apply(rec(fmt.Sprintf("%032x", i), regID(byte(round%3)), "im.x", fmt.Sprintf("%064x", round), active, prod, round))
		}
		if round%7 == 0 {
			s.forget(fmt.Sprintf("%032x", round%10), regID(byte(round%3)))
		}
	}
	close(done)
	wg.Wait()
}
