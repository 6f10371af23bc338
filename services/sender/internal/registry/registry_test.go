package registry

import (
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

func message(t *testing.T, key string, reg *wakepushv1.Registration) *kafka.Message {
	t.Helper()
	msg := &kafka.Message{Key: []byte(key)}
	if reg != nil {
		b, err := proto.Marshal(reg)
		if err != nil {
			t.Fatal(err)
		}
		msg.Value = b
		msg.Headers = []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(reg))}}
	}
	return msg
}

func TestHandleKeepsLatestAndForgetsTombstones(t *testing.T) {
	tb := &Table{log: slog.New(slog.DiscardHandler), devices: map[string]Device{}}
	t0 := time.Unix(1_800_000_000, 0)
	reg := &wakepushv1.Registration{DeviceId: "d1", App: "im.x", Token: "aa", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		CreatedAt: records.Timestamp(t0), RegisteredAt: records.Timestamp(t0)}
	tb.handle(message(t, "d1", reg))
	d, ok := tb.Get("d1")
	if !ok || !d.Active() || d.Token != "aa" || !d.UpdatedAt.Equal(t0) {
		t.Fatalf("after registration: %+v %v", d, ok)
	}
	// Re-registration: created_at moves, registered_at stays.
	again := proto.Clone(reg).(*wakepushv1.Registration)
	again.CreatedAt = records.Timestamp(t0.Add(time.Hour))
	tb.handle(message(t, "d1", again))
	d, _ = tb.Get("d1")
	if d.RegisteredBefore(t0.Add(30*time.Minute)) || !d.RegisteredBefore(t0.Add(2*time.Hour)) {
		t.Errorf("RegisteredBefore: a device re-registered at t0+1h counts as registered before t0+30m")
	}
	tb.handle(&kafka.Message{Key: []byte("d1"), Value: []byte{0xff}, Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v1.Registration")}}})
	if d, ok := tb.Get("d1"); !ok || !d.Active() {
		t.Errorf("an undecodable record changed the device: %+v %v", d, ok)
	}
	tb.handle(message(t, "d1", nil))
	if _, ok := tb.Get("d1"); ok {
		t.Error("tombstone did not remove the device")
	}
}

func TestUnregistration(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	d := Device{App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS, Environment: wakepushv1.Environment_ENVIRONMENT_SANDBOX,
		Token: "aa", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, RegisteredAt: t0}
	r := Unregistration("d1", d, "apns:Unregistered", t0.Add(time.Hour), t0.Add(2*time.Hour))
	if r.GetState() != wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED || r.GetSource() != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER ||
		r.GetReason() != "apns:Unregistered" || !r.GetProviderInvalidAt().AsTime().Equal(t0.Add(time.Hour)) ||
		!r.GetRegisteredAt().AsTime().Equal(t0) || r.GetToken() != "aa" || r.GetEnvironment() != d.Environment || r.GetId() == "" {
		t.Errorf("unregistration record = %v", r)
	}
}
