package dedup

import (
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/tail"
)

// Follow returns a tail of push.deliveries that adds the wake id of every ACCEPTED delivery to s,
// starting with the records written in the last window (every partition: the deliveries of
// other sender instances count too, so wakes redelivered after a rebalance or a crash are
// recognised). Run it, and wait for WaitCaughtUp before consuming wakes.
func Follow(cfg *kafkax.Config, s *Set, window time.Duration, log *slog.Logger) (*tail.Tail, error) {
	schema := records.SchemaName(&wakepushv1.Delivery{})
	return tail.New(cfg, tail.Options{
		Topic: topics.Deliveries,
		Since: window,
		Log:   log,
		Handle: func(msg *kafka.Message) {
			if kafkax.Header(msg, records.HeaderSchema) != schema {
				return
			}
			id, accepted, err := acceptedWakeID(msg.Value)
			if err != nil {
				log.Warn("dedup: skipping undecodable delivery", "partition", msg.Partition, "offset", msg.Offset, "err", err)
				return
			}
			if accepted {
				s.Add(id)
			}
		},
	})
}
