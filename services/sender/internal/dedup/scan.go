package dedup

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// Field numbers of wakepush.v1.Delivery that the follower reads.
const (
	fieldWakeID  protowire.Number = 3
	fieldOutcome protowire.Number = 8
)

var errMalformed = errors.New("malformed delivery record")

// acceptedWakeID reads, from an encoded wakepush.v1.Delivery, only what the follower needs: the
// wake id, and whether the outcome is ACCEPTED. The follower reads back every delivery every
// sender instance writes, one per push; decoding the whole message for two fields (proto.Unmarshal
// allocating the message, its timestamps and strings) cost ~3 % of the sender's CPU under load.
// As proto.Unmarshal does, the last occurrence of a field wins and unknown fields (and a known
// field of another wire type) are skipped. It is lenient where proto.Unmarshal is strict about
// fields it does not read (a malformed timestamp): every record proto.Unmarshal accepts gets
// proto.Unmarshal's answer (FuzzAcceptedWakeID), and the records come from sender instances.
func acceptedWakeID(b []byte) (wakeID string, accepted bool, err error) {
	var id []byte
	outcome := uint64(0)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false, errMalformed
		}
		b = b[n:]
		switch {
		case num == fieldWakeID && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", false, errMalformed
			}
			id, b = v, b[n:]
		case num == fieldOutcome && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return "", false, errMalformed
			}
			outcome, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", false, errMalformed
			}
			b = b[n:]
		}
	}
	// An enum is an int32 on the wire: proto.Unmarshal keeps the low 32 bits of the varint.
	if wakepushv1.DeliveryOutcome(int32(outcome)) != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED {
		return "", false, nil
	}
	return string(id), true, nil
}
