package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// FuzzRecordRow drives the recorder's decoder with any schema header and value: decoding and
// mapping never panic, every row has its table's column count (a short row would fail the
// whole batch insert and stall the partition), the same bytes always give the same row (a
// re-read after a failed flush inserts the same thing), and no column but node_hash depends on
// a registration's provider token or an event's node (fpush nodes are tokens). Runs on its
// seeds in `go test`; `make fuzz` explores.
func FuzzRecordRow(f *testing.F) {
	for _, rec := range []proto.Message{
		&wakepushv1.PushEvent{Id: "e1", AcceptedAt: tsp(t0), DeviceId: "d1", App: "im.monal", Node: "node-token-0123456789",
			Platform: wakepushv1.Platform_PLATFORM_APNS, Urgent: true, MessageCount: 3},
		&wakepushv1.Registration{Id: "r1", CreatedAt: tsp(t0), DeviceId: "d1", App: "im.monal", Token: "apns-token-0123456789abcdef",
			State: wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED, Reason: "apns:Unregistered", ProviderInvalidAt: tsp(t1)},
		&wakepushv1.Wake{Id: "w1", CreatedAt: tsp(t1), DeviceId: "d1", App: "im.monal", EventIds: []string{"e1", "e2"}, FirstEventAt: tsp(t0), LastEventAt: tsp(t1)},
		&wakepushv1.Delivery{Id: "x1", CreatedAt: tsp(t2), WakeId: "w1", DeviceId: "d1", StatusCode: 410, Reason: "Unregistered",
			ProviderLatency: durationpb.New(35 * time.Millisecond), Attempt: 2},
		&wakepushv1.Receipt{Id: "c1", CreatedAt: tsp(t2), WakeId: "w1", DeviceId: "d1", ReceivedAt: tsp(t2)},
		&wakepushv1.DeadLetter{Id: "dl1", CreatedAt: tsp(t2), Topic: "push.events", Offset: 9, Stage: "coalescer", Reason: "undecodable"},
	} {
		b, err := proto.Marshal(rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(records.SchemaName(rec), b)
	}
	f.Add("wakepush.v9.Future", []byte{0x0a, 0x02, 'i', 'd'})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, schema string, value []byte) {
		msg := &kafka.Message{Topic: "push.x", Partition: 2, Offset: 41, Time: t0, Value: value,
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(schema)}}}
		tb, row, err := decodeRow(schema, msg)
		if err != nil {
			tb, row = deadLettersTable, poisonRow(msg, poisonReason(schema))
			// The reason is fixed text and the schema name: it cannot carry the value.
			if reason := row[6].(string); len(reason) > len(schema)+64 {
				t.Fatalf("dead-letter reason %q is longer than fixed text + the schema", reason)
			}
		}
		if len(row) != len(tb.columns) {
			t.Fatalf("%s row has %d values for %d columns", tb.name, len(row), len(tb.columns))
		}
		tb2, row2, err2 := decodeRow(schema, msg)
		if (err == nil) != (err2 == nil) || err == nil && (tb2.name != tb.name || !reflect.DeepEqual(row, row2)) {
			t.Fatalf("the same record mapped twice differs: %v %v / %v %v", row, err, row2, err2)
		}
		if err != nil {
			return
		}
		// No column depends on a token's or a node's value: the row of the same record with
		// another non-empty token (node) is the same, except node_hash, a one-way hash.
		rec, _ := records.Decode(schema, value)
		other := proto.Clone(rec)
		switch r := other.(type) {
		case *wakepushv1.Registration:
			if r.GetToken() == "" {
				return
			}
			r.Token = "x" + r.Token
		case *wakepushv1.PushEvent:
			if r.GetNode() == "" {
				return
			}
			r.Node = "x" + r.Node
		default:
			return
		}
		_, row3, err3 := rowFor(other, msg)
		if err3 != nil {
			t.Fatalf("changing only the token/node makes the record unmappable: %v", err3)
		}
		for i := range row {
			if tb.columns[i] != "node_hash" && !reflect.DeepEqual(row[i], row3[i]) {
				t.Fatalf("%s column %s depends on the token/node: %v vs %v", tb.name, tb.columns[i], row[i], row3[i])
			}
		}
	})
}

func decodeRow(schema string, msg *kafka.Message) (table, []any, error) {
	rec, err := records.Decode(schema, msg.Value)
	if err != nil {
		return table{}, nil, err
	}
	return rowFor(rec, msg)
}
