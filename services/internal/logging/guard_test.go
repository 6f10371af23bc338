package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	apnsToken = "deadbeef00112233445566778899aabbccddeeff00112233445566778899aabb"
	localpart = "SECRETLOCALPART"
	resource  = "SECRETRESOURCE"
)

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type nilErr struct{}

func (*nilErr) Error() string { panic("nil receiver") }

// Every record, at every level and in both formats, loses what the guard knows to be private,
// and keeps what operators need.
func TestGuard(t *testing.T) {
	fullJID := localpart + "@example.org/" + resource
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		keep []string
	}{
		{name: "sensitive keys", log: func(l *slog.Logger) {
			l.Debug("registration", "token", apnsToken, "node_secret", "NODESECRETVALUE", "password", "PW", "dsn", "clickhouse://u:PW@h/db",
				"Authorization", "Bearer X", "body", "MESSAGEBODYVALUE")
		}, keep: []string{"registration", "[redacted]"}},
		{name: "JID keys keep the domain", log: func(l *slog.Logger) {
			l.Warn("could not answer IQ", "from", fullJID, "to", "push.example.org", "component_jid", "push.example.org")
		}, keep: []string{"example.org", "push.example.org"}},
		{name: "errors carrying a device URL", log: func(l *slog.Logger) {
			l.Error("attempt failed", "err", fmt.Errorf("apns: %w", errors.New(`Post "https://api.push.apple.com/3/device/`+apnsToken+`": EOF`)))
		}, keep: []string{"/3/device/[token]", "EOF"}},
		{name: "message text", log: func(l *slog.Logger) {
			l.Info("command from " + fullJID)
		}, keep: []string{"command from [redacted]@example.org"}},
		{name: "string lists, stringers and groups", log: func(l *slog.Logger) {
			l.Info("x", "jids", []string{fullJID}, "who", stringer{fullJID}, slog.Group("req", "url", "https://h/p?access_token="+apnsToken, "status", 400))
		}, keep: []string{"400"}},
		{name: "With attributes", log: func(l *slog.Logger) {
			l.With("from", fullJID, "err", errors.New("user "+fullJID)).WithGroup("g").Info("y", "token", apnsToken)
		}, keep: []string{"example.org"}},
		{name: "a nil error pointer", log: func(l *slog.Logger) {
			var e *nilErr
			l.Info("z", "err", error(e))
		}, keep: []string{"!PANIC"}},
	}
	for _, format := range []string{"json", "text"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				l, err := New(&buf, format, "debug", "svc")
				if err != nil {
					t.Fatal(err)
				}
				tt.log(l)
				out := buf.String()
				if out == "" {
					t.Fatal("nothing logged")
				}
				for _, secret := range []string{apnsToken, localpart, resource, "NODESECRETVALUE", "PW", "MESSAGEBODYVALUE", "Bearer X"} {
					if strings.Contains(out, secret) {
						t.Errorf("log contains %q:\n%s", secret, out)
					}
				}
				for _, k := range tt.keep {
					if !strings.Contains(out, k) {
						t.Errorf("log lost %q:\n%s", k, out)
					}
				}
			})
		}
	}
}

// Configured secrets are removed wherever they appear, even in text no pattern recognises.
func TestGuardSecrets(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "debug", "svc", "kafka-sasl-pw-1", "short", "")
	if err != nil {
		t.Fatal(err)
	}
	l.Warn("SASL handshake failed", "err", errors.New("sasl: server rejected kafka-sasl-pw-1 for wakepush"), "note", "short stays")
	out := buf.String()
	if strings.Contains(out, "kafka-sasl-pw-1") || !strings.Contains(out, "rejected [redacted] for wakepush") {
		t.Errorf("secret not redacted:\n%s", out)
	}
	if !strings.Contains(out, "short stays") {
		t.Errorf("a secret under the minimum length garbled the log:\n%s", out)
	}
}

// The guard leaves records without anything private as they were (same keys, same kinds).
func TestGuardKeepsOrdinaryRecords(t *testing.T) {
	var plain, guarded bytes.Buffer
	args := []any{"partition", 3, "offset", int64(42), "topic", "push.events", "ok", true, "device_id", "0123456789abcdef0123456789abcdef",
		"topics", []string{"push.events", "push.wakes"}, "err", errors.New("kafka: leader not available")}
	slog.New(slog.NewJSONHandler(&plain, nil)).Info("partition assigned", args...)
	slog.New(Guard(slog.NewJSONHandler(&guarded, nil))).Info("partition assigned", args...)
	strip := func(s string) string { _, rest, _ := strings.Cut(s, `"level"`); return rest }
	if strip(plain.String()) != strip(guarded.String()) {
		t.Errorf("guard changed an ordinary record:\n%s\n%s", plain.String(), guarded.String())
	}
	if !Guard(slog.NewJSONHandler(&guarded, &slog.HandlerOptions{Level: slog.LevelWarn})).Enabled(context.Background(), slog.LevelWarn) {
		t.Error("guard changed Enabled")
	}
}
