package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

const (
	apnsToken = "deadbeef00112233445566778899aabbccddeeff00112233445566778899aabb"
	fcmToken  = "cF0000000001:APA91b0000000000000000000000000000000000fcf001"
)

func TestText(t *testing.T) {
	tests := []struct {
		name, in string
		gone     []string // must not be in the output
		kept     []string // must still be in it
	}{
		{name: "APNs URL in a transport error",
			in:   `Post "https://api.push.apple.com/3/device/` + apnsToken + `": context deadline exceeded`,
			gone: []string{apnsToken}, kept: []string{"https://api.push.apple.com/3/device/[token]", "context deadline exceeded"}},
		{name: "device path without scheme", in: "POST /3/device/SECRETTOKEN failed", gone: []string{"SECRETTOKEN"}, kept: []string{"/3/device/[token]"}},
		{name: "DSN password", in: `parse "clickhouse://wakepush:S3CRETPW@ch:9440/wakepush?secure=true": bad`,
			gone: []string{"S3CRETPW"}, kept: []string{"clickhouse://wakepush:[redacted]@ch:9440/wakepush?secure=true"}},
		{name: "password with an unescaped @", in: "clickhouse://u:S3C@RET@ch:9000/db", gone: []string{"S3C", "RET@ch"}, kept: []string{"@ch:9000/db"}},
		{name: "credential query parameters", in: "https://h/x?access_token=TOK1&a=1&password=PW2&api_key=K3",
			gone: []string{"TOK1", "PW2", "K3"}, kept: []string{"a=1", "access_token=[redacted]"}},
		{name: "bearer", in: "Authorization: Bearer ya29.SECRETACCESS", gone: []string{"ya29.SECRETACCESS"}, kept: []string{"Bearer [redacted]"}},
		{name: "key=value credentials", in: "connect user=x password=PW4 secret=S5", gone: []string{"PW4", "S5"}, kept: []string{"user=x"}},
		{name: "bare hex token", in: "token " + apnsToken + " is dead", gone: []string{apnsToken}, kept: []string{"token [token] is dead"}},
		{name: "FCM token", in: `"message.token": "` + fcmToken + `" invalid`, gone: []string{fcmToken, "APA91b"}},
		{name: "full JID", in: "from SECRETLOCALPART@example.org/SECRETRESOURCE denied", gone: []string{"SECRETLOCALPART", "SECRETRESOURCE"},
			kept: []string{"from [redacted]@example.org denied"}},
		{name: "bare JID in a quoted value", in: `account "SECRETLOCALPART@example.org" limited`, gone: []string{"SECRETLOCALPART"}, kept: []string{"@example.org"}},
		{name: "32-hex device ids and trace ids stay", in: "device 0123456789abcdef0123456789abcdef", kept: []string{"0123456789abcdef0123456789abcdef"}},
		{name: "module versions in stack traces stay", in: "/go/pkg/mod/github.com/segmentio/kafka-go@v0.4.51/reader.go:123",
			kept: []string{"kafka-go@v0.4.51/reader.go:123"}},
		{name: "plain text untouched", in: "produce wakes failed; retrying", kept: []string{"produce wakes failed; retrying"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Text(tt.in)
			for _, g := range tt.gone {
				if strings.Contains(got, g) {
					t.Errorf("Text(%q) = %q still contains %q", tt.in, got, g)
				}
			}
			for _, k := range tt.kept {
				if !strings.Contains(got, k) {
					t.Errorf("Text(%q) = %q lost %q", tt.in, got, k)
				}
			}
		})
	}
}

func TestError(t *testing.T) {
	_, perr := url.Parse("clickhouse://u:S3CRETPW@h st:9000/db")
	if perr == nil || !strings.Contains(perr.Error(), "S3CRETPW") {
		t.Fatalf("precondition: url.Parse error %v does not carry the password", perr)
	}
	err := Error(fmt.Errorf("dsn: %w", perr))
	if strings.Contains(err.Error(), "S3CRETPW") {
		t.Errorf("Error kept the password: %v", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Error("errors.As no longer finds the *url.Error")
	}
	_, qerr := url.Parse("clickhouse://u:S3C\"RET@h st:9000/db") // %q escapes the quote
	if got := Error(qerr).Error(); strings.Contains(got, "S3C") || strings.Contains(got, "RET") || !strings.Contains(got, "invalid character") {
		t.Errorf("escaped password: %q", got)
	}
	lit := Error(errors.New("fcm: 400 INVALID_ARGUMENT: bad token shorttok"), "shorttok")
	if strings.Contains(lit.Error(), "shorttok") {
		t.Errorf("literal secret kept: %v", lit)
	}
	plain := errors.New("timeout")
	if Error(plain) != plain {
		t.Error("an error with nothing to redact was wrapped")
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
}

func TestJIDDomain(t *testing.T) {
	for in, want := range map[string]string{
		"user@example.org/phone": "example.org",
		"user@example.org":       "example.org",
		"example.org":            "example.org",
		"example.org/res":        "example.org",
	} {
		if got := JIDDomain(in); got != want {
			t.Errorf("JIDDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
