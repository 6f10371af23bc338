package dedup

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

func marshal(t testing.TB, d *wakepushv1.Delivery) []byte {
	t.Helper()
	b, err := proto.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptedWakeID(t *testing.T) {
	now := records.Timestamp(time.Unix(1_800_000_000, 0))
	full := &wakepushv1.Delivery{Id: "d1", CreatedAt: now, WakeId: "w1", DeviceId: "dev", App: "im.x",
		Platform: wakepushv1.Platform_PLATFORM_APNS, Outcome: wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED,
		Attempt: 2, StatusCode: 200, ProviderMessageId: "p", WakeCreatedAt: now}
	retry := proto.Clone(full).(*wakepushv1.Delivery)
	retry.Outcome = wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY
	// A later occurrence of a field wins, as in proto.Unmarshal.
	twice := append(marshal(t, full), protowire.AppendVarint(protowire.AppendTag(nil, fieldWakeID, protowire.BytesType), 2)...)
	twice = append(twice, "w2"...)
	outcomeLast := append(marshal(t, full), protowire.AppendVarint(protowire.AppendTag(nil, fieldOutcome, protowire.VarintType), 3)...)
	// The wake id field with another wire type is an unknown field.
	wrongType := append(marshal(t, full), protowire.AppendVarint(protowire.AppendTag(nil, fieldWakeID, protowire.VarintType), 7)...)
	tests := []struct {
		name     string
		in       []byte
		id       string
		accepted bool
		err      bool
	}{
		{"accepted", marshal(t, full), "w1", true, false},
		{"retry", marshal(t, retry), "", false, false},
		{"empty", nil, "", false, false},
		{"later wake id wins", twice, "w2", true, false},
		{"later outcome wins", outcomeLast, "", false, false},
		{"wake id of another wire type", wrongType, "w1", true, false},
		{"truncated", marshal(t, full)[:5], "", false, true},
		{"garbage", []byte{0xff, 0xff, 0xff}, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, accepted, err := acceptedWakeID(tt.in)
			if (err != nil) != tt.err || id != tt.id || accepted != tt.accepted {
				t.Fatalf("acceptedWakeID = %q, %v, %v; want %q, %v, error %v", id, accepted, err, tt.id, tt.accepted, tt.err)
			}
		})
	}
}

// FuzzAcceptedWakeID: for every input proto.Unmarshal accepts, the scanner gives its answer.
func FuzzAcceptedWakeID(f *testing.F) {
	now := records.Timestamp(time.Unix(1_800_000_000, 0))
	for _, o := range []wakepushv1.DeliveryOutcome{1, 2, 3, 5} {
		f.Add(marshal(f, &wakepushv1.Delivery{Id: "d", CreatedAt: now, WakeId: "wake-" + o.String(), Outcome: o, Reason: "x"}))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d wakepushv1.Delivery
		if proto.Unmarshal(b, &d) != nil {
			return
		}
		id, accepted, err := acceptedWakeID(b)
		want := d.GetOutcome() == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED
		if err != nil || accepted != want || (want && id != d.GetWakeId()) {
			t.Fatalf("acceptedWakeID = %q, %v, %v; proto.Unmarshal: wake id %q, outcome %v", id, accepted, err, d.GetWakeId(), d.GetOutcome())
		}
	})
}

func BenchmarkAcceptedWakeID(b *testing.B) {
	now := records.Timestamp(time.Unix(1_800_000_000, 0))
	in := marshal(b, &wakepushv1.Delivery{Id: records.NewID(), CreatedAt: now, WakeId: records.NewID(), DeviceId: "0123456789abcdef0123456789abcdef",
		App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS, Outcome: wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED,
		Attempt: 1, StatusCode: 200, ProviderMessageId: records.NewID(), WakeCreatedAt: now})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, err := acceptedWakeID(in); !ok || err != nil {
				b.Fatal("not accepted")
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := records.Decode("wakepush.v1.Delivery", in)
			if err != nil || m.(*wakepushv1.Delivery).GetOutcome() != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED {
				b.Fatal("not accepted")
			}
		}
	})
}
