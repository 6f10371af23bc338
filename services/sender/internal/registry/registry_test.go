package registry

import (
	"log/slog"
	"slices"
	"strings"
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
	tb := NewLocal(slog.New(slog.DiscardHandler))
	p0 := tb.hold(0)
	t0 := time.Unix(1_800_000_000, 0)
	reg := &wakepushv1.Registration{DeviceId: "d1", App: "im.x", Token: "aa", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		CreatedAt: records.Timestamp(t0), RegisteredAt: records.Timestamp(t0)}
	tb.handle(p0, message(t, "d1", reg))
	d, ok := tb.Get(0, "d1")
	if !ok || !d.Active() || d.Token != "aa" || !d.UpdatedAt.Equal(t0) {
		t.Fatalf("after registration: %+v %v", d, ok)
	}
	// Re-registration: created_at moves, registered_at stays.
	again := proto.Clone(reg).(*wakepushv1.Registration)
	again.CreatedAt = records.Timestamp(t0.Add(time.Hour))
	tb.handle(p0, message(t, "d1", again))
	d, _ = tb.Get(0, "d1")
	if d.RegisteredBefore(t0.Add(30*time.Minute)) || !d.RegisteredBefore(t0.Add(2*time.Hour)) {
		t.Errorf("RegisteredBefore: a device re-registered at t0+1h counts as registered before t0+30m")
	}
	tb.handle(p0, &kafka.Message{Key: []byte("d1"), Value: []byte{0xff}, Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v1.Registration")}}})
	if d, ok := tb.Get(0, "d1"); !ok || !d.Active() {
		t.Errorf("an undecodable record changed the device: %+v %v", d, ok)
	}
	tb.handle(p0, message(t, "d1", nil))
	if _, ok := tb.Get(0, "d1"); ok {
		t.Error("tombstone did not remove the device")
	}
}

const (
	active   = wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE
	inactive = wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED
	prod     = wakepushv1.Environment_ENVIRONMENT_PRODUCTION
	sandbox  = wakepushv1.Environment_ENVIRONMENT_SANDBOX
)

func regID(n byte) string { return strings.Repeat("0", 31) + string("0123456789abcdef"[n]) }

// A device with several registrations: active while any is; production wins over sandbox;
// a tombstone removes one registration, the last one the device; an unregistration from
// ingest (no token) keeps the token.
func TestRegistrations(t *testing.T) {
	tb := NewLocal(slog.New(slog.DiscardHandler))
	p0 := tb.hold(0)
	t0 := time.Unix(1_800_000_000, 0)
	put := func(regID string, state wakepushv1.RegistrationState, env wakepushv1.Environment, token string, at time.Time) {
		t.Helper()
		tb.handle(p0, message(t, records.RegistrationKey("d1", regID), &wakepushv1.Registration{DeviceId: "d1", RegistrationId: regID, App: "im.x",
			Environment: env, Token: token, State: state, CreatedAt: records.Timestamp(at), RegisteredAt: records.Timestamp(at)}))
	}
	check := func(step string, wantActive bool, wantEnv wakepushv1.Environment, wantRegs int) {
		t.Helper()
		d, ok := tb.Get(0, "d1")
		if !ok || d.Active() != wantActive || d.Environment != wantEnv || len(d.Registrations) != wantRegs || d.Token != "aa" {
			t.Fatalf("%s: device %+v (known %v), want active %v in %v with %d registrations", step, d, ok, wantActive, wantEnv, wantRegs)
		}
	}
	put(regID(1), active, sandbox, "aa", t0)
	check("one sandbox registration", true, sandbox, 1)
	put(regID(2), active, prod, "aa", t0.Add(time.Minute))
	check("and a production one", true, prod, 2)
	put(regID(3), active, sandbox, "aa", t0.Add(2*time.Minute))
	check("a newer sandbox one does not divert the wakes", true, prod, 3)
	put(regID(2), inactive, wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED, "", t0.Add(3*time.Minute))
	check("production unregistered by its client (no token)", true, sandbox, 3)
	put(regID(1), inactive, sandbox, "", t0.Add(4*time.Minute))
	put(regID(3), inactive, sandbox, "", t0.Add(4*time.Minute))
	check("every registration unregistered", false, sandbox, 3)
	if d, _ := tb.Get(0, "d1"); d.Registrations[1].Environment != prod {
		t.Errorf("an unregistration without environment lost the registration's: %+v", d.Registrations[1])
	}
	put("", active, prod, "aa", t0.Add(5*time.Minute)) // a v1 record (key = device id)
	check("the v1 registration", true, prod, 4)
	for i, key := range []string{"d1/" + regID(1), "d1/" + regID(2), "d1"} {
		tb.handle(p0, message(t, key, nil))
		check("tombstone "+key, i < 2, []wakepushv1.Environment{prod, prod, sandbox}[i], 3-i)
	}
	tb.handle(p0, message(t, "d1/"+regID(3), nil))
	if _, ok := tb.Get(0, "d1"); ok || tb.Len() != 0 {
		t.Fatal("the device outlived the tombstone of its last registration")
	}
	// A malformed registration id is skipped.
	tb.handle(p0, message(t, "d2/xyz", &wakepushv1.Registration{DeviceId: "d2", RegistrationId: "xyz", State: active, Token: "bb"}))
	if tb.Len() != 0 {
		t.Fatal("a record with a malformed registration id was kept")
	}
}

func TestUnregistrations(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tb := NewLocal(slog.New(slog.DiscardHandler))
	for i, r := range []struct {
		id    string
		env   wakepushv1.Environment
		state wakepushv1.RegistrationState
		at    time.Time
	}{
		{regID(1), prod, active, t0},                                     // before invalidAt: ends
		{"", wakepushv1.Environment_ENVIRONMENT_UNSPECIFIED, active, t0}, // v1, production: ends
		{regID(2), prod, active, t0.Add(2 * time.Hour)},                  // renewed after invalidAt: stays
		{regID(3), sandbox, active, t0},                                  // other environment: stays
		{regID(4), prod, inactive, t0},                                   // already unregistered: nothing
	} {
		tok := "aa"
		if i == 4 {
			tok = ""
		}
		tb.Apply(0, &wakepushv1.Registration{DeviceId: "d1", RegistrationId: r.id, App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS,
			Environment: r.env, Token: tok, State: r.state, CreatedAt: records.Timestamp(r.at), RegisteredAt: records.Timestamp(r.at)})
	}
	d, _ := tb.Get(0, "d1")
	regs := Unregistrations("d1", d, prod, "apns:Unregistered", t0.Add(time.Hour), t0.Add(3*time.Hour))
	var ids []string
	for _, r := range regs {
		ids = append(ids, r.GetRegistrationId())
		if r.GetState() != inactive || r.GetSource() != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER ||
			r.GetReason() != "apns:Unregistered" || !r.GetProviderInvalidAt().AsTime().Equal(t0.Add(time.Hour)) ||
			!r.GetRegisteredAt().AsTime().Equal(t0) || r.GetToken() != "aa" || r.GetApp() != "im.x" || r.GetId() == "" || r.GetDeviceId() != "d1" {
			t.Errorf("unregistration record = %v", r)
		}
	}
	if want := []string{regID(1), ""}; !slices.Equal(ids, want) {
		t.Fatalf("unregistered %q, want %q", ids, want)
	}
	for _, r := range regs {
		tb.Apply(0, r)
	}
	if d, _ := tb.Get(0, "d1"); !d.Active() || d.Environment != prod {
		t.Fatalf("after the unregistrations the device is %+v, want active in production (the renewed registration)", d)
	}
	if got := Unregistrations("d1", d, sandbox, "apns:BadDeviceToken", t0.Add(time.Hour), t0.Add(3*time.Hour)); len(got) != 1 || got[0].GetRegistrationId() != regID(3) {
		t.Fatalf("sandbox unregistrations %v", got)
	}
}
