package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// fetcher is the part of *kafka.Reader the recorder uses.
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// inserter writes one batch of rows into a table (*store in production).
type inserter interface {
	Insert(ctx context.Context, t table, token string, rows [][]any) error
}

type options struct {
	Group         string
	BatchRows     int
	FlushInterval time.Duration
	InsertTimeout time.Duration
}

// maxLinks bounds the span links of one insert span (to the records' creation contexts).
const maxLinks = 32

// recorder reads records, groups their rows per table and flushes all tables together when
// BatchRows records are pending or the oldest pending record waited FlushInterval. A flush
// inserts every non-empty table (retrying with backoff until it succeeds or the context ends)
// and only then commits the offsets of the flushed records. While a flush retries nothing is
// fetched, so memory stays bounded by BatchRows records and no offset is committed before its
// row is in ClickHouse.
type recorder struct {
	opts options
	log  *slog.Logger
	in   fetcher
	out  inserter
	m    *metrics

	batches []*batch
	byTable map[string]*batch
	pending int                              // records in the batches
	since   time.Time                        // when the oldest pending record was added
	commit  map[topicPartition]kafka.Message // highest pending offset per partition
}

// offsetRange is the first and last offset of a batch's records from one partition, and those
// records' Kafka timestamps (ms).
type offsetRange struct{ first, last, firstTime, lastTime int64 }

// batch is the pending rows of one table and the Kafka ranges they came from.
type batch struct {
	table    table
	rows     [][]any
	ranges   map[topicPartition]offsetRange
	links    []trace.Link
	inserted bool // inserted during the current flush (not again when another table is retried)
}

func newRecorder(opts options, in fetcher, out inserter, log *slog.Logger) (*recorder, error) {
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	r := &recorder{opts: opts, log: log, in: in, out: out, m: m, byTable: map[string]*batch{}, commit: map[topicPartition]kafka.Message{}}
	for _, t := range tables {
		b := &batch{table: t, ranges: map[topicPartition]offsetRange{}}
		r.batches = append(r.batches, b)
		r.byTable[t.name] = b
	}
	return r, nil
}

// Run records until ctx ends, then flushes what is pending within a context from drainCtx and
// returns. Records whose rows could not be inserted are not committed: they are read again.
func (r *recorder) Run(ctx context.Context, drainCtx func() (context.Context, context.CancelFunc)) error {
	backoff := fetchRetryMin
	for ctx.Err() == nil {
		if r.pending > 0 && (r.pending >= r.opts.BatchRows || !time.Now().Before(r.flushAt())) {
			if err := r.flush(ctx); err != nil {
				break // only when ctx ended: drained below
			}
			continue
		}
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if r.pending > 0 {
			fctx, cancel = context.WithDeadline(ctx, r.flushAt())
		}
		msg, err := r.in.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue // time to flush
			}
			if !errors.Is(err, io.EOF) {
				// Kafka unreachable (a broker restart, a network blip): the reader reconnects
				// on the next fetch. Pending records stay pending (they are flushed when due).
				r.log.Warn("fetch from Kafka failed (retrying)", "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, fetchRetryMax)
				continue
			}
			derr := r.drain(drainCtx)
			return errors.Join(fmt.Errorf("fetch from Kafka: %w", err), derr)
		}
		backoff = fetchRetryMin
		r.add(ctx, &msg)
	}
	return r.drain(drainCtx)
}

// fetchRetryMin and fetchRetryMax bound the backoff after a failed fetch.
const (
	fetchRetryMin = 100 * time.Millisecond
	fetchRetryMax = 5 * time.Second
)

func (r *recorder) flushAt() time.Time { return r.since.Add(r.opts.FlushInterval) }

// drain flushes the pending records at shutdown.
func (r *recorder) drain(drainCtx func() (context.Context, context.CancelFunc)) error {
	if r.pending == 0 {
		return nil
	}
	ctx, cancel := drainCtx()
	defer cancel()
	n := r.pending
	r.log.Info("draining", "records", n)
	if err := r.flush(ctx); err != nil {
		return fmt.Errorf("drain: %d record(s) not written to ClickHouse; their offsets are not committed, so they will be read again: %w", n, err)
	}
	return nil
}

// add maps msg to a row of its table. A record that cannot be decoded is counted, logged
// without content and recorded as a dead letter of stage "recorder": it never stalls the
// partition.
func (r *recorder) add(ctx context.Context, msg *kafka.Message) {
	r.m.observeLag(msg)
	schemaName := kafkax.Header(msg, records.HeaderSchema)
	if msg.Value == nil && schemaName == "" {
		// A tombstone (push.registrations forgets an expired unregistration): no row; its
		// offset is committed with the next flush (or it is read and skipped again).
		tp := topicPartition{msg.Topic, msg.Partition}
		if c, ok := r.commit[tp]; !ok || msg.Offset > c.Offset {
			r.commit[tp] = kafka.Message{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}
		}
		return
	}
	var (
		t   table
		row []any
	)
	rec, err := records.Decode(schemaName, msg.Value)
	if err == nil {
		t, row, err = rowFor(rec, msg)
	}
	if err != nil {
		reason := poisonReason(schemaName)
		r.m.poison.Add(ctx, 1, metric.WithAttributes(attribute.String("messaging.destination.name", msg.Topic)))
		r.log.Warn("skipping a record that cannot be decoded", "topic", msg.Topic, "partition", msg.Partition,
			"offset", msg.Offset, "schema", truncate(schemaName, 80), "bytes", len(msg.Value), "reason", reason)
		t, row = deadLettersTable, poisonRow(msg, reason)
	}
	b := r.byTable[t.name]
	b.rows = append(b.rows, row)
	tp := topicPartition{msg.Topic, msg.Partition}
	ms := msg.Time.UnixMilli()
	rg, ok := b.ranges[tp]
	if !ok {
		rg = offsetRange{msg.Offset, msg.Offset, ms, ms}
	}
	if msg.Offset < rg.first {
		rg.first, rg.firstTime = msg.Offset, ms
	}
	if msg.Offset > rg.last {
		rg.last, rg.lastTime = msg.Offset, ms
	}
	b.ranges[tp] = rg
	if len(b.links) < maxLinks {
		if l := kafkax.LinkTo(ctx, msg); l.SpanContext.IsValid() {
			b.links = append(b.links, l)
		}
	}
	if c, ok := r.commit[tp]; !ok || msg.Offset > c.Offset {
		r.commit[tp] = kafka.Message{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}
	}
	if r.pending == 0 {
		r.since = time.Now()
	}
	r.pending++
}

