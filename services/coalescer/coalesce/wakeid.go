package coalesce

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/google/uuid"
)

// WakeID returns the deterministic id of a wake of device covering count events, the first
// firstID accepted at firstAt (ns since the Unix epoch) and the last lastID.
//
// Same inputs, same id: a replay that re-derives the same batch re-emits the same id, and the
// sender drops the duplicate. A batch that differs in any way (another first or last event, more
// events) gets another id, so deduplicating by wake id can never drop a wake that covers an event
// no other wake covered: a replay may cost an extra push, never a lost one.
//
// Layout: a UUIDv8 (RFC 9562) laid out like a UUIDv7, so ids sort roughly by time like every
// other record id: 48 bits of firstAt in Unix milliseconds (the start of the wake's interval),
// then version, 74 bits of SHA-256(device, first, last, count) and the variant.
func WakeID(device, firstID, lastID string, count int, firstAt int64) string {
	h := sha256.New()
	var n [8]byte
	for _, s := range [...]string{device, firstID, lastID} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write(strconv.AppendInt(n[:0], int64(count), 10))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])

	var u uuid.UUID
	ms := uint64(firstAt / 1e6)
	if firstAt < 0 {
		ms = 0
	}
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x80 | u[6]&0x0f // version 8
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}
