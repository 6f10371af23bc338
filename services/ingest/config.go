package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/services/ingest/adhoc"
	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
)

// Secrets: read from the environment or from the file VAR_FILE names, never from flags (flags
// show in `ps`), never shown by -h, never in an error or a log line (config.Set.Secret).
const (
	envNodeKeys         = "WAKEPUSH_NODE_KEYS"
	envDeviceIDKey      = "WAKEPUSH_DEVICE_ID_KEY"
	envEventTokens      = "WAKEPUSH_INGEST_EVENT_TOKENS"
	envComponentSecret  = "WAKEPUSH_COMPONENT_SECRET"
	envComponentSecrets = "WAKEPUSH_COMPONENT_SECRETS"
)

// maxConnectionsPerServer bounds the `*n` of a WAKEPUSH_COMPONENTS entry.
const maxConnectionsPerServer = 64

// settings are ingest's own settings (the common and Kafka ones live in service and kafkax).
type settings struct {
	HTTPAddr       string
	AppsFile       string
	MaxBody        int
	ClientRate     string
	TrustedProxies string
	TenantRate     string
	ProduceTimeout time.Duration
	// UnregisteredRetention is how long an unregistration is kept before its tombstone.
	UnregisteredRetention time.Duration

	Components           string
	ComponentAddr        string
	ComponentJID         string
	ComponentReadiness   string
	ComponentKeepAlive   time.Duration
	ComponentMaxStanza   int
	ComponentMaxInFlight int
	ComponentAdmitWait   time.Duration
	ComponentBackoffMax  time.Duration

	AdhocApps       string
	AdhocRate       string
	PushModules     string
	TokenSenderRate string
	TokenDeviceRate string

	// Secrets (config.Secret).
	NodeKeys         string
	DeviceIDKey      string
	EventTokens      string
	ComponentSecret  string
	ComponentSecrets string
}

