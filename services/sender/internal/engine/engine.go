// Package engine is the sender's delivery loop: it consumes push.wakes in the sender's consumer
// group, handles up to Concurrency wakes at once, pushes each through its platform's provider,
// acts on the classified answer (retry with backoff, pause a misconfigured app, unregister a
// dead token, dead-letter after the last attempt), writes a Delivery record per attempt, and
// commits a partition's offset only up to the wakes whose outcome Kafka has acknowledged.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/sender/internal/commit"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// Stage names the sender in dead letters.
const Stage = "sender"

// processSpanName is the consumer span's name (messaging conventions: operation and topic).
const processSpanName = "process " + topics.Wakes

// consumerSpan is the process span's start option, made once: the variadic slice of a call
// through the Tracer interface is allocated on every call otherwise.
var consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

// Reasons of records the engine writes without asking a provider.
const (
	ReasonDuplicate           = "duplicate_wake"
	ReasonUnknownDevice       = "unknown_device"
	ReasonUnregistered        = "unregistered"
	ReasonUnknownApp          = "unknown_app"
	ReasonUnsupportedPlatform = "unsupported_platform"
	ReasonUndecodable         = "undecodable"
)

// Config tunes the engine.
type Config struct {
	// Group is the consumer group (for span attributes; the reader carries the real one).
	Group string
	// Concurrency bounds the wakes handled at once.
	Concurrency int
	// MaxAttempts bounds the provider attempts of a wake that keep failing transiently;
	// the last failure dead-letters it. Configuration pauses do not count.
	MaxAttempts int
	// RetryMin and RetryMax bound the exponential backoff between attempts.
	RetryMin, RetryMax time.Duration
	// ConfigPause is how long an app/environment is paused after a configuration error.
	ConfigPause time.Duration
	// CatchUpTimeout bounds one wait for the registration table to catch up.
	CatchUpTimeout time.Duration
	// DrainTimeout bounds how long in-flight pushes may finish after the run context ends.
	DrainTimeout time.Duration
	// CommitInterval is the least time between two offset commits.
	CommitInterval time.Duration
}

// Registry is the registration table (package registry). Every call names the partition of the
// wake it is for: a device's registrations live in the same partition of push.registrations as
// its wakes in push.wakes, and the table holds only the partitions this instance owns.
type Registry interface {
	Get(partition int, deviceID string) (registry.Device, bool)
	Apply(partition int, reg *wakepushv1.Registration)
	WaitCaughtUp(ctx context.Context, partition int) error
	Len() int
}

// Producer writes records and returns once Kafka acknowledged them (kafkax.Producer).
type Producer interface {
	Produce(ctx context.Context, recs ...kafkax.Record) error
}

// Reader is a consumer-group reader of push.wakes (kafka-go's *kafka.Reader from
// kafkax.NewReader).
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Deps are the engine's collaborators.
type Deps struct {
	Log       *slog.Logger
	Apps      *apps.Set
	Registry  Registry
	Producer  Producer
	Dedup     *dedup.Set
	Providers map[wakepushv1.Platform]provider.Provider
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine delivers wakes.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	apps      *apps.Set
	reg       Registry
	prod      Producer
	dedup     *dedup.Set
	providers map[wakepushv1.Platform]provider.Provider
	now       func() time.Time
	tracer    trace.Tracer
	metrics   *metrics
	breaker   *breaker
	holds     *holds
}

