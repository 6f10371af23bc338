package kafkax_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// slowAnswers is how late the broker's answers arrive in TestReadersTolerateSlowAnswers: the
// kind of stall (GC pause, CPU-starved host, busy broker loop) that used to time out every idle
// fetch and make the coalescer log "i/o timeout" WARNs. The old MaxWait of 250 ms left an answer
// 62 ms; ReaderMaxWait leaves it 1 s.
const slowAnswers = 300 * time.Millisecond

// delayedListener makes the broker's answers to held fetches late: on its accepted connections,
// an answer written more than heldAfter after the last request was read (a fetch the broker held
// for its wait) reaches the client d later. Immediate answers (API versions, metadata, offsets)
// are not delayed, as a stall hits whatever is in flight, and an idle reader's fetch almost always
// is.
type delayedListener struct {
	net.Listener
	d time.Duration
}

const heldAfter = kafkax.FetchWait * 4 / 5

func (l delayedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	dc := &delayedConn{Conn: c, d: l.d}
	dc.lastRead.Store(time.Now().UnixNano())
	return dc, nil
}

type delayedConn struct {
	net.Conn
	d        time.Duration
	lastRead atomic.Int64 // unix nanoseconds
}

func (c *delayedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *delayedConn) Write(b []byte) (int, error) {
	if time.Since(time.Unix(0, c.lastRead.Load())) >= heldAfter {
		time.Sleep(c.d)
	}
	return c.Conn.Write(b)
}

// errorLog collects what kafka-go reports through a reader's ErrorLogger (the coalescer logs
// these as WARN).
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) logger(name string) kafka.Logger {
	return kafka.LoggerFunc(func(f string, a ...any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs = append(l.msgs, name+": "+fmt.Sprintf(f, a...))
	})
}

func (l *errorLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// Readers that are caught up keep fetching without errors or reconnects when every broker
// answer arrives slowAnswers late (with the old MaxWait each idle fetch timed out, was logged and
// redialled), and an idle reader still closes within about FetchWait: kafka-go's Close waits for
// the fetch in flight, so simply raising MaxWait would hold up every rebalance and shutdown.
func TestReadersTolerateSlowAnswers(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		return delayedListener{ln, slowAnswers}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := &kafkax.Config{Brokers: cluster.ListenAddrs(), Partitions: 1, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Events); err != nil {
		t.Fatal(err)
	}
	d, err := cfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}

	var errs errorLog
	prc := kafkax.PartitionReaderConfig(cfg.Brokers, d, topics.Events, 0)
	prc.ErrorLogger = errs.logger("partition reader")
	partReader := kafka.NewReader(prc)
	defer partReader.Close()
	groupReader, err := kafkax.NewReader(cfg, "slow-answers", topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer groupReader.Close()

	// Idle: both readers fetch empty answers for several broker waits.
	const idle = 4 * time.Second
	fetchCtx, stopFetch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range []*kafka.Reader{partReader, groupReader} {
		wg.Go(func() {
			if m, err := r.FetchMessage(fetchCtx); err == nil {
				t.Errorf("reader got a record (offset %d) from an empty topic", m.Offset)
			}
		})
	}
	time.Sleep(idle)
	stopFetch()
	wg.Wait()
	if got := errs.get(); len(got) > 0 {
		t.Errorf("the partition reader reported %d errors with answers %s late, want none:\n%q", len(got), slowAnswers, got)
	}
	for name, r := range map[string]*kafka.Reader{"partition reader": partReader, "group reader": groupReader} {
		st := r.Stats() // counts since the reader started (Stats resets them)
		t.Logf("%s: %d fetches, %d errors, %d dials", name, st.Fetches, st.Errors, st.Dials)
		if st.Fetches < 3 || st.Errors != 0 || st.Dials != 1 {
			t.Errorf("%s: %d fetches, %d errors, %d dials while idle for %s, want several fetches on one connection and no errors",
				name, st.Fetches, st.Errors, st.Dials, idle)
		}
	}

	// Closing a reader whose fetch the broker is holding.
	closeStart := time.Now()
	partReader.Close()
	if took := time.Since(closeStart); took > kafkax.FetchWait+slowAnswers+500*time.Millisecond {
		t.Errorf("closing an idle reader took %s, want about FetchWait (%s) + the answer delay (%s)", took, kafkax.FetchWait, slowAnswers)
	}
}
