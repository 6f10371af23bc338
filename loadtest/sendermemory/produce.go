package sendermemory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/loadtest/senderbench"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// senderTopics are the topics the sender reads and writes, created by the harness.
var senderTopics = []string{topics.Wakes, topics.Registrations, topics.Deliveries, topics.WakesDLQ}

// createTopics creates the sender's topics with their specs (schemas/topics) and p partitions.
func createTopics(ctx context.Context, addr string, p int) error {
	var specs []topics.Spec
	for _, name := range senderTopics {
		s, ok := topics.Lookup(name)
		if !ok {
			return fmt.Errorf("topic %s has no spec in schemas/topics", name)
		}
		specs = append(specs, s)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second, Transport: tr}
	if err := topics.Ensure(ctx, c, topics.Layout{Partitions: p, ReplicationFactor: 1}, specs...); err != nil {
		return fmt.Errorf("create the sender's topics: %w", err)
	}
	return nil
}

// PartitionOf is the partition the services' producer (kafkax: Murmur2, Java-compatible, over
// the key up to its first "/") writes a record of deviceID to, among p partitions: for a
// registration (key device_id/registration_id) and a wake (key device_id) alike.
func PartitionOf(deviceID string, p int) int {
	parts := make([]int, p)
	for i := range parts {
		parts[i] = i
	}
	return kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: []byte(deviceID)}, parts...)
}

// balancer partitions like the services' producer.
var balancer = kafka.BalancerFunc(func(msg kafka.Message, parts ...int) int {
	msg.Key = records.PartitionKey(msg.Key)
	return kafka.Murmur2Balancer{}.Balance(msg, parts...)
})

// newWriter is a writer with the services' partitioning; batchTimeout and batchSize trade
// latency for throughput.
func newWriter(addr string, batchSize int, batchTimeout time.Duration) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Transport:    &kafka.Transport{},
		Balancer:     balancer,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: batchTimeout,
		BatchSize:    batchSize,
		// Under the broker's message.max.bytes (1 MiB): a bigger batch is refused whole.
		BatchBytes:  900_000,
		MaxAttempts: 10,
	}
}

func closeWriter(w *kafka.Writer) error {
	err := w.Close()
	if tr, ok := w.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	return err
}

// produceRegistrations writes the registrations of devices from…to−1 (senderbench.MakeDevice
// with seed) from several goroutines in big chunks, and returns, per partition, the lowest
// device index it saw there (for the wakes of the rebalance check).
func produceRegistrations(ctx context.Context, addr string, seed int64, from, to, partitions int, logf func(string, ...any)) (map[int]int, error) {
	const (
		producers = 4
		chunk     = 10_000
	)
	w := newWriter(addr, 2000, 10*time.Millisecond)
	defer closeWriter(w)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	now := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		first    = map[int]int{}
		done     int
		lastLog  = time.Now()
		next     = make(chan int)
		progress = func(n int) {
			mu.Lock()
			defer mu.Unlock()
			done += n
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				logf("  produced %d of %d registrations", done, to-from)
			}
		}
	)
	for range producers {
		wg.Go(func() {
			msgs := make([]kafka.Message, 0, chunk)
			mine := map[int]int{}
			for start := range next {
				msgs = msgs[:0]
				for i := start; i < min(start+chunk, to); i++ {
					d := senderbench.MakeDevice(seed, i, now)
					m, err := senderbench.Message(topics.Registrations, records.RegistrationKey(d.DeviceID, d.RegistrationID), senderbench.RegistrationRecord(&d, senderbench.App, now))
					if err != nil {
						cancel(err)
						return
					}
					msgs = append(msgs, m)
					p := PartitionOf(d.DeviceID, partitions)
					if j, ok := mine[p]; !ok || i < j {
						mine[p] = i
					}
				}
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					cancel(fmt.Errorf("produce %d registrations: %s", len(msgs), short(err)))
					return
				}
				progress(len(msgs))
			}
			mu.Lock()
			defer mu.Unlock()
			for p, i := range mine {
				if j, ok := first[p]; !ok || i < j {
					first[p] = i
				}
			}
		})
	}
	senderbench.FeedChunks(ctx, next, from, to, chunk)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return first, nil
}

// produceWakes writes one wake per given device (one per partition) in one call, as the
// coalescer does, and returns the devices with their (new) wake ids.
func produceWakes(ctx context.Context, addr string, seed int64, byPartition map[int]int) (map[int]senderbench.Device, error) {
	w := newWriter(addr, 100, time.Millisecond)
	defer closeWriter(w)
	now := time.Now()
	devs := make(map[int]senderbench.Device, len(byPartition))
	var msgs []kafka.Message
	for p, i := range byPartition {
		d := senderbench.MakeDevice(seed, i, now)
		devs[p] = d
		m, err := senderbench.Message(topics.Wakes, d.DeviceID, senderbench.WakeRecord(&d, senderbench.App, now))
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return nil, fmt.Errorf("produce the wakes: %s", short(err))
	}
	return devs, nil
}

// short is err's message cut to 300 bytes (kafka-go's WriteErrors lists every message).
func short(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
