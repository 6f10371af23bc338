package main

import (
	"context"
	"log/slog"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
	"github.com/wakepush/wakepush/services/sender/internal/apns"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/engine"
	"github.com/wakepush/wakepush/services/sender/internal/fcm"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// settings is the sender's configuration (README.md has the table).
type settings struct {
	Service        service.Flags
	Kafka          kafkax.Config
	AppsFile       string
	Apps           *apps.Set
	Group          string
	Concurrency    int
	MaxAttempts    int
	RetryMin       time.Duration
	RetryMax       time.Duration
	ConfigPause    time.Duration
	CatchUpTimeout time.Duration
	SessionTimeout time.Duration
	RegistryRetain time.Duration
	DedupWindow    time.Duration
	DedupSize      int
	APNs           apns.Options
	FCM            fcm.Options
}

func loadSettings(args []string) (*settings, error) {
	var c settings
	s := config.New("sender")
	c.Service.Register(s, "127.0.0.1:18093")
	c.Kafka.Register(s)
	s.String(&c.AppsFile, "apps-file", "WAKEPUSH_APPS_FILE", "", "the apps file: apps with their APNs topic, team, key and push type, or FCM project and service account")
	s.String(&c.Group, "sender-group", "WAKEPUSH_SENDER_GROUP", "wakepush-sender", "Kafka consumer group id on push.wakes")
	s.Int(&c.Concurrency, "sender-concurrency", "WAKEPUSH_SENDER_CONCURRENCY", 256,
		"wakes handled at once (in flight to the provider, backing off, or waiting for a paused app)")
	s.Int(&c.MaxAttempts, "sender-max-attempts", "WAKEPUSH_SENDER_MAX_ATTEMPTS", 5,
		"provider attempts of a wake that keeps failing transiently before it goes to push.wakes.dlq")
	s.Duration(&c.RetryMin, "sender-retry-min", "WAKEPUSH_SENDER_RETRY_MIN", time.Second, "backoff after the first failed attempt (doubles per attempt, jittered)")
	s.Duration(&c.RetryMax, "sender-retry-max", "WAKEPUSH_SENDER_RETRY_MAX", 30*time.Second, "longest backoff between attempts")
	s.Duration(&c.ConfigPause, "sender-config-pause", "WAKEPUSH_SENDER_CONFIG_PAUSE", time.Minute,
		"how long an app/environment is paused after a configuration error before one wake probes it again")
	s.Duration(&c.CatchUpTimeout, "sender-catchup-timeout", "WAKEPUSH_SENDER_CATCHUP_TIMEOUT", 5*time.Second,
		"bound of one wait for the registration table to catch up (for a wake naming an unknown device; retried)")
	s.Duration(&c.SessionTimeout, "sender-session-timeout", "WAKEPUSH_SENDER_SESSION_TIMEOUT", 30*time.Second,
		"consumer group session timeout: how long a dead instance keeps its partitions")
	s.Duration(&c.RegistryRetain, "sender-registry-retain", "WAKEPUSH_SENDER_REGISTRY_RETAIN", registry.DefaultRetain,
		"how long the registrations of a partition taken away by a rebalance are kept in case it comes back (0: dropped at once)")
	s.Duration(&c.DedupWindow, "sender-dedup-window", "WAKEPUSH_SENDER_DEDUP_WINDOW", 15*time.Minute,
		"at start, push.deliveries written this long ago are read to learn which wakes were delivered")
	s.Int(&c.DedupSize, "sender-dedup-size", "WAKEPUSH_SENDER_DEDUP_SIZE", 500_000, "delivered wake ids remembered (oldest forgotten first)")
	c.APNs = apns.DefaultOptions
	s.Duration(&c.APNs.Timeout, "sender-apns-timeout", "WAKEPUSH_SENDER_APNS_TIMEOUT", apns.DefaultOptions.Timeout, "deadline of one APNs request")
	s.Duration(&c.APNs.Expiry.Alert, "sender-apns-expiration", "WAKEPUSH_SENDER_APNS_EXPIRATION", apns.DefaultExpiry.Alert,
		"apns-expiration of alert and background wakes, from the time of sending")
	s.Duration(&c.APNs.Expiry.VoIP, "sender-apns-voip-expiration", "WAKEPUSH_SENDER_APNS_VOIP_EXPIRATION", apns.DefaultExpiry.VoIP,
		"apns-expiration of VoIP (call) wakes, from the time of sending")
	s.Duration(&c.APNs.ReadIdleTimeout, "sender-apns-read-idle-timeout", "WAKEPUSH_SENDER_APNS_READ_IDLE_TIMEOUT", apns.DefaultOptions.ReadIdleTimeout,
		"send an HTTP/2 PING on an APNs connection silent for this long")
	s.Duration(&c.APNs.PingTimeout, "sender-apns-ping-timeout", "WAKEPUSH_SENDER_APNS_PING_TIMEOUT", apns.DefaultOptions.PingTimeout,
		"close an APNs connection whose PING is not answered within this")
	s.Duration(&c.APNs.IdleConnTimeout, "sender-apns-idle-conn-timeout", "WAKEPUSH_SENDER_APNS_IDLE_CONN_TIMEOUT", apns.DefaultOptions.IdleConnTimeout,
		"close an APNs connection unused for this long")
	s.Int(&c.APNs.Connections, "sender-apns-connections", "WAKEPUSH_SENDER_APNS_CONNECTIONS", apns.DefaultOptions.Connections,
		"HTTP/2 connections per app and environment, used round-robin")
	c.FCM = fcm.DefaultOptions
	s.Duration(&c.FCM.Timeout, "sender-fcm-timeout", "WAKEPUSH_SENDER_FCM_TIMEOUT", fcm.DefaultOptions.Timeout, "deadline of one FCM send (OAuth2 token fetch included)")
	s.Duration(&c.FCM.TTL, "sender-fcm-ttl", "WAKEPUSH_SENDER_FCM_TTL", fcm.DefaultOptions.TTL, "android.ttl of ordinary wakes")
	s.Duration(&c.FCM.UrgentTTL, "sender-fcm-urgent-ttl", "WAKEPUSH_SENDER_FCM_URGENT_TTL", fcm.DefaultOptions.UrgentTTL, "android.ttl of urgent (call) wakes")
	if err := s.Parse(args); err != nil {
		return nil, err
	}

	var chk config.Check
	c.Service.Validate(&chk)
	c.Kafka.Validate(&chk)
	chk.Require(c.Group != "", "WAKEPUSH_SENDER_GROUP is required")
	chk.Require(c.Concurrency >= 1 && c.Concurrency <= 100_000, "WAKEPUSH_SENDER_CONCURRENCY must be in [1, 100000], got %d", c.Concurrency)
	chk.Require(c.MaxAttempts >= 1 && c.MaxAttempts <= 100, "WAKEPUSH_SENDER_MAX_ATTEMPTS must be in [1, 100], got %d", c.MaxAttempts)
	chk.Require(c.RetryMin > 0, "WAKEPUSH_SENDER_RETRY_MIN must be > 0")
	chk.Require(c.RetryMax >= c.RetryMin, "WAKEPUSH_SENDER_RETRY_MAX must be >= WAKEPUSH_SENDER_RETRY_MIN")
	chk.Require(c.ConfigPause > 0, "WAKEPUSH_SENDER_CONFIG_PAUSE must be > 0")
	chk.Require(c.CatchUpTimeout > 0, "WAKEPUSH_SENDER_CATCHUP_TIMEOUT must be > 0")
	chk.Require(c.SessionTimeout >= 2*time.Second, "WAKEPUSH_SENDER_SESSION_TIMEOUT must be >= 2s")
	chk.Require(c.RegistryRetain >= 0, "WAKEPUSH_SENDER_REGISTRY_RETAIN must not be negative")
	chk.Require(c.DedupWindow > 0, "WAKEPUSH_SENDER_DEDUP_WINDOW must be > 0")
	chk.Require(c.DedupSize >= 1, "WAKEPUSH_SENDER_DEDUP_SIZE must be >= 1")
	chk.Require(c.APNs.Timeout > 0, "WAKEPUSH_SENDER_APNS_TIMEOUT must be > 0")
	chk.Require(c.APNs.Expiry.Alert > 0, "WAKEPUSH_SENDER_APNS_EXPIRATION must be > 0 (apns2 cannot send 0)")
	chk.Require(c.APNs.Expiry.VoIP > 0, "WAKEPUSH_SENDER_APNS_VOIP_EXPIRATION must be > 0 (apns2 cannot send 0)")
	chk.Require(c.APNs.ReadIdleTimeout > 0, "WAKEPUSH_SENDER_APNS_READ_IDLE_TIMEOUT must be > 0")
	chk.Require(c.APNs.PingTimeout > 0, "WAKEPUSH_SENDER_APNS_PING_TIMEOUT must be > 0")
	chk.Require(c.APNs.IdleConnTimeout > 0, "WAKEPUSH_SENDER_APNS_IDLE_CONN_TIMEOUT must be > 0")
	chk.Require(c.APNs.Connections >= 1 && c.APNs.Connections <= 64, "WAKEPUSH_SENDER_APNS_CONNECTIONS must be in [1, 64], got %d", c.APNs.Connections)
	chk.Require(c.FCM.Timeout > 0, "WAKEPUSH_SENDER_FCM_TIMEOUT must be > 0")
	chk.Require(c.FCM.TTL >= time.Second && c.FCM.UrgentTTL >= time.Second, "WAKEPUSH_SENDER_FCM_TTL and _URGENT_TTL must be >= 1s")
	if c.AppsFile == "" {
		chk.Require(false, "WAKEPUSH_APPS_FILE is required")
	} else if set, err := apps.Load(c.AppsFile); err != nil {
		chk.Add(err)
	} else {
		c.Apps = set
		for _, a := range set.All() {
			apns.Validate(a, &chk)
			fcm.Validate(a, &chk)
		}
	}
	if err := chk.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// providers builds the push providers by platform: APNs and FCM.
func (c *settings) providers() (map[wakepushv1.Platform]provider.Provider, func(), error) {
	pool, err := apns.New(c.Apps.All(), c.APNs)
	if err != nil {
		return nil, nil, err
	}
	fpool, err := fcm.New(c.Apps.All(), c.FCM)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return map[wakepushv1.Platform]provider.Provider{
		wakepushv1.Platform_PLATFORM_APNS: pool,
		wakepushv1.Platform_PLATFORM_FCM:  fpool,
	}, func() { pool.Close(); fpool.Close() }, nil
}

func (c *settings) engine(log *slog.Logger, table *registry.Table, prod engine.Producer, delivered *dedup.Set, providers map[wakepushv1.Platform]provider.Provider) (*engine.Engine, error) {
	return engine.New(engine.Config{
		Group:          c.Group,
		Concurrency:    c.Concurrency,
		MaxAttempts:    c.MaxAttempts,
		RetryMin:       c.RetryMin,
		RetryMax:       c.RetryMax,
		ConfigPause:    c.ConfigPause,
		CatchUpTimeout: c.CatchUpTimeout,
		DrainTimeout:   c.Service.DrainTimeout,
	}, engine.Deps{Log: log, Apps: c.Apps, Registry: table, Producer: prod, Dedup: delivered, Providers: providers})
}

// readyWhenLoaded marks the service ready once the first assignment's registrations are loaded.
func readyWhenLoaded(ctx context.Context, table *registry.Table, partitions []int, base *service.Base) {
	base.Admin.SetReady(false, "loading the registrations of the assigned partitions")
	if err := table.WaitLoaded(ctx, partitions); err != nil {
		return // ctx ended
	}
	if ctx.Err() == nil {
		base.Admin.SetReady(true, "")
		base.Log.Info("joined the consumer group, registrations loaded: ready", "partitions", len(partitions), "devices", table.Len())
	}
}