func (c *settings) register(s *config.Set) {
	s.Secret(&c.NodeKeys, envNodeKeys, "", "node keys, kid:base64[,…] (at least 32 bytes each; the first signs new nodes)")
	s.Secret(&c.DeviceIDKey, envDeviceIDKey, "", "device id key, base64 (at least 32 bytes)")
	s.Secret(&c.EventTokens, envEventTokens, "", "HTTP event API tenants, tenant:token[,…] (empty: the event API refuses every call)")
	s.Secret(&c.ComponentSecret, envComponentSecret, "", "XEP-0114 component secret of -component-addr (and of WAKEPUSH_COMPONENTS entries not in WAKEPUSH_COMPONENT_SECRETS)")
	s.Secret(&c.ComponentSecrets, envComponentSecrets, "", "XEP-0114 component secrets per JID of WAKEPUSH_COMPONENTS, jid=secret[,…]")
	s.String(&c.HTTPAddr, "http-addr", "WAKEPUSH_INGEST_HTTP_ADDR", "127.0.0.1:18080", "address of the HTTP API")
	s.String(&c.AppsFile, "apps-file", "WAKEPUSH_APPS_FILE", "", "the apps file (YAML): the push apps this deployment serves")
	s.Int(&c.MaxBody, "http-max-body", "WAKEPUSH_INGEST_MAX_BODY", httpapi.DefaultMaxBody, "HTTP request body limit in bytes (larger bodies get 413)")
	s.String(&c.ClientRate, "http-client-rate", "WAKEPUSH_INGEST_CLIENT_RATE", "10/s:50", "registration, unregistration and receipt calls per client IP address, N/s|m|h[:burst] (0: unlimited); over it: 429")
	s.String(&c.TrustedProxies, "http-trusted-proxies", "WAKEPUSH_INGEST_TRUSTED_PROXIES", "", "reverse proxies whose X-Forwarded-For names the client for -http-client-rate: CIDR prefixes or addresses, comma-separated (empty: the connection's peer is the client)")
	s.String(&c.TenantRate, "http-tenant-rate", "WAKEPUSH_INGEST_TENANT_RATE", "0", "event API calls per tenant, N/s|m|h[:burst] (0: unlimited); over it: 429")
	s.Duration(&c.ProduceTimeout, "produce-timeout", "WAKEPUSH_INGEST_PRODUCE_TIMEOUT", 5*time.Second, "how long a request waits for Kafka's acknowledgement before it is answered as unavailable")
	s.Duration(&c.UnregisteredRetention, "unregistered-retention", "WAKEPUSH_UNREGISTERED_RETENTION", 30*24*time.Hour, "how long an unregistered registration is kept (publishes for it answered gone) before a tombstone removes it from push.registrations, ingest and every sender; 0: forever")
	s.String(&c.Components, "components", "WAKEPUSH_COMPONENTS", "", "XEP-0114 component connections: jid@host:port[*n][;tls[;ca=FILE][;server-name=NAME]][,…] (n connections to that server as that JID, for ejabberd; tls: direct TLS); secrets in WAKEPUSH_COMPONENT_SECRETS. Replaces -component-addr")
	s.String(&c.ComponentReadiness, "component-readiness", "WAKEPUSH_COMPONENT_READINESS", "none", "what /readyz requires of the component connections: none, any (at least one connected) or all")
	s.String(&c.ComponentAddr, "component-addr", "WAKEPUSH_COMPONENT_ADDR", "", "XMPP server component port to connect to as an XEP-0114 component, host:port[;tls[;ca=FILE][;server-name=NAME]] (empty: no component)")
	s.String(&c.ComponentJID, "component-jid", "WAKEPUSH_COMPONENT_JID", "", "the component's JID (the App Server JID clients enable push with), e.g. push.example.org")
	s.Duration(&c.ComponentKeepAlive, "component-keepalive", "WAKEPUSH_COMPONENT_KEEPALIVE", 30*time.Second, "whitespace keepalive interval on an idle component connection")
	s.Int(&c.ComponentMaxStanza, "component-max-stanza", "WAKEPUSH_COMPONENT_MAX_STANZA", 64<<10, "largest stanza accepted on the component connection, in bytes (larger ones end the stream)")
	s.Int(&c.ComponentMaxInFlight, "component-max-inflight", "WAKEPUSH_COMPONENT_MAX_INFLIGHT", 256, "publishes processed concurrently per component connection; more wait up to WAKEPUSH_COMPONENT_ADMISSION_WAIT, then are answered wait/resource-constraint")
	s.Duration(&c.ComponentAdmitWait, "component-admission-wait", "WAKEPUSH_COMPONENT_ADMISSION_WAIT", 250*time.Millisecond,
		"how long a publish over the in-flight limit waits for a free slot (reading stops meanwhile: back-pressure through TCP) before it is refused; 0: refused at once")
	s.Duration(&c.ComponentBackoffMax, "component-backoff-max", "WAKEPUSH_COMPONENT_BACKOFF_MAX", 30*time.Second, "longest delay between component reconnect attempts")
	s.String(&c.AdhocApps, "adhoc-apps", "WAKEPUSH_ADHOC_APPS", "", "p2/Conversations ad-hoc commands: service=app[,…] (services apns, fcm); empty: no commands")
	s.String(&c.AdhocRate, "adhoc-rate", "WAKEPUSH_ADHOC_RATE", "10/m:10", "ad-hoc commands per account (bare JID), N/s|m|h[:burst] (0: unlimited); more are answered wait/resource-constraint")
	s.String(&c.PushModules, "push-modules", "WAKEPUSH_PUSH_MODULES", "", "fpush/Monal convention: pushModule=app[:domain|domain…][,…] (a -sandbox suffix selects the APNs sandbox); empty: disabled")
	s.String(&c.TokenSenderRate, "push-modules-sender-rate", "WAKEPUSH_PUSH_MODULES_SENDER_RATE", "500/s:1000", "fpush convention: publishes per sender domain, N/s|m|h[:burst] (0: unlimited)")
	s.String(&c.TokenDeviceRate, "push-modules-device-rate", "WAKEPUSH_PUSH_MODULES_DEVICE_RATE", "2/s:30", "fpush convention: publishes per device, N/s|m|h[:burst] (0: unlimited)")
}