// New returns an engine.
func New(cfg Config, d Deps) (*Engine, error) {
	if cfg.Concurrency < 1 || cfg.MaxAttempts < 1 || cfg.RetryMin <= 0 || cfg.RetryMax < cfg.RetryMin ||
		cfg.ConfigPause <= 0 || cfg.CatchUpTimeout <= 0 || cfg.DrainTimeout <= 0 {
		return nil, fmt.Errorf("engine: invalid config %+v", cfg)
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 100 * time.Millisecond
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	e := &Engine{
		cfg: cfg, log: d.Log, apps: d.Apps, reg: d.Registry, prod: d.Producer, dedup: d.Dedup,
		providers: d.Providers, now: d.Now,
		tracer:  otel.Tracer("github.com/wakepush/wakepush/services/sender"),
		breaker: newBreaker(cfg.ConfigPause, d.Now),
		holds:   newHolds(d.Now),
	}
	m, err := newMetrics(e)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	return e, nil
}

// Run consumes r until ctx ends or r fails, then drains: it stops fetching, lets in-flight
// pushes finish and record their outcome (at most DrainTimeout; wakes still waiting for a
// backoff or a paused app are abandoned and will be redelivered), and commits what finished.
// The caller closes r afterwards.
func (e *Engine) Run(ctx context.Context, r Reader) error {
	// Pushes and their records continue past ctx (until the drain deadline); waits do not.
	workCtx, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	tracker := commit.New(topics.Wakes)
	kick := make(chan struct{}, 1)
	commitCtx, stopCommits := context.WithCancel(context.WithoutCancel(ctx))
	commitsDone := make(chan struct{})
	go func() {
		defer close(commitsDone)
		e.commitLoop(commitCtx, r, tracker, kick)
	}()

	// A fixed pool of Concurrency workers: a goroutine per wake would grow a fresh stack for
	// every push (apns2 and HTTP/2 call deep), ~17 % of the engine's CPU (BenchmarkEngine).
	type work struct {
		msg kafka.Message
		tok commit.Token
	}
	jobs := make(chan work)
	var wg sync.WaitGroup
	for range e.cfg.Concurrency {
		wg.Go(func() {
			for w := range jobs {
				if e.handle(ctx, workCtx, &w.msg) {
					e.finished(tracker, w.tok, kick)
				}
				e.metrics.inflight.Add(struct{}{}, -1)
			}
		})
	}
	runErr := e.fetchLoop(ctx, r, func(msg kafka.Message) bool {
		tok := tracker.Start(msg.Partition, msg.Offset)
		e.metrics.inflight.Add(struct{}{}, 1)
		select {
		case jobs <- work{msg, tok}:
			return true
		case <-ctx.Done():
			// Not handled: it stays pending, so nothing from it on is committed; read again
			// after the restart.
			e.metrics.inflight.Add(struct{}{}, -1)
			return false
		}
	})
	close(jobs)

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(e.cfg.DrainTimeout):
		e.log.Warn("drain timeout: abandoning in-flight wakes (they will be redelivered)", "pending", tracker.Pending())
		abandon()
		<-finished
	}
	stopCommits()
	<-commitsDone
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.commit(cctx, r, tracker); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("final commit: %w", err))
	}
	return runErr
}

// fetchLoop fetches wakes and hands each to start, which waits for a free worker (so at most
// Concurrency wakes are in flight and one more in hand). It returns nil when ctx ends, or the
// reader's error when it is closed.
func (e *Engine) fetchLoop(ctx context.Context, r Reader, start func(kafka.Message) bool) error {
	backoff := e.cfg.RetryMin
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, io.EOF):
				return fmt.Errorf("fetch wakes: reader closed: %w", err)
			}
			e.log.Error("fetch wakes", "err", err)
			if sleepOr(ctx, backoff, nil) != nil {
				return nil
			}
			backoff = min(2*backoff, e.cfg.RetryMax)
			continue
		}
		backoff = e.cfg.RetryMin
		e.metrics.fetched(&msg)
		if !start(msg) {
			return nil
		}
	}
}

// finished marks a recorded wake done and wakes the commit loop.
func (e *Engine) finished(t *commit.Tracker, tok commit.Token, kick chan<- struct{}) {
	t.Done(tok)
	select {
	case kick <- struct{}{}:
	default:
	}
}

// commitLoop commits finished offsets when kicked, at most once per CommitInterval, and again
// after a failed commit without waiting for a kick.
func (e *Engine) commitLoop(ctx context.Context, r Reader, tracker *commit.Tracker, kick <-chan struct{}) {
	failed := false
	for {
		if !failed {
			select {
			case <-kick:
			case <-ctx.Done():
				return
			}
		}
		err := e.commit(ctx, r, tracker)
		failed = err != nil && ctx.Err() == nil
		if failed {
			e.log.Warn("commit offsets (retrying)", "err", err)
		}
		if sleepOr(ctx, e.cfg.CommitInterval, nil) != nil {
			return
		}
	}
}

