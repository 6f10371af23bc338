package engine

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// wakeSchema is the schema header of a wake record.
var wakeSchema = records.SchemaName(&wakepushv1.Wake{})

// Field numbers of wakepush.v1.Wake and google.protobuf.Timestamp that the sender reads.
const (
	fieldID         protowire.Number = 1
	fieldCreatedAt  protowire.Number = 2
	fieldDeviceID   protowire.Number = 3
	fieldApp        protowire.Number = 4
	fieldPlatform   protowire.Number = 5
	fieldReason     protowire.Number = 6
	fieldEventCount protowire.Number = 7
	fieldUrgent     protowire.Number = 11

	fieldSeconds protowire.Number = 1
	fieldNanos   protowire.Number = 2
)

var errMalformedWake = errors.New("decode wakepush.v1.Wake: malformed record")

// decodeWake decodes a wake record with the fields the sender uses (id, created_at, device_id,
// app, platform, reason, event_count, urgent) and skips the rest: the covered event ids (up to
// 64 strings) and their times are for the recorder, and proto.Unmarshal allocated each of them
// for every push (records.Decode was ~2.5 % of the sender's CPU under sender-bench). As
// proto.Unmarshal does, the last occurrence of a scalar field wins, occurrences of created_at
// merge, unknown fields (and known ones of another wire type) are skipped, and a string field it
// reads that is not UTF-8 is an error (the delivery record repeats them, and proto.Marshal would
// refuse it). It is lenient where proto.Unmarshal is strict about the fields it skips: every
// record proto.Unmarshal accepts gets proto.Unmarshal's fields (FuzzDecodeWake).
func decodeWake(schema string, b []byte) (*wakepushv1.Wake, error) {
	if schema != wakeSchema {
		m, err := records.Decode(schema, b)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("record of type %T on the wakes topic", m)
	}
	w := &wakepushv1.Wake{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errMalformedWake
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == fieldID || num == fieldDeviceID || num == fieldApp):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return nil, errMalformedWake
			}
			b = b[n:]
			switch num {
			case fieldID:
				w.Id = string(v)
			case fieldDeviceID:
				w.DeviceId = string(v)
			default:
				w.App = string(v)
			}
		case typ == protowire.BytesType && num == fieldCreatedAt:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, errMalformedWake
			}
			b = b[n:]
			if w.CreatedAt == nil {
				w.CreatedAt = &timestamppb.Timestamp{}
			}
			if !mergeTimestamp(w.CreatedAt, v) {
				return nil, errMalformedWake
			}
		case typ == protowire.VarintType && (num == fieldPlatform || num == fieldReason || num == fieldEventCount || num == fieldUrgent):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, errMalformedWake
			}
			b = b[n:]
			switch num {
			case fieldPlatform:
				w.Platform = wakepushv1.Platform(int32(v)) // an enum is an int32 on the wire
			case fieldReason:
				w.Reason = wakepushv1.WakeReason(int32(v))
			case fieldEventCount:
				w.EventCount = uint32(v)
			default:
				w.Urgent = v != 0
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, errMalformedWake
			}
			b = b[n:]
		}
	}
	return w, nil
}

// mergeTimestamp merges an encoded google.protobuf.Timestamp into ts (its fields present in b
// replace ts's), reporting whether b is well formed.
func mergeTimestamp(ts *timestamppb.Timestamp, b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fieldSeconds || num == fieldNanos) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			if num == fieldSeconds {
				ts.Seconds = int64(v)
			} else {
				ts.Nanos = int32(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}
