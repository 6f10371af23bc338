package main

import (
	"fmt"
	"reflect"
	"strings"
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
// re-read after a failed flush inserts the same thing), and no row carries a registration's
// provider token or a node (fpush nodes are tokens). Runs on its seeds in `go test`; `make fuzz`
// explores.
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
			if reason := row[6].(string); len(value) >= 8 && strings.Contains(reason, string(value)) && !strings.Contains(schema, string(value)) {
				t.Fatalf("dead-letter reason %q quotes the value", reason)
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
		rec, _ := records.Decode(schema, value)
		var secrets []string
		switch r := rec.(type) {
		case *wakepushv1.Registration:
			secrets = append(secrets, r.GetToken())
		case *wakepushv1.PushEvent:
			secrets = append(secrets, r.GetNode())
		}
		for _, s := range secrets {
			if len(s) < 8 { // a short value can appear in any column by chance
				continue
			}
			for i, v := range row {
				if strings.Contains(fmt.Sprint(v), s) {
					t.Fatalf("%s column %s holds the token/node %q", tb.name, tb.columns[i], s)
				}
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
