package logging

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/wakepush/wakepush/services/internal/redact"
)

// Guard wraps h so that no record it writes carries a secret, a device token, a JID localpart
// or resource, or message content, at any level:
//
//   - attributes whose key names a credential or content (token, secret, password, dsn,
//     authorization, credential, cookie, body, content …) are replaced by "[redacted]";
//   - attributes whose key names a JID (from, to, jid, *_jid, sender, account, user) keep only
//     the domain;
//   - the message, string values, errors, string lists and other values as printed lose every
//     occurrence of the given secrets (the service's configured secrets; values shorter than
//     minSecretLen are ignored, they would only garble logs) and go through redact.Text (URL
//     passwords and credential parameters, device tokens in APNs URLs, long hex and FCM tokens,
//     bearer tokens, key=value credentials, JID localparts and resources).
//
// Call sites must still not log such values: the guard only catches what it recognises.
func Guard(h slog.Handler, secrets ...string) slog.Handler {
	var long []string
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			long = append(long, s)
		}
	}
	// Longest first, so a secret containing another is replaced whole.
	slices.SortFunc(long, func(a, b string) int { return len(b) - len(a) })
	return guard{next: h, r: redactor{secrets: slices.Compact(long)}}
}

// minSecretLen is the shortest literal secret the guard replaces.
const minSecretLen = 8

type guard struct {
	next slog.Handler
	r    redactor
}

// redactor removes the literal secrets, then what redact.Text recognises.
type redactor struct{ secrets []string }

func (r redactor) text(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redact.Redacted)
		}
	}
	return redact.Text(s)
}

func (g guard) Enabled(ctx context.Context, l slog.Level) bool { return g.next.Enabled(ctx, l) }

func (g guard) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, g.r.text(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(g.r.attr(a))
		return true
	})
	return g.next.Handle(ctx, out)
}

func (g guard) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = g.r.attr(a)
	}
	return guard{next: g.next.WithAttrs(red), r: g.r}
}

func (g guard) WithGroup(name string) slog.Handler {
	return guard{next: g.next.WithGroup(name), r: g.r}
}

// sensitiveWords make an attribute key sensitive when it contains one of them.
var sensitiveWords = []string{"token", "secret", "password", "passwd", "dsn", "authorization", "credential", "cookie"}

// contentKeys are keys of message content.
var contentKeys = map[string]bool{"body": true, "content": true, "message_body": true, "last_message_body": true}

// jidKeys are keys whose value is a JID: only its domain is kept.
var jidKeys = map[string]bool{"from": true, "to": true, "jid": true, "sender": true, "account": true, "user": true}

func sensitiveKey(k string) bool {
	if contentKeys[k] {
		return true
	}
	for _, w := range sensitiveWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func jidKey(k string) bool {
	return jidKeys[k] || strings.HasSuffix(k, "_jid") || strings.HasSuffix(k, ".jid")
}

func (r redactor) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	k := strings.ToLower(a.Key)
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = r.attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	if v.Kind() != slog.KindString && v.Kind() != slog.KindAny {
		return slog.Attr{Key: a.Key, Value: v} // numbers, bools, durations, times carry nothing
	}
	switch {
	case sensitiveKey(k):
		return slog.String(a.Key, redact.Redacted)
	case jidKey(k):
		return slog.String(a.Key, r.text(redact.JIDDomain(v.String())))
	}
	if v.Kind() == slog.KindString {
		s := v.String()
		if red := r.text(s); red != s {
			return slog.String(a.Key, red)
		}
		return slog.Attr{Key: a.Key, Value: v}
	}
	switch x := v.Any().(type) {
	case nil:
	case error:
		return slog.String(a.Key, r.text(printed(x.Error)))
	case []string:
		out := make([]string, len(x))
		changed := false
		for i, s := range x {
			out[i] = r.text(s)
			changed = changed || out[i] != s
		}
		if changed {
			return slog.Any(a.Key, out)
		}
	default:
		if s := printed(func() string { return fmt.Sprint(x) }); r.text(s) != s {
			return slog.String(a.Key, r.text(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// printed calls f, turning a panic (a nil pointer's Error method) into a marker as slog does.
func printed(f func() string) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = "!PANIC: " + redact.Text(fmt.Sprint(p))
		}
	}()
	return f()
}
