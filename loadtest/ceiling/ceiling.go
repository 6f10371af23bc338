// Package ceiling measures the raw Kafka ceiling of the pipeline on this machine: records of the
// pipeline's sizes pushed through an in-process kfake broker (deploy/local/kafkabroker) along the
// same three produce/consume hops (events → wakes → deliveries), with the kafka-go settings of
// services/internal/kafkax (Murmur2Balancer, acks=all, BatchTimeout 2 ms, BatchSize 100,
// consumer groups committing explicitly). No decoding, coalescing or provider calls: it is
// what Kafka alone allows, the bound the pipeline is measured against.
package ceiling

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
)

// Options configures Run.
type Options struct {
	Records     int           // records per hop (default 250 000: the standard scenario's events)
	Partitions  int           // partitions per topic (default 4, as the load test runner)
	Sizes       [3]int        // value bytes of events, wakes, deliveries (default 200, 190, 200)
	Producers   int           // concurrent synchronous single-record producers at the source (default 256, like ingest's in-flight publishes)
	Timeout     time.Duration // per measurement (default 5 min)
	BrokerAddr  string        // use a running broker instead of starting kfake in-process
	SkipPerHop  bool          // only the end-to-end run
	SkipPipe    bool          // only the per-hop runs
	TopicPrefix string        // default "ceiling-<unix nanos>-"
}

