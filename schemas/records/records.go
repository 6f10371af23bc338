// Package records defines how wakepush's protobuf records travel through Kafka: the headers every
// record carries, record ids, and the mapping from topic to message type.
package records

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// Kafka header names. traceparent/tracestate follow W3C Trace Context.
const (
	HeaderContentType = "content-type"
	HeaderSchema      = "wakepush-schema"
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	HeaderBaggage     = "baggage"

	// ContentType is the value of HeaderContentType for every record.
	ContentType = "application/x-protobuf"
)

// SchemaName is the value of HeaderSchema for a message: its full protobuf name, which includes
// the version package (e.g. "wakepush.v1.PushEvent").
func SchemaName(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}

// Record ids need uniqueness, not secrecy: random bytes come from uuid's pool, refilled from
// crypto/rand in batches, instead of a crypto/rand read per id (one system call per record,
// ~8 % of the sender engine's CPU per wake before). Nothing in wakepush makes secrets with uuid.
func init() { uuid.EnableRandPool() }

// NewID returns a new unique, time-ordered record id (UUIDv7).
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Timestamp converts t for a record field.
func Timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// Decode unmarshals a record value into a new message of the type the schema header names.
// An unknown schema or undecodable value is an error the caller treats as poison.
func Decode(schema string, value []byte) (proto.Message, error) {
	m, err := newMessage(schema)
	if err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(value, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", schema, err)
	}
	return m, nil
}

func newMessage(schema string) (proto.Message, error) {
	switch schema {
	case SchemaName(&wakepushv1.PushEvent{}):
		return &wakepushv1.PushEvent{}, nil
	case SchemaName(&wakepushv1.Registration{}):
		return &wakepushv1.Registration{}, nil
	case SchemaName(&wakepushv1.Wake{}):
		return &wakepushv1.Wake{}, nil
	case SchemaName(&wakepushv1.Delivery{}):
		return &wakepushv1.Delivery{}, nil
	case SchemaName(&wakepushv1.Receipt{}):
		return &wakepushv1.Receipt{}, nil
	case SchemaName(&wakepushv1.DeadLetter{}):
		return &wakepushv1.DeadLetter{}, nil
	default:
		// The header comes from whoever wrote the record: quote at most 64 bytes of it, so an
		// error (dead-letter reasons, logs) stays small whatever the header holds.
		if len(schema) > 64 {
			return nil, fmt.Errorf("unknown record schema %q… (%d bytes)", schema[:64], len(schema))
		}
		return nil, fmt.Errorf("unknown record schema %q", schema)
	}
}