// loaded is what the settings and secrets resolve to.
type loaded struct {
	Apps    *apps.Set
	Keys    *identity.Keys
	Tenants *httpapi.Tenants
	// Components are the component connections, one Config per connection (empty: none).
	Components []component.Config
	Adhoc      adhoc.Services // empty when disabled
	AdhocRate  core.Rate
	ClientRate core.Rate               // HTTP API, per client address
	Proxies    *httpapi.TrustedProxies // whose X-Forwarded-For names the client
	TenantRate core.Rate               // HTTP event API, per tenant
	Tokens     *core.TokenNodeConfig   // nil when disabled
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
	chk.Require(c.UnregisteredRetention >= 0, "WAKEPUSH_UNREGISTERED_RETENTION must be >= 0 (0: keep unregistrations forever)")
	if c.AppsFile == "" {
		chk.Add(fmt.Errorf("WAKEPUSH_APPS_FILE is required"))
	} else if a, err := apps.Load(c.AppsFile); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_APPS_FILE: %w", err))
	} else {
		l.Apps = a
	}
	keys, err := identity.FromEnv(envDeviceIDKey, c.DeviceIDKey, envNodeKeys, c.NodeKeys)
	chk.Add(err)
	l.Keys = keys
	tenants, err := httpapi.ParseTenants(c.EventTokens)
	if err != nil {
		chk.Add(fmt.Errorf("%s: %w", envEventTokens, err))
	}
	l.Tenants = tenants

	c.loadComponents(chk, &l)
	c.loadConventions(chk, &l)
	// WAKEPUSH_COMPONENT_JID without an address is valid: HTTP-only replicas still hand it out
	// in registrations while other replicas hold the component connections.
	chk.Require(!strings.ContainsAny(c.ComponentJID, "@/ "), "WAKEPUSH_COMPONENT_JID=%q: want a bare domain such as push.example.org", c.ComponentJID)
	return l
}

// componentEntry is one entry of WAKEPUSH_COMPONENTS.
type componentEntry struct {
	JID, Addr string
	Count     int
	TLS       componentTLS
}

