package devices_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func reg(id string, state wakepushv1.RegistrationState) kafkax.Record {
	return kafkax.Record{Ctx: context.Background(), Topic: topics.Registrations, Key: id,
		Msg: &wakepushv1.Registration{Id: id + "-" + state.String(), DeviceId: id, State: state}}
}

const (
	active   = wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE
	inactive = wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED
)

func id(n byte) string {
	b := []byte("0123456789abcdef0123456789abcde0")
	b[31] = "0123456789abcdef"[n]
	return string(b)
}

func TestSetFromKafka(t *testing.T) {
	cfg := testenv.Kafka(t)
	prod, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := context.Background()
	// Before the set starts: 1 unregistered; 2 unregistered then active again; 3 active; 4
	// unregistered then deleted (tombstone); 5 unregistered.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(prod.Produce(ctx, reg(id(1), active), reg(id(1), inactive), reg(id(2), inactive), reg(id(2), active),
		reg(id(3), active), reg(id(4), inactive), reg(id(5), inactive)))
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll}
	must(w.WriteMessages(ctx, kafka.Message{Topic: topics.Registrations, Key: []byte(id(4)), Value: nil}))
	w.Close()

	set := devices.New()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- set.Run(rctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-set.CaughtUp():
	case <-time.After(20 * time.Second):
		t.Fatal("not caught up")
	}
	for n, want := range map[byte]bool{1: true, 2: false, 3: false, 4: false, 5: true, 6: false} {
		if got := set.Unregistered(id(n), ""); got != want {
			t.Errorf("device %d: unregistered %v, want %v", n, got, want)
		}
	}
	if set.Len() != 2 {
		t.Fatalf("Len %d", set.Len())
	}
	// Later records are applied as they come.
	must(prod.Produce(ctx, reg(id(6), inactive), reg(id(5), active)))
	deadline := time.Now().Add(10 * time.Second)
	for !set.Unregistered(id(6), "") || set.Unregistered(id(5), "") {
		if time.Now().After(deadline) {
			t.Fatal("later records not applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Garbage ids are ignored.
	if set.Unregistered("not-a-device", "") {
		t.Fatal("garbage id")
	}
}

func TestEmptyTopicIsCaughtUp(t *testing.T) {
	cfg := testenv.Kafka(t)
	set := devices.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- set.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	select {
	case <-set.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("an empty topic is not caught up")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestApply(t *testing.T) {
	set := devices.New()
	set.Apply(&wakepushv1.Registration{DeviceId: id(1), State: inactive})
	if !set.Unregistered(id(1), "") {
		t.Fatal("not unregistered")
	}
	set.Apply(&wakepushv1.Registration{DeviceId: id(1), State: active})
	if set.Unregistered(id(1), "") {
		t.Fatal("still unregistered")
	}
	// Registrations of one device are independent of each other and of its v1 registration.
	set.Apply(&wakepushv1.Registration{DeviceId: id(1), RegistrationId: regID(1), State: inactive})
	set.Apply(&wakepushv1.Registration{DeviceId: id(1), RegistrationId: regID(2), State: active})
	for _, c := range []struct {
		reg  string
		want bool
	}{{regID(1), true}, {regID(2), false}, {"", false}, {regID(3), false}, {"not-a-registration-id", false}} {
		if got := set.Unregistered(id(1), c.reg); got != c.want {
			t.Errorf("registration %q: unregistered %v, want %v", c.reg, got, c.want)
		}
	}
}

func regID(n byte) string { return strings.Repeat("0", 31) + string("0123456789abcdef"[n]) }

// recorder is a producer that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	recs []kafkax.Record
}

func (r *recorder) Produce(_ context.Context, recs ...kafkax.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, recs...)
	return nil
}

// Expire writes a tombstone (no Msg) for each registration unregistered for at least the
// retention, keyed like its records, and forgets it; younger unregistrations, active
// registrations and registrations active again stay as they are.
func TestExpire(t *testing.T) {
	set := devices.New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	unreg := func(dev, reg string, at time.Time) {
		set.Apply(&wakepushv1.Registration{DeviceId: dev, RegistrationId: reg, State: inactive, CreatedAt: timestamppb.New(at)})
	}
	unreg(id(1), "", t0)                            // v1, old: expires
	unreg(id(2), regID(1), t0)                      // old: expires
	unreg(id(2), regID(2), t0.Add(20*24*time.Hour)) // young: stays
	unreg(id(3), regID(1), t0)                      // old, but active again: stays active
	set.Apply(&wakepushv1.Registration{DeviceId: id(3), RegistrationId: regID(1), State: active, CreatedAt: timestamppb.New(t0.Add(time.Hour))})
	if set.Len() != 3 {
		t.Fatalf("Len %d before expiry, want 3", set.Len())
	}
	p := &recorder{}
	now := t0.Add(30*24*time.Hour + time.Minute)
	n, err := set.Expire(context.Background(), p, 30*24*time.Hour, now)
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	var keys []string
	for _, r := range p.recs {
		if r.Msg != nil || r.Topic != topics.Registrations {
			t.Errorf("not a tombstone of push.registrations: %+v", r)
		}
		keys = append(keys, r.Key)
	}
	slices.Sort(keys)
	if want := []string{id(1), id(2) + "/" + regID(1)}; !slices.Equal(keys, want) {
		t.Errorf("tombstones for %v, want %v", keys, want)
	}
	if set.Len() != 1 || !set.Unregistered(id(2), regID(2)) || set.Unregistered(id(1), "") || set.Unregistered(id(2), regID(1)) {
		t.Errorf("after expiry: Len %d", set.Len())
	}
	// Nothing more to expire; a zero retention keeps everything.
	if n, err := set.Expire(context.Background(), p, 30*24*time.Hour, now); n != 0 || err != nil {
		t.Errorf("second Expire = %d, %v", n, err)
	}
	if n, err := set.Expire(context.Background(), p, 0, now.Add(365*24*time.Hour)); n != 0 || err != nil || set.Len() != 1 {
		t.Errorf("Expire with retention 0 = %d, %v, Len %d", n, err, set.Len())
	}
}

// Registrations in partitions added while the set runs are applied.
func TestNewPartitions(t *testing.T) {
	cfg := testenv.Kafka(t)
	set := devices.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- set.RunRefresh(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 50*time.Millisecond)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-set.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("not caught up")
	}
	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	added := testenv.Partitions + 1
	resp, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topics.Registrations, Count: int32(added + 1)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors[topics.Registrations]; err != nil {
		t.Fatal(err)
	}
	value, err := proto.Marshal(&wakepushv1.Registration{Id: "r7", DeviceId: id(7), State: inactive})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, err := kafka.DialLeader(dctx, "tcp", cfg.Brokers[0], topics.Registrations, added)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.WriteMessages(kafka.Message{Key: []byte(id(7)), Value: value})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !set.Unregistered(id(7), "") {
		if time.Now().After(deadline) {
			t.Fatal("registration in a new partition not applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
