package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
)

// A replay of the compacted push.registrations topic spans years of created_at, and any long
// replay spans many days: one batch must be able to insert into many partitions (ClickHouse
// refuses more than 100 per block by default, which would stall the recorder forever).
func TestStoreInsertManyDays(t *testing.T) {
	srv := stacktest.ClickHouse(t)
	db, conn := testDatabase(t, srv, "rec_days")
	ctx := t.Context()
	s, err := openStore(ctx, srv.DSN(db), clickhousex.Config{}, true, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := &kafka.Message{Topic: topics.Registrations}
	var rows [][]any
	now := time.Now()
	for i := range 500 {
		msg.Offset = int64(i)
		_, row, err := rowFor(&wakepushv1.Registration{Id: fmt.Sprintf("r%d", i), CreatedAt: tsp(now.Add(-time.Duration(i) * 24 * time.Hour)), DeviceId: fmt.Sprintf("d%d", i)}, msg)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if err := s.Insert(ctx, registrationsTable, "days", rows); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".registrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Rows older than the registrations TTL (365 days) may be dropped at insert or merge; the
	// row exactly 365 days old reaches it as it is inserted, so 365 are surely inside.
	if n < 365 || n > 500 {
		t.Errorf("%d of 500 registrations stored, want at least the 365 inside the TTL", n)
	}

	// Daily partitions: 150 days of events in one block is over the default limit of 100.
	msg.Topic = topics.Events
	rows = rows[:0]
	for i := range 150 {
		msg.Offset = int64(i)
		_, row, err := rowFor(&wakepushv1.PushEvent{Id: fmt.Sprintf("e%d", i), AcceptedAt: tsp(now.Add(-time.Duration(i) * 24 * time.Hour)), DeviceId: "d"}, msg)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if err := s.Insert(ctx, eventsTable, "days", rows); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 90 || n > 150 {
		t.Errorf("%d of 150 events stored, want at least the 90 inside the TTL", n)
	}

}