// poisonReason says why a record was not decodable, without its content.
func poisonReason(schemaName string) string {
	switch {
	case schemaName == "":
		return "missing " + records.HeaderSchema + " header"
	case func() bool { _, err := records.Decode(schemaName, nil); return err != nil }():
		return "unknown schema"
	default:
		return "undecodable " + schemaName
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// flush inserts every pending table, then commits the flushed offsets. It returns an error only
// when ctx ends before every table was inserted; the pending records are kept then.
func (r *recorder) flush(ctx context.Context) error {
	for _, b := range r.batches {
		if len(b.rows) == 0 || b.inserted {
			continue
		}
		if err := r.insertRetrying(ctx, b); err != nil {
			return err
		}
		b.inserted = true
	}
	r.commitFlushed(ctx)
	for _, b := range r.batches {
		b.rows, b.links, b.inserted = nil, nil, false
		clear(b.ranges)
	}
	clear(r.commit)
	r.pending = 0
	return nil
}

// insertRetrying inserts b, retrying failures with capped exponential backoff and jitter until
// it succeeds or ctx ends. Every attempt carries the same deduplication token.
func (r *recorder) insertRetrying(ctx context.Context, b *batch) error {
	token := b.token()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.insert(ctx, b, token)
		if err == nil {
			if attempt > 1 {
				r.log.Info("insert succeeded after retries", "table", b.table.name, "rows", len(b.rows), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("insert into %s: %w (last error: %v)", b.table.name, ctx.Err(), err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.Warn("ClickHouse insert failed; retrying (not fetching meanwhile)", "table", b.table.name,
			"rows", len(b.rows), "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("insert into %s: %w (last error: %v)", b.table.name, ctx.Err(), err)
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// insert makes one insert attempt of b, in a client span linked to the records it writes.
func (r *recorder) insert(ctx context.Context, b *batch, token string) error {
	ctx, span := r.m.tracer.Start(ctx, "INSERT "+b.table.name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(b.links...),
		trace.WithAttributes(
			attribute.String("db.system.name", "clickhouse"),
			attribute.String("db.operation.name", "INSERT"),
			attribute.String("db.collection.name", b.table.name),
			attribute.Int("db.operation.batch.size", len(b.rows)),
		))
	defer span.End()
	ictx, cancel := context.WithTimeout(ctx, r.opts.InsertTimeout)
	defer cancel()
	start := time.Now()
	err := r.out.Insert(ictx, b.table, token, b.rows)
	tableAttr := attribute.String("db.collection.name", b.table.name)
	r.m.insertLatency.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(tableAttr, attribute.Bool("error", err != nil)))
	if err != nil {
		r.m.insertErrors.Add(ctx, 1, metric.WithAttributes(tableAttr))
		span.RecordError(err)
		span.SetStatus(codes.Error, "insert failed")
		return err
	}
	r.m.rows.Add(ctx, int64(len(b.rows)), metric.WithAttributes(tableAttr))
	r.m.batchRows.Record(ctx, int64(len(b.rows)), metric.WithAttributes(tableAttr))
	return nil
}

// token is the insert_deduplication_token of b: the table and the Kafka offset ranges its rows
// came from, with the timestamps of the first and last record of each. The same records in the
// same batch always give the same token, so a retry of an insert that did land is dropped by
// ClickHouse; the timestamps keep a recreated topic, whose offsets start again at 0, from
// having its first batches dropped as repeats of the old topic's.
func (b *batch) token() string {
	keys := make([]topicPartition, 0, len(b.ranges))
	for tp := range b.ranges {
		keys = append(keys, tp)
	}
	slices.SortFunc(keys, func(a, c topicPartition) int {
		return cmp.Or(strings.Compare(a.topic, c.topic), cmp.Compare(a.partition, c.partition))
	})
	var sb strings.Builder
	for _, tp := range keys {
		rg := b.ranges[tp]
		fmt.Fprintf(&sb, "%s/%d/%d-%d/%d-%d;", tp.topic, tp.partition, rg.first, rg.last, rg.firstTime, rg.lastTime)
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return "wakepush-recorder:" + b.table.name + ":" + hex.EncodeToString(sum[:16])
}

// commitFlushed commits the offsets of the flushed records. A failure is logged and counted but
// does not stop the recorder: the rows are in ClickHouse, and records read again after a
// rebalance or restart collapse into the same rows.
func (r *recorder) commitFlushed(ctx context.Context) {
	msgs := make([]kafka.Message, 0, len(r.commit))
	for _, m := range r.commit {
		msgs = append(msgs, m)
	}
	// A shutdown must not cancel the commit of rows that are already inserted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = r.in.CommitMessages(ctx, msgs...); err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
	if err != nil {
		r.m.commitErrors.Add(ctx, 1)
		r.log.Warn("commit offsets failed; the records will be read again and deduplicated", "partitions", len(msgs), "err", err)
	}
}
