package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
)

// Secrets are read from the environment only (never flags: flags show in `ps` and -help).
const (
	envNodeKeys        = "WAKEPUSH_NODE_KEYS"
	envDeviceIDKey     = "WAKEPUSH_DEVICE_ID_KEY"
	envEventTokens     = "WAKEPUSH_INGEST_EVENT_TOKENS"
	envComponentSecret = "WAKEPUSH_COMPONENT_SECRET"
)

// settings are ingest's own settings (the common and Kafka ones live in service and kafkax).
type settings struct {
	HTTPAddr       string
	AppsFile       string
	MaxBody        int
	ProduceTimeout time.Duration

	ComponentAddr        string
	ComponentJID         string
	ComponentKeepAlive   time.Duration
	ComponentMaxStanza   int
	ComponentMaxInFlight int
	ComponentBackoffMax  time.Duration
}

func (c *settings) register(s *config.Set) {
	s.String(&c.HTTPAddr, "http-addr", "WAKEPUSH_INGEST_HTTP_ADDR", "127.0.0.1:18080", "address of the HTTP API")
	s.String(&c.AppsFile, "apps-file", "WAKEPUSH_APPS_FILE", "", "the apps file (YAML): the push apps this deployment serves")
	s.Int(&c.MaxBody, "http-max-body", "WAKEPUSH_INGEST_MAX_BODY", httpapi.DefaultMaxBody, "HTTP request body limit in bytes (larger bodies get 413)")
	s.Duration(&c.ProduceTimeout, "produce-timeout", "WAKEPUSH_INGEST_PRODUCE_TIMEOUT", 5*time.Second, "how long a request waits for Kafka's acknowledgement before it is answered as unavailable")
	s.String(&c.ComponentAddr, "component-addr", "WAKEPUSH_COMPONENT_ADDR", "", "XMPP server component port to connect to as an XEP-0114 component, host:port (empty: no component)")
	s.String(&c.ComponentJID, "component-jid", "WAKEPUSH_COMPONENT_JID", "", "the component's JID (the App Server JID clients enable push with), e.g. push.example.org")
	s.Duration(&c.ComponentKeepAlive, "component-keepalive", "WAKEPUSH_COMPONENT_KEEPALIVE", 30*time.Second, "whitespace keepalive interval on an idle component connection")
	s.Int(&c.ComponentMaxStanza, "component-max-stanza", "WAKEPUSH_COMPONENT_MAX_STANZA", 64<<10, "largest stanza accepted on the component connection, in bytes (larger ones end the stream)")
	s.Int(&c.ComponentMaxInFlight, "component-max-inflight", "WAKEPUSH_COMPONENT_MAX_INFLIGHT", 256, "publishes processed concurrently per component connection; more are answered wait/resource-constraint")
	s.Duration(&c.ComponentBackoffMax, "component-backoff-max", "WAKEPUSH_COMPONENT_BACKOFF_MAX", 30*time.Second, "longest delay between component reconnect attempts")
}

// loaded is what the settings and secrets resolve to.
type loaded struct {
	Apps      *apps.Set
	Keys      *identity.Keys
	Tenants   *httpapi.Tenants
	Component *component.Config // nil when disabled
}

// load validates the settings and reads the apps file and the secrets, collecting every problem
// in chk.
func (c *settings) load(chk *config.Check) loaded {
	var l loaded
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_INGEST_HTTP_ADDR=%q: %v", c.HTTPAddr, err))
	}
	chk.Require(c.MaxBody >= 1024, "WAKEPUSH_INGEST_MAX_BODY must be at least 1024 bytes")
	chk.Require(c.ProduceTimeout > 0, "WAKEPUSH_INGEST_PRODUCE_TIMEOUT must be > 0")
	if c.AppsFile == "" {
		chk.Add(fmt.Errorf("WAKEPUSH_APPS_FILE is required"))
	} else if a, err := apps.Load(c.AppsFile); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_APPS_FILE: %w", err))
	} else {
		l.Apps = a
	}
	keys, err := identity.FromEnv(envDeviceIDKey, os.Getenv(envDeviceIDKey), envNodeKeys, os.Getenv(envNodeKeys))
	chk.Add(err)
	l.Keys = keys
	tenants, err := httpapi.ParseTenants(os.Getenv(envEventTokens))
	if err != nil {
		chk.Add(fmt.Errorf("%s: %w", envEventTokens, err))
	}
	l.Tenants = tenants

	if c.ComponentAddr != "" {
		secret := os.Getenv(envComponentSecret)
		chk.Require(c.ComponentJID != "", "WAKEPUSH_COMPONENT_JID is required with WAKEPUSH_COMPONENT_ADDR")
		chk.Require(strings.TrimSpace(secret) != "", "%s is required with WAKEPUSH_COMPONENT_ADDR", envComponentSecret)
		if _, _, err := net.SplitHostPort(c.ComponentAddr); err != nil {
			chk.Add(fmt.Errorf("WAKEPUSH_COMPONENT_ADDR=%q: %v", c.ComponentAddr, err))
		}
		chk.Require(c.ComponentKeepAlive >= time.Second, "WAKEPUSH_COMPONENT_KEEPALIVE must be at least 1s")
		chk.Require(c.ComponentMaxStanza >= 4096, "WAKEPUSH_COMPONENT_MAX_STANZA must be at least 4096 bytes")
		chk.Require(c.ComponentMaxInFlight >= 1, "WAKEPUSH_COMPONENT_MAX_INFLIGHT must be >= 1")
		chk.Require(c.ComponentBackoffMax >= time.Second, "WAKEPUSH_COMPONENT_BACKOFF_MAX must be at least 1s")
		l.Component = &component.Config{
			Addr:          c.ComponentAddr,
			JID:           strings.ToLower(c.ComponentJID),
			Secret:        secret,
			KeepAlive:     c.ComponentKeepAlive,
			MaxStanzaSize: c.ComponentMaxStanza,
			MaxInFlight:   c.ComponentMaxInFlight,
			BackoffMax:    c.ComponentBackoffMax,
		}
	}
	// WAKEPUSH_COMPONENT_JID without an address is valid: HTTP-only replicas still hand it out
	// in registrations while other replicas hold the component connections.
	chk.Require(!strings.ContainsAny(c.ComponentJID, "@/ "), "WAKEPUSH_COMPONENT_JID=%q: want a bare domain such as push.example.org", c.ComponentJID)
	return l
}
