package engine

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

func marshalWake(t testing.TB, w *wakepushv1.Wake) []byte {
	t.Helper()
	b, err := proto.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// read is the part of a wake decodeWake reads: proto.Unmarshal's wake without the skipped fields.
func read(w *wakepushv1.Wake) *wakepushv1.Wake {
	w = proto.Clone(w).(*wakepushv1.Wake)
	w.EventIds, w.FirstEventAt, w.LastEventAt = nil, nil, nil
	// Unknown fields (of the wake, or of its created_at) are not read: nothing uses them.
	w.ProtoReflect().SetUnknown(nil)
	if w.CreatedAt != nil {
		w.CreatedAt.ProtoReflect().SetUnknown(nil)
	}
	return w
}

func sampleWake() *wakepushv1.Wake {
	at := records.Timestamp(time.Unix(1_800_000_000, 123_456_789))
	return &wakepushv1.Wake{Id: "0190f0a1-0000-7000-8000-000000000001", CreatedAt: at, DeviceId: "0123456789abcdef0123456789abcdef",
		App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS, Reason: wakepushv1.WakeReason_WAKE_REASON_TRAILING, EventCount: 70,
		EventIds: []string{"e1", "e2", "e3"}, FirstEventAt: at, LastEventAt: at, Urgent: true}
}

func TestDecodeWake(t *testing.T) {
	full := sampleWake()
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(num, protowire.BytesType), s)
	}
	join := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	laterID := read(full)
	laterID.Id = "w2"
	// Two occurrences of created_at merge: seconds from the second, nanos kept from the first.
	merged := read(full)
	merged.CreatedAt.Seconds = 7
	secondsOnly := protowire.AppendVarint(tag(fieldSeconds, protowire.VarintType), 7)
	badUTF8 := join(marshalWake(t, full), str(fieldDeviceID, "\xff"))
	tests := []struct {
		name string
		in   []byte
		want *wakepushv1.Wake // nil: an error
	}{
		{"whole wake", marshalWake(t, full), read(full)},
		{"empty", nil, &wakepushv1.Wake{}},
		{"later id wins", join(marshalWake(t, full), str(fieldID, "w2")), laterID},
		{"created_at occurrences merge", join(marshalWake(t, full), protowire.AppendBytes(tag(fieldCreatedAt, protowire.BytesType), secondsOnly)), merged},
		{"id of another wire type is unknown", join(marshalWake(t, full), protowire.AppendVarint(tag(fieldID, protowire.VarintType), 1)), read(full)},
		{"unknown field skipped", join(marshalWake(t, full), str(99, "x")), read(full)},
		{"device id not UTF-8", badUTF8, nil},
		{"truncated", marshalWake(t, full)[:9], nil},
		{"garbage", []byte{0xff, 0xff, 0xff}, nil},
		{"malformed created_at", join(marshalWake(t, full), protowire.AppendBytes(tag(fieldCreatedAt, protowire.BytesType), []byte{0x08})), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeWake(wakeSchema, tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("decodeWake = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(tt.want, got) {
				t.Fatalf("decodeWake = %v, want %v", got, tt.want)
			}
		})
	}
	// Another record type or an unknown schema on the wakes topic is an error that says which.
	if _, err := decodeWake("wakepush.v1.Delivery", nil); err == nil || !strings.Contains(err.Error(), "Delivery") {
		t.Errorf("a delivery on the wakes topic: %v", err)
	}
	if _, err := decodeWake("nope", nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown schema: %v", err)
	}
}

// FuzzDecodeWake: for every input proto.Unmarshal accepts, decodeWake reads the same fields; and
// whatever it accepts, the strings it read are UTF-8 (the delivery record repeats them).
func FuzzDecodeWake(f *testing.F) {
	f.Add(marshalWake(f, sampleWake()))
	f.Add(marshalWake(f, &wakepushv1.Wake{Id: "w", CreatedAt: records.Timestamp(time.Unix(-5, 3))}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeWake(wakeSchema, b)
		var want wakepushv1.Wake
		if proto.Unmarshal(b, &want) == nil {
			if err != nil {
				t.Fatalf("decodeWake: %v; proto.Unmarshal accepted it", err)
			}
			if !proto.Equal(read(&want), got) {
				t.Fatalf("decodeWake = %v, proto.Unmarshal %v", got, read(&want))
			}
		}
		if err == nil {
			if _, err := proto.Marshal(read(got)); err != nil {
				t.Fatalf("what decodeWake read does not marshal: %v", err)
			}
		}
	})
}

func BenchmarkDecodeWake(b *testing.B) {
	w := sampleWake()
	w.EventIds = nil
	for range 8 {
		w.EventIds = append(w.EventIds, records.NewID())
	}
	in := marshalWake(b, w)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeWake(wakeSchema, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("records.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := records.Decode(wakeSchema, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