func (e *Engine) commit(ctx context.Context, r Reader, tracker *commit.Tracker) error {
	msgs := tracker.Committable()
	if len(msgs) == 0 {
		return nil
	}
	if err := r.CommitMessages(ctx, msgs...); err != nil {
		e.metrics.commitErrors.Add(ctx, 1)
		return err
	}
	tracker.Committed(msgs)
	return nil
}

// job is one wake being handled.
type job struct {
	ctx  context.Context // work context with the process span; ends at the drain deadline
	stop context.Context // the run context; waits end with it
	msg  *kafka.Message
	wake *wakepushv1.Wake
	span trace.Span
	// Set once the registration is resolved.
	dev    registry.Device
	app    *apps.App
	target provider.Target
}

// handle handles one wake and reports whether its outcome is durably recorded (so its offset
// may be committed). false means abandoned at shutdown: the wake will be read again.
func (e *Engine) handle(stop, work context.Context, msg *kafka.Message) bool {
	// Attributes only on a recorded span: building them for an unsampled one cost more than
	// the span (the standard samplers decide on the parent and the trace id, not on them).
	ctx, span := e.tracer.Start(kafkax.Extract(work, msg), processSpanName, consumerSpan...)
	defer span.End()
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(kafkax.ConsumeAttributes(e.cfg.Group, msg)...)
	}
	j := &job{ctx: ctx, stop: stop, msg: msg, span: span}

	w, err := decodeWake(kafkax.Header(msg, records.HeaderSchema), msg.Value)
	if err != nil {
		e.log.ErrorContext(ctx, "undecodable wake: dead-lettering", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		span.SetStatus(codes.Error, "undecodable")
		e.metrics.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("app", ""), attribute.String("reason", ReasonUndecodable)))
		return e.record(j, e.deadLetter(j, ReasonUndecodable+": "+err.Error()))
	}
	j.wake = w
	if c := w.GetCreatedAt(); c != nil {
		e.metrics.wakeAge.Record(ctx, max(e.now().Sub(c.AsTime()).Seconds(), 0))
	}
	if recording {
		span.SetAttributes(attribute.String("wakepush.wake_id", w.GetId()), attribute.String("wakepush.device_id", w.GetDeviceId()))
	}

	delivered, release, err := e.dedup.Claim(stop, w.GetId())
	if err != nil {
		return false
	}
	defer release()
	if delivered {
		return e.drop(j, ReasonDuplicate)
	}
	switch reason, ok := e.resolve(j); {
	case !ok:
		return false
	case reason != "":
		return e.drop(j, reason)
	}
	return e.deliver(j)
}

// resolve finds the wake's device, app and provider. It returns why the wake cannot be sent
// (empty when it can), and false when the run ended while waiting.
func (e *Engine) resolve(j *job) (dropReason string, ok bool) {
	id := j.wake.GetDeviceId()
	dev, known := e.reg.Get(j.msg.Partition, id)
	if !known {
		// Registrations are written before the events they enable: once the table has read
		// everything written until now, a device it does not know is unknown.
		if !e.catchUp(j, j.stop) {
			return "", false
		}
		dev, known = e.reg.Get(j.msg.Partition, id)
	}
	switch {
	case !known:
		return ReasonUnknownDevice, true
	case !dev.Active():
		return ReasonUnregistered, true
	}
	app, found := e.apps.Get(dev.App)
	if !found {
		e.log.ErrorContext(j.ctx, "wake for an app not in the apps file", "app", dev.App)
		return ReasonUnknownApp, true
	}
	if _, found := e.providers[app.ProtoPlatform()]; !found {
		e.log.ErrorContext(j.ctx, "no provider for the app's platform", "app", app.ID, "platform", app.Platform)
		return ReasonUnsupportedPlatform, true
	}
	j.dev, j.app = dev, app
	j.target = provider.Target{App: app, DeviceID: id, Token: dev.Token, Environment: dev.Environment}
	return "", true
}

