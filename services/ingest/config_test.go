package main

import (
	"context"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/config"
)

// TestConfigValidation: every problem is reported at once, with the variable's name, and no
// secret appears in the message.
func TestConfigValidation(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", "/nonexistent/apps.yaml")
	t.Setenv("WAKEPUSH_NODE_KEYS", "k1:c2hvcnQ=")
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", "")
	t.Setenv("WAKEPUSH_INGEST_EVENT_TOKENS", "acme:tiny")
	t.Setenv("WAKEPUSH_COMPONENT_ADDR", "127.0.0.1:5347")
	t.Setenv("WAKEPUSH_COMPONENT_JID", "")
	t.Setenv("WAKEPUSH_COMPONENT_SECRET", "")
	t.Setenv("WAKEPUSH_INGEST_PRODUCE_TIMEOUT", "soon")
	err := run(context.Background(), nil)
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, want := range []string{
		"WAKEPUSH_INGEST_PRODUCE_TIMEOUT",
		"WAKEPUSH_APPS_FILE",
		"WAKEPUSH_DEVICE_ID_KEY",
		`node key "k1" is 5 bytes, need at least 32`,
		"WAKEPUSH_INGEST_EVENT_TOKENS",
		"WAKEPUSH_COMPONENT_JID is required",
		"WAKEPUSH_COMPONENT_SECRET is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "tiny") {
		t.Errorf("error leaks a token: %v", err)
	}
}

func TestConfigValid(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", testenv.AppsFile(t))
	t.Setenv("WAKEPUSH_NODE_KEYS", testenv.NodeKeys)
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", testenv.DeviceIDKey)
	t.Setenv("WAKEPUSH_INGEST_EVENT_TOKENS", "acme:0123456789abcdef")
	t.Setenv("WAKEPUSH_COMPONENT_ADDR", "")
	t.Setenv("WAKEPUSH_COMPONENT_JID", "push.example.org")
	var c settings
	s := newSet(&c)
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	var chk checkT
	l := c.load(&chk)
	if err := chk.Err(); err != nil {
		t.Fatal(err)
	}
	if len(l.Components) != 0 || l.Tenants.Len() != 1 || l.Keys.CurrentKeyID() != "t1" || len(l.Apps.All()) != 2 {
		t.Fatalf("loaded %+v", l)
	}
}

type checkT = config.Check

func newSet(c *settings) *config.Set {
	s := config.New("ingest-test")
	c.register(s)
	return s
}

func TestConfigConventions(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", testenv.AppsFile(t))
	t.Setenv("WAKEPUSH_NODE_KEYS", testenv.NodeKeys)
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", testenv.DeviceIDKey)
	load := func(adhocApps, modules, senderRate string) (loaded, error) {
		t.Setenv("WAKEPUSH_ADHOC_APPS", adhocApps)
		t.Setenv("WAKEPUSH_PUSH_MODULES", modules)
		t.Setenv("WAKEPUSH_PUSH_MODULES_SENDER_RATE", senderRate)
		var c settings
		if err := newSet(&c).Parse(nil); err != nil {
			t.Fatal(err)
		}
		var chk checkT
		l := c.load(&chk)
		return l, chk.Err()
	}
	l, err := load("apns="+testenv.IOSApp+",fcm="+testenv.AndroidApp, "monalProdiOS="+testenv.IOSApp+":example.com", "10/s:20")
	if err != nil {
		t.Fatal(err)
	}
	if l.Adhoc["fcm"] != testenv.AndroidApp || l.Tokens == nil || l.Tokens.Modules["monalProdiOS"].App != testenv.IOSApp ||
		l.Tokens.SenderRate.Burst != 20 || l.Tokens.DeviceRate.PerSecond != 2 {
		t.Fatalf("loaded %+v %+v", l.Adhoc, l.Tokens)
	}
	if l, err := load("", "", ""); err != nil || len(l.Adhoc) != 0 || l.Tokens != nil {
		t.Fatalf("defaults: %+v %v", l, err)
	}
	_, err = load("apns="+testenv.AndroidApp+",fcm=nope", "m=nope", "fast")
	for _, want := range []string{"apns=org.test.android, but the app's platform is fcm", `app "nope" is not in the apps file`,
		`app "nope" of module "m"`, "WAKEPUSH_PUSH_MODULES_SENDER_RATE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
