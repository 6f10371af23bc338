package main

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// FuzzDecodeEvent drives the coalescer's push.events decoder with any schema header and value:
// it never panics, a record is either engine input with an id and a device or a dead letter
// with a kind, a dead letter's reason is bounded text that cannot carry the value, and the same bytes always decode
// the same way (a replay after a restart must make the same decision). Runs on its seeds in
// `go test`; `make fuzz` explores.
func FuzzDecodeEvent(f *testing.F) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, rec := range []proto.Message{
		&wakepushv1.PushEvent{Id: "e1", AcceptedAt: records.Timestamp(at), DeviceId: "0123456789abcdef0123456789abcdef", App: "im.monal", Urgent: true},
		&wakepushv1.PushEvent{Id: "e2", DeviceId: "d"},
		&wakepushv1.PushEvent{DeviceId: "d"},
		&wakepushv1.Wake{Id: "w1", DeviceId: "d", EventIds: []string{"e1"}},
	} {
		b, err := proto.Marshal(rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(records.SchemaName(rec), b)
	}
	f.Add("wakepush.v1.PushEvent", []byte{0xff, 0x01})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, schema string, value []byte) {
		msg := &kafka.Message{Topic: "push.events", Partition: 1, Offset: 77, Time: at, Value: value,
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(schema)}}}
		ev, dl := decodeEvent(msg)
		ev2, dl2 := decodeEvent(msg)
		if (dl == nil) != (dl2 == nil) || ev.ID != ev2.ID || ev.DeviceID != ev2.DeviceID || !ev.AcceptedAt.Equal(ev2.AcceptedAt) || ev.Urgent != ev2.Urgent {
			t.Fatalf("the same record decodes differently: %+v %v / %+v %v", ev, dl, ev2, dl2)
		}
		if dl != nil {
			if dl.kind == "" || dl.reason == "" || dl.msg != msg {
				t.Fatalf("dead letter without kind, reason or record: %+v", dl)
			}
			// The reason is fixed or decoder text plus at most 64 bytes of the schema header,
			// quoted, never the value: it is bounded whatever the record holds.
			if len(dl.reason) > 320 {
				t.Fatalf("dead-letter reason of %d bytes for a %d-byte schema: %q", len(dl.reason), len(schema), dl.reason)
			}
			return
		}
		if ev.ID == "" || ev.DeviceID == "" || ev.Offset != msg.Offset {
			t.Fatalf("accepted an event without id or device, or at the wrong offset: %+v", ev)
		}
	})
}