// catchUp waits until the registration table has caught up, retrying while Kafka is slow; false
// means within ended first (the run context before a push, the drain deadline after one).
func (e *Engine) catchUp(j *job, within context.Context) bool {
	for {
		ctx, cancel := context.WithTimeout(within, e.cfg.CatchUpTimeout)
		err := e.reg.WaitCaughtUp(ctx, j.msg.Partition)
		cancel()
		if err == nil {
			return true
		}
		if within.Err() != nil {
			return false
		}
		e.log.WarnContext(j.ctx, "registration table is not catching up (retrying)", "err", err)
	}
}

// deliver pushes until an outcome is final.
func (e *Engine) deliver(j *job) bool {
	prov := e.providers[j.app.ProtoPlatform()]
	gateKey := j.app.ID + "/" + environmentName(j.dev.Environment)
	failures := 0
	switchedEnvironment := false
	for attempt := uint32(1); ; attempt++ {
		if !e.waitDevice(j) {
			return false
		}
		probe, err := e.breaker.wait(j.stop, gateKey)
		if err != nil {
			return false
		}
		res := prov.Send(j.ctx, j.target, j.wake)
		configErr := res.Action == provider.Configuration
		abandoned := j.ctx.Err() != nil
		e.breaker.report(gateKey, probe, configErr, abandoned, res.Reason)
		if abandoned {
			return false
		}
		e.observe(j, res)

		switch res.Action {
		case provider.Accepted:
			e.dedup.Add(j.wake.GetId())
			return e.record(j, e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED, attempt, res))

		case provider.Permanent:
			if !e.unregister(j, attempt, res) {
				return false
			}
			// The device may still be active in the other environment (a registration of the
			// token as sandbox and another as production: only the one the provider refused
			// ends). Then this wake goes there, once.
			dev, ok := e.reg.Get(j.msg.Partition, j.target.DeviceID)
			if switchedEnvironment || !ok || !dev.Active() || dev.Token != j.target.Token || sameEnvironment(dev.Environment, j.target.Environment) {
				return true
			}
			switchedEnvironment = true
			j.dev, j.target.Environment = dev, dev.Environment
			gateKey = j.app.ID + "/" + environmentName(dev.Environment)
			e.log.InfoContext(j.ctx, "token dead in one environment, device active in the other: sending there", "app", j.app.ID,
				"environment", environmentName(dev.Environment))

		case provider.Drop:
			e.log.WarnContext(j.ctx, "provider rejected the wake for good", "app", j.app.ID, "status", res.StatusCode, "reason", res.Reason)
			return e.record(j, e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT, attempt, res))

		case provider.Configuration:
			e.metrics.configErrors.Add(j.ctx, 1, metric.WithAttributes(attribute.String("app", j.app.ID),
				attribute.String("environment", environmentName(j.dev.Environment)), attribute.String("reason", res.Reason)))
			e.log.ErrorContext(j.ctx, "provider configuration error: pausing the app", "app", j.app.ID,
				"environment", environmentName(j.dev.Environment), "status", res.StatusCode, "reason", res.Reason,
				"pause", e.cfg.ConfigPause, "err", res.Err)
			if !e.record(j, e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION, attempt, res)) {
				return false
			}

		default: // provider.Retry
			failures++
			if failures >= e.cfg.MaxAttempts {
				reason := fmt.Sprintf("%s: %s after %d attempts", j.app.Platform, describe(res), failures)
				e.log.WarnContext(j.ctx, "attempts exhausted: dead-lettering", "app", j.app.ID, "reason", reason)
				j.span.SetStatus(codes.Error, "dead-lettered")
				e.metrics.deadLetters.Add(j.ctx, 1, metric.WithAttributes(attribute.String("app", j.app.ID), attribute.String("reason", res.Reason)))
				return e.record(j,
					e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DEAD_LETTERED, attempt, res),
					e.deadLetter(j, reason))
			}
			e.metrics.retries.Add(j.ctx, 1, metric.WithAttributes(attribute.String("app", j.app.ID), attribute.String("reason", res.Reason)))
			e.log.DebugContext(j.ctx, "attempt failed, will retry", "app", j.app.ID, "attempt", attempt,
				"status", res.StatusCode, "reason", res.Reason, "err", res.Err)
			if !e.record(j, e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY, attempt, res)) {
				return false
			}
			wait := e.backoff(failures)
			if ra := min(res.RetryAfter, maxRetryAfter); ra > wait {
				wait = ra // the provider said when; earlier would only be refused again
			}
			if res.DeviceRateLimited {
				e.holds.hold(j.target.DeviceID, e.now().Add(wait))
			}
			if sleepOr(j.stop, wait, nil) != nil {
				return false
			}
		}
	}
}

