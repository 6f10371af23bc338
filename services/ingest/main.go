// Command ingest is wakepush's front door (DESIGN §2–§3): XMPP servers' XEP-0357 publishes over an
// XEP-0114 component connection, the HTTP API for registrations, events and receipts. Everything
// accepted is written to Kafka (push.events, push.registrations, push.receipts; acks=all) before it
// is answered. Configuration and the API are in README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/adhoc"
	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
)

func main() { service.Main("ingest", run) }

func run(ctx context.Context, args []string) error {
	// 1. Configuration: flags with environment defaults, secrets from the environment, all
	// validated at once.
	var (
		common service.Flags
		kcfg   kafkax.Config
		cfg    settings
	)
	s := config.New("ingest")
	common.Register(s, "127.0.0.1:18091")
	kcfg.Register(s)
	cfg.register(s)
	err := s.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage was printed
	}
	var chk config.Check
	chk.Add(err) // malformed values keep their defaults: report them with everything else
	common.Validate(&chk)
	kcfg.Validate(&chk)
	deps := cfg.load(&chk)
	if err := chk.Err(); err != nil {
		return err
	}

	// 2. Logging, telemetry, admin endpoints (not ready yet).
	base, err := service.Start(ctx, "ingest", common)
	if err != nil {
		return err
	}
	defer base.Close()
	log := base.Log
	log.Info("configuration", "apps", len(deps.Apps.All()), "node_key", deps.Keys.CurrentKeyID(),
		"event_tenants", deps.Tenants.Len(), "component_connections", len(deps.Components), "component_jid", cfg.ComponentJID,
		"adhoc_services", len(deps.Adhoc), "push_modules", deps.Tokens != nil)

	// 3. Kafka: topics (created, or waited for with WAKEPUSH_KAFKA_CREATE_TOPICS=false), producer,
	// the unregistered-device set.
	if err := kcfg.EnsureTopics(ctx, topics.Events, topics.Registrations, topics.Receipts); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	producer, err := kafkax.NewProducer(&kcfg)
	if err != nil {
		return err
	}
	defer producer.Close()
	devs := devices.New()
	devCtx, stopDevices := context.WithCancel(context.WithoutCancel(ctx))
	devDone := make(chan error, 1)
	go func() { devDone <- devs.Run(devCtx, &kcfg, log) }()
	expiryDone := make(chan struct{})
	go func() { devs.RunExpiry(devCtx, producer, cfg.UnregisteredRetention, log); close(expiryDone) }()
	defer func() { stopDevices(); <-devDone; <-expiryDone }()
	base.Admin.AddCheck(admin.Check{Name: "kafka", Fn: kcfg.Ping})

	ing, err := core.New(core.Config{
		Apps: deps.Apps, Keys: deps.Keys, Producer: producer, Devices: devs,
		ComponentJID: cfg.ComponentJID, ProduceTimeout: cfg.ProduceTimeout, Log: log,
		TokenNodes: deps.Tokens,
	})
	if err != nil {
		return err
	}

	// 4. Serve only once the unregistered set reflects the topic (so no dead device is accepted).
	log.Info("reading push.registrations")
	select {
	case <-devs.CaughtUp():
	case err := <-devDone:
		return fmt.Errorf("registrations consumer: %w", err)
	case <-ctx.Done():
		return nil
	}

	// 5. HTTP API.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	httpSrv := &http.Server{
		Handler: httpapi.New(ing, httpapi.Options{Tenants: deps.Tenants, MaxBody: int64(cfg.MaxBody),
			ClientRate: deps.ClientRate, TrustedProxies: deps.Proxies, TenantRate: deps.TenantRate, Log: log}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      cfg.ProduceTimeout + 15*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// net/http's own messages go through the service's logger and its privacy guard.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(ln) }()
	log.Info("HTTP API listening", "addr", ln.Addr().String())

	// 6. XEP-0114 component connections (optional), each reconnecting on its own.
	compCtx, stopComp := context.WithCancel(ctx)
	defer stopComp()
	comps, err := newComponents(deps.Components, log, common.DrainTimeout, ing, deps.Adhoc, deps.AdhocRate)
	if err != nil {
		return err
	}
	compDone := make(chan struct{})
	var compWG sync.WaitGroup
	for _, comp := range comps {
		compWG.Go(func() { _ = comp.Run(compCtx) })
	}
	go func() { compWG.Wait(); close(compDone) }()
	if check := componentsCheck(comps, cfg.ComponentReadiness); check != nil {
		base.Admin.AddCheck(admin.Check{Name: "components", Fn: check})
	}

	base.Admin.SetReady(true, "")
	log.Info("ready")

	// 7. Run until SIGTERM, or until the HTTP server fails.
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		return fmt.Errorf("HTTP server: %w", err)
	}

	// 8. Drain: not ready, finish HTTP requests and in-flight publishes (answering them), then
	// close the producer (deferred) after everything that produces has stopped.
	log.Info("draining")
	base.Admin.SetReady(false, "draining")
	dctx, cancel := base.DrainContext()
	defer cancel()
	var wg sync.WaitGroup
	var httpErr error
	wg.Go(func() {
		if err := httpSrv.Shutdown(dctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			httpErr = fmt.Errorf("HTTP drain: %w", err)
		}
	})
	wg.Go(func() {
		stopComp() // the component stops reading, answers in-flight publishes, closes its stream
		select {
		case <-compDone:
		case <-dctx.Done():
			log.Warn("component drain did not finish in time")
		}
	})
	wg.Wait()
	if httpErr != nil {
		log.Warn("drain", "err", httpErr)
	}
	return nil
}

