package monitoring_test

import (
	"testing"
	"time"
)

// The expansions match the plugin's documented examples (grafana-clickhouse-datasource README:
// "$__timeFilter(columnName)" → "columnName >= toDateTime(1415792726) AND columnName <=
// toDateTime(1447328726)", "$__timeInterval(columnName)" → "toStartOfInterval(toDateTime(column),
// INTERVAL 20 second)").
func TestClickHouseMacros(t *testing.T) {
	from, to := time.Unix(1415792726, 0), time.Unix(1447328726, 0)
	for in, want := range map[string]string{
		"$__timeFilter(minute)":         "minute >= toDateTime(1415792726) AND minute <= toDateTime(1447328726)",
		"$__timeFilter_ms(created)":     "created >= fromUnixTimestamp64Milli(1415792726000) AND created <= fromUnixTimestamp64Milli(1447328726000)",
		"$__timeInterval(minute)":       "toStartOfInterval(toDateTime(minute), INTERVAL 20 second)",
		"x > $__fromTime AND $__toTime": "x > toDateTime(1415792726) AND toDateTime(1447328726)",
		"$__interval_s":                 "20",
		"$__dateFilter(d)":              "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')",
	} {
		got, err := clickHouseMacros(in, from, to, 20*time.Second)
		if err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"$__timeFilter()", "$__timeGroup(t, 1m)", "$__timeInterval(a, b)"} {
		if got, err := clickHouseMacros(bad, from, to, time.Second); err == nil {
			t.Errorf("%s → %q, want an error", bad, got)
		}
	}
}

func TestInterpolate(t *testing.T) {
	vars := map[string][]string{"app": {"im.a", "o'b"}}
	b := map[string]string{"__rate_interval": "4s", "__interval": "2s"}
	for in, want := range map[string]string{
		`rate(x{app=~"$app"}[$__rate_interval])`:       `rate(x{app=~".*"}[4s])`,
		`app IN (${app:singlequote}) $__timeFilter(m)`: `app IN ('im.a','o\'b') $__timeFilter(m)`,
		`step $__interval`:                             `step 2s`,
	} {
		got, err := interpolate(in, vars, map[string]string{"app": ".*"}, b)
		if err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := interpolate(`x{a="$nope"}`, vars, nil, b); err == nil {
		t.Errorf("undefined variable → %q, want an error", got)
	}
	if got, _ := interpolate(`x{app=~"$app"}`, vars, nil, b); got != `x{app=~"(im\.a|o'b)"}` {
		t.Errorf("multi-value regex: %q", got)
	}
}
