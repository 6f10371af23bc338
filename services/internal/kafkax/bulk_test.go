package kafkax_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// The fetches of a bulk reader ask the broker for its minimum bytes; a NewReader's for one byte.
// Seen by the broker, in the Fetch requests it receives.
func TestBulkReaderMinBytes(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var mu sync.Mutex
	asked := map[int32]bool{}
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		asked[req.(*kmsg.FetchRequest).MinBytes] = true
		mu.Unlock()
		return nil, nil, false
	})
	cfg := &kafkax.Config{Brokers: cluster.ListenAddrs(), Partitions: 1, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Events); err != nil {
		t.Fatal(err)
	}
	prod, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, kafkax.Record{Topic: topics.Events, Key: "d", Msg: &wakepushv1.PushEvent{Id: records.NewID()}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		minBytes int32
	}{{"reader", 1}, {"bulk", 64 << 10}} {
		newReader := func() (*kafka.Reader, error) {
			return kafkax.NewBulkReader(cfg, "g-"+tt.name, int(tt.minBytes), topics.Events)
		}
		if tt.minBytes == 1 {
			newReader = func() (*kafka.Reader, error) { return kafkax.NewReader(cfg, "g-"+tt.name, topics.Events) }
		}
		reader, err := newReader()
		if err != nil {
			t.Fatal(err)
		}
		// The one record (far below 64 KiB) still arrives: after the broker's wait.
		if _, err := reader.ReadMessage(ctx); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		_ = reader.Close()
		mu.Lock()
		ok := asked[tt.minBytes]
		mu.Unlock()
		if !ok {
			t.Errorf("%s: no fetch asked for %d bytes (asked: %v)", tt.name, tt.minBytes, asked)
		}
	}
}