// parseComponents parses WAKEPUSH_COMPONENTS: `jid@host:port[*n][;tls[;ca=FILE][;server-name=NAME]][,…]`.
func parseComponents(list string) ([]componentEntry, error) {
	var out []componentEntry
	seen := map[string]bool{}
	for _, item := range config.SplitList(list) {
		e := componentEntry{Count: 1}
		var err error
		if item, e.TLS, err = splitComponentOptions(item); err != nil {
			return nil, err
		}
		if spec, n, ok := strings.Cut(item, "*"); ok {
			k, err := strconv.Atoi(n)
			if err != nil || k < 1 || k > maxConnectionsPerServer {
				return nil, fmt.Errorf("%q: the connection count after * must be 1…%d", item, maxConnectionsPerServer)
			}
			item, e.Count = spec, k
		}
		jid, addr, ok := strings.Cut(item, "@")
		if !ok || jid == "" || strings.ContainsAny(jid, "/ ") {
			return nil, fmt.Errorf("%q: want jid@host:port, e.g. push.example.org@127.0.0.1:5347", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%q: %v", item, err)
		}
		e.JID, e.Addr = strings.ToLower(jid), addr
		key := e.JID + "@" + e.Addr
		if seen[key] {
			return nil, fmt.Errorf("%q is listed twice (use *n for several connections)", key)
		}
		seen[key] = true
		out = append(out, e)
	}
	return out, nil
}

// parseComponentSecrets parses WAKEPUSH_COMPONENT_SECRETS: `jid=secret[,…]` (a secret may
// contain '=' but not ','). Errors never contain a secret.
func parseComponentSecrets(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, item := range config.SplitList(s) {
		jid, secret, ok := strings.Cut(item, "=")
		jid = strings.ToLower(strings.TrimSpace(jid))
		if !ok || jid == "" || strings.TrimSpace(secret) == "" {
			return nil, fmt.Errorf("entry %d: want jid=secret", i+1)
		}
		if _, dup := out[jid]; dup {
			return nil, fmt.Errorf("%s is listed twice", jid)
		}
		out[jid] = secret
	}
	return out, nil
}

// loadComponents resolves the component connections: WAKEPUSH_COMPONENTS with secrets from
// WAKEPUSH_COMPONENT_SECRETS (falling back to WAKEPUSH_COMPONENT_SECRET), or the single
// connection of WAKEPUSH_COMPONENT_ADDR/JID/SECRET.
func (c *settings) loadComponents(chk *config.Check, l *loaded) {
	var entries []componentEntry
	switch {
	case strings.TrimSpace(c.Components) != "" && c.ComponentAddr != "":
		chk.Add(fmt.Errorf("set either WAKEPUSH_COMPONENTS or WAKEPUSH_COMPONENT_ADDR, not both"))
		return
	case strings.TrimSpace(c.Components) != "":
		var err error
		if entries, err = parseComponents(c.Components); err != nil {
			chk.Add(fmt.Errorf("WAKEPUSH_COMPONENTS: %w", err))
			return
		}
		if c.ComponentJID == "" && len(entries) > 0 {
			// Registrations hand out the first component's JID unless told otherwise.
			c.ComponentJID = entries[0].JID
		}
	case c.ComponentAddr != "":
		chk.Require(c.ComponentJID != "", "WAKEPUSH_COMPONENT_JID is required with WAKEPUSH_COMPONENT_ADDR")
		chk.Require(strings.TrimSpace(c.ComponentSecret) != "", "%s is required with WAKEPUSH_COMPONENT_ADDR", envComponentSecret)
		addr, tlsOpts, err := splitComponentOptions(c.ComponentAddr)
		if err != nil {
			chk.Add(fmt.Errorf("WAKEPUSH_COMPONENT_ADDR: %w", err))
		} else if _, _, err := net.SplitHostPort(addr); err != nil {
			chk.Add(fmt.Errorf("WAKEPUSH_COMPONENT_ADDR=%q: %v", c.ComponentAddr, err))
		}
		entries = []componentEntry{{JID: strings.ToLower(c.ComponentJID), Addr: addr, Count: 1, TLS: tlsOpts}}
	}
	switch c.ComponentReadiness {
	case "none", "any", "all":
	default:
		chk.Add(fmt.Errorf("WAKEPUSH_COMPONENT_READINESS=%q: want none, any or all", c.ComponentReadiness))
	}
	if len(entries) == 0 {
		return
	}
	secrets, err := parseComponentSecrets(c.ComponentSecrets)
	if err != nil {
		chk.Add(fmt.Errorf("%s: %w", envComponentSecrets, err))
	}
	fallback := c.ComponentSecret
	chk.Require(c.ComponentKeepAlive >= time.Second, "WAKEPUSH_COMPONENT_KEEPALIVE must be at least 1s")
	chk.Require(c.ComponentMaxStanza >= 4096, "WAKEPUSH_COMPONENT_MAX_STANZA must be at least 4096 bytes")
	chk.Require(c.ComponentMaxInFlight >= 1, "WAKEPUSH_COMPONENT_MAX_INFLIGHT must be >= 1")
	chk.Require(c.ComponentAdmitWait >= 0 && c.ComponentAdmitWait <= 10*time.Second, "WAKEPUSH_COMPONENT_ADMISSION_WAIT must be in [0, 10s]")
	chk.Require(c.ComponentBackoffMax >= time.Second, "WAKEPUSH_COMPONENT_BACKOFF_MAX must be at least 1s")
	for _, e := range entries {
		secret, ok := secrets[e.JID]
		if !ok {
			secret = fallback
		}
		if strings.TrimSpace(secret) == "" {
			if c.ComponentAddr == "" { // (the single-connection case is reported above)
				chk.Add(fmt.Errorf("no secret for component %s: add it to %s (or set %s)", e.JID, envComponentSecrets, envComponentSecret))
			}
			continue
		}
		tlsCfg, err := e.TLS.config()
		if err != nil {
			chk.Add(fmt.Errorf("component %s@%s: %w", e.JID, e.Addr, err))
			continue
		}
		for i := 1; i <= e.Count; i++ {
			l.Components = append(l.Components, component.Config{
				Addr:          e.Addr,
				JID:           e.JID,
				Secret:        secret,
				TLS:           tlsCfg,
				Connection:    i,
				KeepAlive:     c.ComponentKeepAlive,
				MaxStanzaSize: c.ComponentMaxStanza,
				MaxInFlight:   c.ComponentMaxInFlight,
				AdmissionWait: admissionWait(c.ComponentAdmitWait),
				BackoffMax:    c.ComponentBackoffMax,
			})
		}
	}
	for jid := range secrets {
		if !slices.ContainsFunc(entries, func(e componentEntry) bool { return e.JID == jid }) {
			chk.Add(fmt.Errorf("%s names %s, which is not in WAKEPUSH_COMPONENTS", envComponentSecrets, jid))
		}
	}
}

// loadConventions reads the ad-hoc and fpush convention settings.
func (c *settings) loadConventions(chk *config.Check, l *loaded) {
	platformOf := func(app string) (string, bool) {
		if l.Apps == nil {
			return "", true // already reported
		}
		a, ok := l.Apps.Get(app)
		if !ok {
			return "", false
		}
		return a.Platform, true
	}
	svcs, err := adhoc.ParseServices(c.AdhocApps)
	if err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_ADHOC_APPS: %w", err))
	}
	for svc, app := range svcs {
		p, ok := platformOf(app)
		switch {
		case !ok:
			chk.Add(fmt.Errorf("WAKEPUSH_ADHOC_APPS: app %q is not in the apps file", app))
		case p != "" && p != svc:
			chk.Add(fmt.Errorf("WAKEPUSH_ADHOC_APPS: %s=%s, but the app's platform is %s", svc, app, p))
		}
	}
	l.Adhoc = svcs
	if l.AdhocRate, err = core.ParseRate(c.AdhocRate); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_ADHOC_RATE: %w", err))
	}
	if l.ClientRate, err = core.ParseRate(c.ClientRate); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_INGEST_CLIENT_RATE: %w", err))
	}
	if l.TenantRate, err = core.ParseRate(c.TenantRate); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_INGEST_TENANT_RATE: %w", err))
	}
	if l.Proxies, err = httpapi.ParseTrustedProxies(c.TrustedProxies); err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_INGEST_TRUSTED_PROXIES: %w", err))
	}
	if strings.TrimSpace(c.PushModules) == "" {
		return
	}
	mods, err := core.ParsePushModules(c.PushModules)
	if err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_PUSH_MODULES: %w", err))
	}
	for _, m := range mods {
		if _, ok := platformOf(m.App); !ok {
			chk.Add(fmt.Errorf("WAKEPUSH_PUSH_MODULES: app %q of module %q is not in the apps file", m.App, m.Name))
		}
	}
	sr, err := core.ParseRate(c.TokenSenderRate)
	if err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_PUSH_MODULES_SENDER_RATE: %w", err))
	}
	dr, err := core.ParseRate(c.TokenDeviceRate)
	if err != nil {
		chk.Add(fmt.Errorf("WAKEPUSH_PUSH_MODULES_DEVICE_RATE: %w", err))
	}
	l.Tokens = &core.TokenNodeConfig{Modules: mods, SenderRate: sr, DeviceRate: dr}
}

// admissionWait is the setting as component.Config wants it (0 there means the default).
func admissionWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1 // refused at once
	}
	return d
}