// waitDevice waits while the device is held after a 429.
func (e *Engine) waitDevice(j *job) bool {
	for {
		d := e.holds.remaining(j.target.DeviceID)
		if d <= 0 {
			return true
		}
		if sleepOr(j.stop, d, nil) != nil {
			return false
		}
	}
}

// maxRetryAfter bounds a provider's Retry-After, so a bogus header cannot park a wake for days.
const maxRetryAfter = 10 * time.Minute

// backoff is the wait after the n-th failure: exponential from RetryMin, capped at RetryMax,
// with jitter over its upper half so synchronized failures spread out.
func (e *Engine) backoff(n int) time.Duration {
	d := e.cfg.RetryMin << min(n-1, 30)
	if d <= 0 || d > e.cfg.RetryMax {
		d = e.cfg.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// unregister handles a dead token: every registration of the device in the environment the
// push went to is unregistered, unless it is at least as new as the provider's "invalid since"
// (registered or renewed meanwhile). Only a provider's answer ends registrations this way;
// clients end only their own.
func (e *Engine) unregister(j *job, attempt uint32, res provider.Result) bool {
	del := e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT, attempt, res)
	// Read every registration written until now first: a re-registration may be on its way.
	if !e.catchUp(j, j.ctx) {
		return false
	}
	reason := j.app.Platform + ":" + res.Reason
	dev, ok := e.reg.Get(j.msg.Partition, j.target.DeviceID)
	var regs []*wakepushv1.Registration
	if ok && dev.Active() && dev.Token == j.target.Token {
		regs = registry.Unregistrations(j.target.DeviceID, dev, j.target.Environment, reason, res.InvalidAt, e.now())
	}
	if len(regs) == 0 {
		e.log.InfoContext(j.ctx, "token declared dead, but the device's registrations changed since: keeping them",
			"app", j.app.ID, "reason", res.Reason, "invalid_at", res.InvalidAt)
		return e.record(j, del)
	}
	recs := []kafkax.Record{del}
	for _, r := range regs {
		recs = append(recs, kafkax.Record{Ctx: j.ctx, Topic: topics.Registrations, Key: records.RegistrationKey(r.GetDeviceId(), r.GetRegistrationId()), Msg: r})
	}
	if !e.record(j, recs...) {
		return false
	}
	for _, r := range regs {
		e.reg.Apply(j.msg.Partition, r)
	}
	e.metrics.unregistered.Add(j.ctx, 1, metric.WithAttributes(attribute.String("app", j.app.ID), attribute.String("reason", reason)))
	e.log.InfoContext(j.ctx, "device unregistered: token declared dead", "app", j.app.ID, "reason", reason, "registrations", len(regs))
	return true
}

// sameEnvironment treats UNSPECIFIED as production (as the providers do).
func sameEnvironment(a, b wakepushv1.Environment) bool {
	return (a == wakepushv1.Environment_ENVIRONMENT_SANDBOX) == (b == wakepushv1.Environment_ENVIRONMENT_SANDBOX)
}

// drop records that the wake was not sent.
func (e *Engine) drop(j *job, reason string) bool {
	e.log.DebugContext(j.ctx, "wake dropped", "reason", reason)
	return e.record(j, e.delivery(j, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED, 0, provider.Result{Reason: reason}))
}

func (e *Engine) observe(j *job, res provider.Result) {
	e.metrics.latency.Record(j.ctx, res.Latency.Seconds(), e.metrics.latencyOpts.Get(latencyLabels{j.app.ID, j.app.Platform, res.Action.String()}))
	if j.span.IsRecording() {
		j.span.AddEvent("provider answer", trace.WithAttributes(
			attribute.Int("status", res.StatusCode), attribute.String("reason", res.Reason), attribute.String("action", res.Action.String())))
	}
}

// delivery builds the Delivery record of an attempt (0: not attempted).
func (e *Engine) delivery(j *job, outcome wakepushv1.DeliveryOutcome, attempt uint32, res provider.Result) kafkax.Record {
	w := j.wake
	d := &wakepushv1.Delivery{
		Id:                records.NewID(),
		CreatedAt:         records.Timestamp(e.now()),
		WakeId:            w.GetId(),
		DeviceId:          w.GetDeviceId(),
		App:               w.GetApp(),
		Platform:          w.GetPlatform(),
		Outcome:           outcome,
		Attempt:           attempt,
		StatusCode:        uint32(res.StatusCode),
		Reason:            res.Reason,
		ProviderMessageId: res.MessageID,
		WakeCreatedAt:     w.GetCreatedAt(),
	}
	if j.app != nil {
		d.App, d.Platform, d.Environment = j.app.ID, j.app.ProtoPlatform(), j.dev.Environment
	}
	if attempt > 0 {
		d.ProviderLatency = durationpb.New(res.Latency)
	}
	return kafkax.Record{Ctx: j.ctx, Topic: topics.Deliveries, Key: w.GetDeviceId(), Msg: d}
}

// deadLetter builds the push.wakes.dlq record of the job's wake.
func (e *Engine) deadLetter(j *job, reason string) kafkax.Record {
	return kafkax.Record{Ctx: j.ctx, Topic: topics.WakesDLQ, Key: string(j.msg.Key), Msg: &wakepushv1.DeadLetter{
		Id:        records.NewID(),
		CreatedAt: records.Timestamp(e.now()),
		Topic:     j.msg.Topic,
		Partition: int32(j.msg.Partition),
		Offset:    j.msg.Offset,
		Stage:     Stage,
		Reason:    reason,
		Value:     j.msg.Value,
	}}
}

// record writes recs, retrying until Kafka acknowledges them or the drain deadline passes
// (false: abandoned, the wake will be read again).
func (e *Engine) record(j *job, recs ...kafkax.Record) bool {
	backoff := e.cfg.RetryMin
	for {
		err := e.prod.Produce(j.ctx, recs...)
		if err == nil {
			for _, r := range recs {
				if d, ok := r.Msg.(*wakepushv1.Delivery); ok {
					outcome := outcomeName(d.GetOutcome())
					e.metrics.deliveries.Add(deliveryLabels{d.GetApp(), platformName(d.GetPlatform()), outcome, d.GetReason()}, 1)
					j.span.SetAttributes(attribute.String("wakepush.outcome", outcome))
				}
			}
			return true
		}
		e.metrics.recordErrors.Add(j.ctx, 1)
		if j.ctx.Err() != nil {
			return false
		}
		e.log.WarnContext(j.ctx, "write outcome records (retrying)", "err", err)
		if sleepOr(j.ctx, backoff, nil) != nil {
			return false
		}
		backoff = min(2*backoff, e.cfg.RetryMax)
	}
}

func describe(res provider.Result) string {
	if res.StatusCode == 0 {
		return res.Reason
	}
	return fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
}

func environmentName(env wakepushv1.Environment) string {
	if env == wakepushv1.Environment_ENVIRONMENT_SANDBOX {
		return "sandbox"
	}
	return "production"
}

func platformName(p wakepushv1.Platform) string {
	switch p {
	case wakepushv1.Platform_PLATFORM_APNS:
		return "apns"
	case wakepushv1.Platform_PLATFORM_FCM:
		return "fcm"
	}
	return "unspecified"
}

var outcomeNames = map[wakepushv1.DeliveryOutcome]string{
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED:      "accepted",
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY:         "retry",
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT:     "permanent",
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION: "configuration",
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DEAD_LETTERED: "dead_lettered",
	wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED:       "dropped",
}

func outcomeName(o wakepushv1.DeliveryOutcome) string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return "unspecified"
}