// newComponents builds one component client per configured connection. The connections of one
// JID share its ad-hoc command handler (and so its per-account rate limit).
func newComponents(cfgs []component.Config, log *slog.Logger, drain time.Duration, ing *core.Ingester,
	services adhoc.Services, perAccount core.Rate) ([]*component.Component, error) {
	cmds := map[string]*adhoc.Commands{}
	var out []*component.Component
	for _, cc := range cfgs {
		cc.Log = log
		cc.DrainTimeout = drain
		if len(services) > 0 && cmds[cc.JID] == nil {
			cmds[cc.JID] = adhoc.New(ing, cc.JID, services, perAccount)
		}
		comp, err := newComponentWith(cc, ing, cmds[cc.JID])
		if err != nil {
			return nil, err
		}
		out = append(out, comp)
	}
	return out, nil
}

// componentsCheck is the readiness check of WAKEPUSH_COMPONENT_READINESS (nil for none or
// without components): any = at least one connection is up, all = every connection is up.
func componentsCheck(comps []*component.Component, mode string) func(context.Context) error {
	if len(comps) == 0 || (mode != "any" && mode != "all") {
		return nil
	}
	return func(context.Context) error {
		var down []string
		for _, c := range comps {
			if !c.Connected() {
				down = append(down, c.Name())
			}
		}
		if len(down) == 0 || (mode == "any" && len(down) < len(comps)) {
			return nil
		}
		return fmt.Errorf("not connected: %s", strings.Join(down, ", "))
	}
}

// newComponent is the XEP-0114 component with ingest's IQ handlers: XEP-0357 publishes and, when
// services are configured, the p2/Conversations ad-hoc commands (disco#info and pings are
// answered by the component itself).
func newComponent(cc component.Config, ing *core.Ingester, services adhoc.Services, perAccount core.Rate) (*component.Component, error) {
	var cmds *adhoc.Commands
	if len(services) > 0 {
		cmds = adhoc.New(ing, cc.JID, services, perAccount)
	}
	return newComponentWith(cc, ing, cmds)
}

// newComponentWith is newComponent with the ad-hoc command handler (nil: no commands).
func newComponentWith(cc component.Config, ing *core.Ingester, cmds *adhoc.Commands) (*component.Component, error) {
	if cmds != nil && cc.Features == nil {
		cc.Features = []string{xmpp.NSDiscoInfo, xmpp.NSDiscoItem, xmpp.NSPing, xmpp.NSPush, adhoc.NSCommands}
	}
	source := core.SourceName(wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT)
	cc.Overloaded = func(ctx context.Context, kind string) {
		if kind == "publish" {
			ing.Metrics().Publish(ctx, source, core.CodeOverloaded)
		}
	}
	comp, err := component.New(cc)
	if err != nil {
		return nil, err
	}
	comp.Handle("set", xmpp.NSPubSub, "pubsub", "publish", true, xep0357.NewHandler(ing).HandlePublish)
	if cmds != nil {
		comp.Handle("set", adhoc.NSCommands, "command", "adhoc", true, cmds.HandleCommand)
		comp.Handle("get", xmpp.NSDiscoItem, "query", "disco_items", false, cmds.HandleDiscoItems)
	}
	return comp, nil
}