// HopResult is one topic's isolated produce+consume measurement.
type HopResult struct {
	Topic      string        `json:"topic"`
	Records    int           `json:"records"`
	ValueBytes int           `json:"value_bytes"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	PerSecond  float64       `json:"records_per_second"`
}

// Result is the outcome of Run.
type Result struct {
	Records    int           `json:"records"`
	Partitions int           `json:"partitions"`
	Hops       []HopResult   `json:"hops"`
	EndToEnd   time.Duration `json:"end_to_end_elapsed_ns"`
	// EndToEndPerSecond is Records / time from the first source produce until the last record
	// of the last hop was consumed, all three hops running concurrently.
	EndToEndPerSecond float64 `json:"end_to_end_records_per_second"`
}

var hopNames = [3]string{"events", "wakes", "deliveries"}

func (o *Options) defaults() {
	if o.Records <= 0 {
		o.Records = 250000
	}
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	def := [3]int{200, 190, 200}
	for i := range o.Sizes {
		if o.Sizes[i] <= 0 {
			o.Sizes[i] = def[i]
		}
	}
	if o.Producers <= 0 {
		o.Producers = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "ceiling-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
}

// Run measures each hop alone (a source producing Records to the topic while a consumer group
// reads them) and then the three hops chained (source → events → relay → wakes → relay →
// deliveries → sink, all concurrently).
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	addr := opts.BrokerAddr
	if addr == "" {
		b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0"})
		if err != nil {
			return nil, err
		}
		defer b.Close()
		addr = b.Addr()
	}
	res := &Result{Records: opts.Records, Partitions: opts.Partitions}
	if !opts.SkipPerHop {
		for i, name := range hopNames {
			topic := opts.TopicPrefix + "hop-" + name
			if err := createTopics(ctx, addr, opts.Partitions, topic); err != nil {
				return nil, err
			}
			d, err := chain(ctx, addr, opts, []string{topic}, []int{opts.Sizes[i]})
			if err != nil {
				return nil, fmt.Errorf("hop %s: %w", name, err)
			}
			res.Hops = append(res.Hops, HopResult{Topic: name, Records: opts.Records, ValueBytes: opts.Sizes[i],
				Elapsed: d, PerSecond: float64(opts.Records) / d.Seconds()})
		}
	}
	if !opts.SkipPipe {
		topics := make([]string, 3)
		for i, name := range hopNames {
			topics[i] = opts.TopicPrefix + "pipe-" + name
		}
		if err := createTopics(ctx, addr, opts.Partitions, topics...); err != nil {
			return nil, err
		}
		d, err := chain(ctx, addr, opts, topics, opts.Sizes[:])
		if err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		res.EndToEnd = d
		res.EndToEndPerSecond = float64(opts.Records) / d.Seconds()
	}
	return res, nil
}

func createTopics(ctx context.Context, addr string, partitions int, topics ...string) error {
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	resp, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for t, e := range resp.Errors {
		if e != nil {
			return fmt.Errorf("create topic %s: %w", t, e)
		}
	}
	return nil
}

// newWriter mirrors kafkax.NewProducer.
func newWriter(addr, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(addr),
		Topic:                  topic,
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           2 * time.Millisecond,
		BatchSize:              100,
		BatchBytes:             16 << 20,
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
	}
}

// newReader mirrors kafkax.NewReader.
func newReader(addr, group, topic string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:               []string{addr},
		GroupID:               group,
		GroupTopics:           []string{topic},
		StartOffset:           kafka.FirstOffset,
		CommitInterval:        0,
		MinBytes:              1,
		MaxBytes:              16 << 20,
		MaxWait:               250 * time.Millisecond,
		ReadBackoffMin:        10 * time.Millisecond,
		ReadBackoffMax:        250 * time.Millisecond,
		QueueCapacity:         1000,
		ReadLagInterval:       -1,
		WatchPartitionChanges: true,
	})
}

// traceparent is a W3C trace context header like the one kafkax injects into every record.
var traceparent = []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

func payload(size, seq int) kafka.Message {
	v := make([]byte, size)
	for i := range v {
		v[i] = byte('a' + (seq+i)%26)
	}
	return kafka.Message{
		Key:     []byte("device-" + strconv.Itoa(seq%20000)),
		Value:   v,
		Headers: []kafka.Header{{Key: "traceparent", Value: traceparent}},
	}
}

// chain produces opts.Records records into topics[0] from opts.Producers goroutines (each
// writing one record at a time, as ingest does per publish), relays every record of topics[i]
// to topics[i+1] (fetch what is available, produce it as one batch, then commit, as the
// coalescer and sender do), and consumes the last topic with a sink that commits per fetched
// batch (as the recorder does). It returns the time from the start until the sink saw every
// record.
func chain(ctx context.Context, addr string, opts Options, topics []string, sizes []int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	n := opts.Records
	var wg sync.WaitGroup
	errc := make(chan error, len(topics)+opts.Producers+1)
	fail := func(err error) {
		if err != nil && ctx.Err() == nil {
			errc <- err
			cancel()
		}
	}
	readers := make([]*kafka.Reader, len(topics))
	for i, t := range topics {
		readers[i] = newReader(addr, t+"-group", t)
	}
	writers := make([]*kafka.Writer, len(topics))
	for i, t := range topics {
		writers[i] = newWriter(addr, t)
	}
	defer func() {
		for _, r := range readers {
			_ = r.Close()
		}
		for _, w := range writers {
			_ = w.Close()
		}
	}()

	done := make(chan struct{})
	// Relays i: readers[i] → writers[i+1]; the sink reads the last topic.
	for i := range topics {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out *kafka.Writer
			if i+1 < len(topics) {
				out = writers[i+1]
			}
			err := relay(ctx, readers[i], out, n, func(seq int) kafka.Message {
				if out == nil {
					return kafka.Message{}
				}
				return payload(sizes[i+1], seq)
			})
			fail(err)
			if err == nil && out == nil {
				close(done)
			}
		}(i)
	}

	start := time.Now()
	var next atomic.Int64
	for p := 0; p < opts.Producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1)) - 1
				if seq >= n || ctx.Err() != nil {
					return
				}
				if err := writers[0].WriteMessages(ctx, payload(sizes[0], seq)); err != nil {
					fail(fmt.Errorf("produce %s: %w", topics[0], err))
					return
				}
			}
		}()
	}
	var elapsed time.Duration
	var err error
	select {
	case <-done:
		elapsed = time.Since(start)
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	close(errc)
	for e := range errc {
		err = errors.Join(err, e)
	}
	if elapsed == 0 {
		if err == nil {
			err = fmt.Errorf("timed out after %s", opts.Timeout)
		}
		return 0, err
	}
	return elapsed, nil
}

// relay reads n records from r; with a writer it produces mk(seq) for every record read, one
// batch per drain of what the reader has fetched, before committing that batch.
func relay(ctx context.Context, r *kafka.Reader, w *kafka.Writer, n int, mk func(int) kafka.Message) error {
	msgs := make(chan kafka.Message, 1000)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for i := 0; i < n; i++ {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	seen := 0
	batch := make([]kafka.Message, 0, 1000)
	out := make([]kafka.Message, 0, 1000)
	for seen < n {
		m, ok := <-msgs
		if !ok {
			select {
			case err := <-fetchErr:
				return fmt.Errorf("fetch: %w", err)
			default:
				return ctx.Err()
			}
		}
		batch = append(batch[:0], m)
	drain:
		for len(batch) < cap(batch) {
			select {
			case m, ok := <-msgs:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if w != nil {
			out = out[:0]
			for i := range batch {
				out = append(out, mk(seen+i))
			}
			if err := w.WriteMessages(ctx, out...); err != nil {
				return fmt.Errorf("produce %s: %w", w.Topic, err)
			}
		}
		if err := r.CommitMessages(ctx, batch...); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		seen += len(batch)
	}
	return nil
}
