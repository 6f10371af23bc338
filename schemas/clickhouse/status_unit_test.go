package clickhouse

import (
	"slices"
	"testing"
)

// Tables finds every table the migrations create, and no materialized view.
func TestTables(t *testing.T) {
	got, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"events", "registrations", "wakes", "deliveries", "receipts", "dead_letters", "wake_latency_1m", "events_1m", "deliveries_1m", "dead_letters_1m"} {
		if !slices.Contains(got, want) {
			t.Errorf("Tables() = %v, missing %s", got, want)
		}
	}
	for _, name := range got {
		if len(name) > 3 && name[len(name)-3:] == "_mv" {
			t.Errorf("Tables() lists the materialized view %s", name)
		}
	}
	latest, err := Latest()
	if err != nil || latest.Version < 4 || latest.String() != "0004_rollups_1m" && latest.Version == 4 {
		t.Errorf("Latest() = %v, %v", latest, err)
	}
}
