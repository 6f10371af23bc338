package clickhouse

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// Every shipped query declares each parameter it uses, with its type and a default that binds,
// so it runs with no parameters (TestQueriesRun, in
// services/internal/clickhousex, runs each so against ClickHouse).
func TestShippedQueriesDeclareTheirParameters(t *testing.T) {
	t.Parallel()
	for _, name := range Queries() {
		q, err := LoadQuery(name)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if q.Summary == "" || len(q.Params) == 0 {
			t.Errorf("query %s: summary %q, %d parameters", name, q.Summary, len(q.Params))
		}
		got, err := q.Bind(nil, time.Now())
		if err != nil {
			t.Errorf("query %s with defaults: %v", name, err)
			continue
		}
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(slices.Values(q.ParamNames()))) {
			t.Errorf("query %s: bound %v, declared %v", name, got, q.ParamNames())
		}
	}
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	const good = `-- q: what it answers.
-- More words.
-- Parameters (defaults: the last hour):
--   {from:DateTime64(3)} = now-1h   start, UTC
--   {to:DateTime64(3)} = now        end
--                                   (exclusive)
--   {n:UInt32} = 3600               a number
--   {app:String} = ''               only this app
-- Columns: x.
SELECT 1 WHERE {from:DateTime64(3)} < {to:DateTime64(3)} AND {n:UInt32} > 0 AND {app:String} = ''`
	q, err := ParseQuery("q", good)
	if err != nil {
		t.Fatal(err)
	}
	want := []Param{
		{"from", "DateTime64(3)", "now-1h", "start, UTC"},
		{"to", "DateTime64(3)", "now", "end (exclusive)"},
		{"n", "UInt32", "3600", "a number"},
		{"app", "String", "''", "only this app"},
	}
	if q.Summary != "what it answers." || !slices.Equal(q.Params, want) {
		t.Errorf("ParseQuery = %q %+v, want %+v", q.Summary, q.Params, want)
	}
	bad := map[string]string{
		"undeclared":     strings.Replace(good, "--   {n:UInt32} = 3600               a number\n", "", 1),
		"unused":         strings.Replace(good, " AND {n:UInt32} > 0", "", 1),
		"type mismatch":  strings.Replace(good, "{n:UInt32} > 0", "{n:UInt64} > 0", 1),
		"bad default":    strings.Replace(good, "= 3600", "= soon", 1),
		"no description": strings.Replace(good, "a number", "", 1),
		"no summary":     strings.Replace(good, "-- q: ", "-- ", 1),
	}
	for name, text := range bad {
		if _, err := ParseQuery("q", text); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ParseQuery err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestBind(t *testing.T) {
	t.Parallel()
	q := QueryDoc{Name: "q", Params: []Param{
		{Name: "from", Type: "DateTime64(3)", Default: "now-1h"},
		{Name: "to", Type: "DateTime64(3)", Default: "now"},
		{Name: "slack_ms", Type: "UInt32", Default: "5000"},
		{Name: "horizon_s", Type: "UInt32", Default: "600"},
		{Name: "app", Type: "String", Default: "''"},
	}}
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		args map[string]string
		want map[string]string
	}{
		{nil, map[string]string{"from": "2026-12-05 07:00:00.000", "to": "2026-12-05 08:00:00.000", "slack_ms": "5000", "horizon_s": "600", "app": ""}},
		{map[string]string{"from": "15m", "to": "now-5m", "slack": "5s", "horizon_s": "2m", "app": "im.monal"},
			map[string]string{"from": "2026-12-05 07:45:00.000", "to": "2026-12-05 07:55:00.000", "slack_ms": "5000", "horizon_s": "120", "app": "im.monal"}},
		{map[string]string{"from": "2026-12-04T10:00:00+02:00", "to": "2026-12-04 09:30:00", "slack_ms": "250", "horizon": "10"},
			map[string]string{"from": "2026-12-04 08:00:00.000", "to": "2026-12-04 09:30:00.000", "slack_ms": "250", "horizon_s": "10", "app": ""}},
		{map[string]string{"from": "2026-12-04"}, map[string]string{"from": "2026-12-04 00:00:00.000", "to": "2026-12-05 08:00:00.000", "slack_ms": "5000", "horizon_s": "600", "app": ""}},
	}
	for _, tt := range tests {
		got, err := q.Bind(tt.args, now)
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("Bind(%v) = %v, %v; want %v", tt.args, got, err, tt.want)
		}
	}
	for _, args := range []map[string]string{
		{"nope": "1"},
		{"from": "yesterday"},
		{"from": "-1h"},
		{"slack_ms": "-5"},
		{"slack_ms": "1.5"},
		{"slack": "1500us"}, // not whole milliseconds
		{"horizon_s": "99999999999"},
		{"slack": "5s", "slack_ms": "5000"},
	} {
		if _, err := q.Bind(args, now); !errors.Is(err, ErrParam) {
			t.Errorf("Bind(%v): err = %v, want ErrParam", args, err)
		}
	}
}
