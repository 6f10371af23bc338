package senderbench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// What other load tools (sendermemory) reuse of the benchmark: the records as the services write
// them, the APNs mock child and the sender's apps file.

// RegistrationRecord is the push.registrations record ingest writes for d (registrationRecord).
func RegistrationRecord(d *Device, app string, now time.Time) *wakepushv1.Registration {
	return registrationRecord(d, app, now)
}

// WakeRecord is the push.wakes record the coalescer writes for d's one event (wakeRecord).
func WakeRecord(d *Device, app string, now time.Time) *wakepushv1.Wake {
	return wakeRecord(d, app, now)
}

// Message is a Kafka record as the services' kafkax.Producer writes it (message): key, protobuf
// value, content-type, schema and traceparent headers.
func Message(topic, key string, m proto.Message) (kafka.Message, error) {
	return message(topic, key, m)
}

// Mock is the APNs mock (cmd/apns-mock, MockPackage) as a child process.
type Mock struct{ m *mock }

// StartMock starts the mock on a free port, its CA and log in dir, accepting token auth with
// the .p8 key keyFile as team:keyID for topic, keeping up to records pushes, answering after
// latency; it returns once the mock's control API answers.
func StartMock(ctx context.Context, bin, dir, team, keyID, keyFile, topic string, records int, latency time.Duration) (*Mock, error) {
	m, err := startMock(ctx, bin, dir, team, keyID, keyFile, topic, records, latency)
	if err != nil {
		return nil, err
	}
	return &Mock{m: m}, nil
}

// URL is the mock's APNs endpoint, https://127.0.0.1:port.
func (m *Mock) URL() string { return m.m.url }

// CAFile is the PEM CA the mock's certificate chains to.
func (m *Mock) CAFile() string { return m.m.caFile }

// Pid is the mock's process id.
func (m *Mock) Pid() int { return m.m.proc.Pid() }

// Accepted is the number of pushes the mock has accepted.
func (m *Mock) Accepted(ctx context.Context) (int64, error) { return m.m.accepted(ctx) }

// Pushes returns every push the mock recorded (token, arrival time, payload …).
func (m *Mock) Pushes(ctx context.Context) ([]apnsmock.Push, error) { return m.m.pushes(ctx) }

// Stop ends the mock (SIGTERM) and reports how it ended.
func (m *Mock) Stop() error { return m.m.stop() }

// WriteAppsFile writes the sender's apps file with the one APNs app the benchmark uses (token
// auth with keyFile as team/keyID, the mock's endpoint and CA), as the sender run of the
// benchmark does.
func WriteAppsFile(path, app, team, keyID, keyFile string, m *Mock) error {
	apps := fmt.Sprintf("apps:\n  - id: %s\n    platform: apns\n    apns: {topic: %s, team_id: %s, key_id: %s, key_file: %q, endpoint: %q, ca_file: %q}\n",
		app, app, team, keyID, keyFile, m.URL(), m.CAFile())
	if err := os.WriteFile(path, []byte(apps), 0o644); err != nil {
		return fmt.Errorf("apps file: %w", err)
	}
	return nil
}
