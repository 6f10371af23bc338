package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// caughtUpTable is the registration table without its Kafka reader: everything is applied by
// the test, so it is always caught up.
type caughtUpTable struct{ *registry.Table }

func (caughtUpTable) WaitCaughtUp(context.Context, int) error { return nil }

// envProvider says the token is dead in one environment and accepts it in the other.
type envProvider struct {
	dead wakepushv1.Environment
	mu   sync.Mutex
	sent []wakepushv1.Environment
}

func (p *envProvider) Send(_ context.Context, t provider.Target, _ *wakepushv1.Wake) provider.Result {
	p.mu.Lock()
	p.sent = append(p.sent, t.Environment)
	p.mu.Unlock()
	if t.Environment == p.dead {
		return provider.Result{Action: provider.Permanent, StatusCode: 400, Reason: "BadDeviceToken", InvalidAt: time.Now()}
	}
	return provider.Result{Action: provider.Accepted, StatusCode: 200}
}

func (p *envProvider) Close() {}

type recordingProducer struct {
	mu   sync.Mutex
	recs []kafkax.Record
}

func (p *recordingProducer) Produce(_ context.Context, recs ...kafkax.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs = append(p.recs, recs...)
	return nil
}

// oneWake is a reader that hands out one wake, then blocks until ctx ends.
type oneWake struct {
	mu        sync.Mutex
	msg       *kafka.Message
	committed chan struct{}
}

func (r *oneWake) FetchMessage(ctx context.Context) (kafka.Message, error) {
	r.mu.Lock()
	m := r.msg
	r.msg = nil
	r.mu.Unlock()
	if m != nil {
		return *m, nil
	}
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *oneWake) CommitMessages(context.Context, ...kafka.Message) error {
	select {
	case <-r.committed:
	default:
		close(r.committed)
	}
	return nil
}

// Someone who knows a device's token registers it in the wrong environment. A production token
// registered again as sandbox: wakes keep going to production (production wins). A sandbox
// token (a development build) registered again as production: the provider rejects the
// production push, only the production registration ends, and the same wake goes to the
// sandbox: the wrong registration cannot cost the device a wake. A token dead in its only
// environment ends its registrations and is not pushed again.
func TestDeadInOneEnvironmentOnly(t *testing.T) {
	const (
		prod    = wakepushv1.Environment_ENVIRONMENT_PRODUCTION
		sandbox = wakepushv1.Environment_ENVIRONMENT_SANDBOX
	)
	for _, tt := range []struct {
		name       string
		envs       []wakepushv1.Environment // registration environments, in order
		dead       wakepushv1.Environment   // where the provider rejects the token
		want       []wakepushv1.Environment // environments pushed to
		wantEnded  int                      // registrations unregistered
		wantActive bool                     // the device afterwards
	}{
		{"production token, sandbox registration added", []wakepushv1.Environment{prod, sandbox}, sandbox, []wakepushv1.Environment{prod}, 0, true},
		{"sandbox token, production registration added", []wakepushv1.Environment{sandbox, prod}, prod, []wakepushv1.Environment{prod, sandbox}, 1, true},
		{"token dead in its only environment", []wakepushv1.Environment{prod, prod}, prod, []wakepushv1.Environment{prod}, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := apps.Parse([]byte("apps:\n  - id: im.x\n    platform: apns\n    apns: {team_id: TEAM000001, key_id: KEY0000001, key_file: /nonexistent/key.p8}\n"), "test")
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			tb := registry.NewLocal(log)
			t0 := time.Now().Add(-time.Hour)
			for i, env := range tt.envs {
				tb.Apply(0, &wakepushv1.Registration{DeviceId: "d1", RegistrationId: fmt.Sprintf("%032x", i+1), App: "im.x",
					Platform: wakepushv1.Platform_PLATFORM_APNS, Environment: env, Token: "aa", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
					CreatedAt: records.Timestamp(t0.Add(time.Duration(i) * time.Minute))})
			}
			prov := &envProvider{dead: tt.dead}
			prod := &recordingProducer{}
			e, err := New(Config{Concurrency: 1, MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: time.Millisecond, ConfigPause: time.Second,
				CatchUpTimeout: time.Second, DrainTimeout: time.Second}, Deps{
				Log: log, Apps: a, Registry: caughtUpTable{tb}, Producer: prod, Dedup: dedup.New(16),
				Providers: map[wakepushv1.Platform]provider.Provider{wakepushv1.Platform_PLATFORM_APNS: prov},
			})
			if err != nil {
				t.Fatal(err)
			}
			w, _ := proto.Marshal(&wakepushv1.Wake{Id: "w1", DeviceId: "d1", App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS})
			r := &oneWake{committed: make(chan struct{}), msg: &kafka.Message{Topic: topics.Wakes, Key: []byte("d1"), Value: w,
				Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v1.Wake")}}}}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx, r) }()
			select {
			case <-r.committed:
			case <-time.After(10 * time.Second):
				t.Fatal("the wake was not finished")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			prov.mu.Lock()
			sent := prov.sent
			prov.mu.Unlock()
			if len(sent) != len(tt.want) {
				t.Fatalf("pushed to %v, want %v", sent, tt.want)
			}
			for i := range sent {
				if sent[i] != tt.want[i] {
					t.Fatalf("pushed to %v, want %v", sent, tt.want)
				}
			}
			ended := 0
			for _, rec := range prod.recs {
				if reg, ok := rec.Msg.(*wakepushv1.Registration); ok {
					ended++
					if reg.GetEnvironment() != tt.dead || reg.GetState() != wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED ||
						rec.Key != "d1/"+reg.GetRegistrationId() {
						t.Errorf("unregistration %s: %v", rec.Key, reg)
					}
				}
			}
			if d, _ := tb.Get(0, "d1"); ended != tt.wantEnded || d.Active() != tt.wantActive {
				t.Errorf("%d registrations ended, device active %v; want %d, %v", ended, d.Active(), tt.wantEnded, tt.wantActive)
			}
		})
	}
}
