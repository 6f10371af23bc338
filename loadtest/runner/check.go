package runner

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

func sortArrivals(as []analysis.Arrival) {
	slices.SortFunc(as, func(a, b analysis.Arrival) int { return a.At.Compare(b.At) })
}

// views are the per-event measures analyse derives, for the later steps of the report.
type views struct {
	ack, lead []time.Duration // component answer latencies; leading-edge e2e latencies
	leadE2E   []time.Duration // per event: leading-edge e2e latency, -1 for the others
	wakeOf    []string        // per event: the id of the wake that covered it ("" if none)
	leading   []bool          // per event: the oracle (refined) wakes it at once
	e2e       []time.Duration // per event: its covering wake's arrival − intended send (-1: uncovered)
	uncovered []int           // indexes of the uncovered events
}

// analyse fills the load test's own view: throughput, latencies, oracle, loss, duplicates.
// length is the load phase sent.
func analyse(sum *report.Summary, sc *scenario.Scenario, plan *scenario.Plan, events []analysis.Event, httpKind []bool,
	arrivals map[int32][]analysis.Arrival, loadStart time.Time, length time.Duration) views {
	var v views
	sum.Throughput = float64(sum.Accepted) / length.Seconds()
	if stray := len(arrivals[-1]); stray > 0 {
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("%d pushes for tokens the scenario never registered", stray))
	}
	for dev, as := range arrivals {
		if dev >= 0 {
			sum.Wakes += len(as)
		}
	}
	oracle, leading := analysis.OracleWakes(events, boundaryGuard)
	sum.OracleWakes = oracle
	if sum.Accepted > 0 {
		sum.WakesPerEvent = float64(sum.Wakes) / float64(sum.Accepted)
		sum.OraclePerEvent = float64(oracle) / float64(sum.Accepted)
	}
	analysis.RefineLeading(events, leading, arrivals, boundaryGuard)
	cov := analysis.Cover(events, arrivals, sc.Slack.D())
	sum.Uncovered = len(cov.Uncovered)
	for k, i := range cov.Uncovered {
		if k == 10 {
			break
		}
		e := events[i]
		sum.UncoveredList = append(sum.UncoveredList, fmt.Sprintf("device %d (%s) sent %s urgent=%v: %d wakes for the device in total",
			e.Device, plan.Devices[e.Device].Token[:16], e.Sent.UTC().Format("15:04:05.000"), e.Urgent, len(arrivals[e.Device])))
	}
	var ackHTTP, all []time.Duration
	for i, e := range events {
		if e.Accepted {
			if httpKind[i] {
				ackHTTP = append(ackHTTP, e.Answered.Sub(e.Intended))
			} else {
				v.ack = append(v.ack, e.Answered.Sub(e.Intended))
			}
		}
		if cov.E2E[i] >= 0 {
			all = append(all, cov.E2E[i])
			if leading[i] {
				v.lead = append(v.lead, cov.E2E[i])
			}
		}
	}
	sum.Ack = analysis.Summarize(v.ack)
	sum.AckHTTP = analysis.Summarize(ackHTTP)
	sum.E2E = analysis.Summarize(all)
	sum.E2ELeading = analysis.Summarize(v.lead)
	sum.DuplicateIDs, sum.DuplicatePush = analysis.Duplicates(arrivals)
	v.leadE2E = make([]time.Duration, len(events))
	for i := range v.leadE2E {
		v.leadE2E[i] = -1
		if leading[i] {
			v.leadE2E[i] = cov.E2E[i]
		}
	}
	v.wakeOf = cov.WakeID
	v.leading, v.e2e, v.uncovered = leading, cov.E2E, cov.Uncovered
	sum.Series = analysis.Series(events, v.leadE2E, loadStart)

	if sum.Uncovered > 0 {
		sum.Failures = append(sum.Failures, fmt.Sprintf("LOSS: %d accepted events got no wake within min_interval + %s of their answer", sum.Uncovered, sc.Slack.D()))
	}
	if sum.Sent == 0 || float64(sum.Accepted) < sc.MinAccepted*float64(sum.Sent) {
		sum.Failures = append(sum.Failures, fmt.Sprintf("ingest accepted only %d of %d publishes (%v), the scenario requires %.1f %%",
			sum.Accepted, sum.Sent, sum.Conditions, 100*sc.MinAccepted))
	} else if sum.Accepted < sum.Sent {
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("ingest refused %d of %d publishes: %v", sum.Sent-sum.Accepted, sum.Sent, sum.Conditions))
	}
	if sum.DuplicateIDs > 0 {
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("%d wake ids were pushed more than once (%d extra pushes)", sum.DuplicateIDs, sum.DuplicatePush))
	}
	return v
}

// firstAttempt summarises the leading-edge latencies of the events whose covering wake no
// provider mock refused (retried holds the ids of wakes with a non-ACCEPTED delivery).
func firstAttempt(v views, retried map[string]bool) analysis.Quantiles {
	var lat []time.Duration
	for i, d := range v.leadE2E {
		if d >= 0 && !retried[v.wakeOf[i]] {
			lat = append(lat, d)
		}
	}
	return analysis.Summarize(lat)
}

// boundaryGuard: events this close after the oracle's interval end are not judged as leading
// edge (see analysis.OracleWakes).
const boundaryGuard = 250 * time.Millisecond

const chLayout = "2006-01-02 15:04:05.000"

// chCheck waits for the recorder to catch up, runs the shipped analyst queries and compares
// their view with the load test's. It returns the ids of the wakes that had a delivery
// attempt other than ACCEPTED (a provider refused them at least once).
func chCheck(ctx context.Context, st *stack, sc *scenario.Scenario, sum *report.Summary, regs []registration,
	events []analysis.Event, loadStart, lastAnswer time.Time, logf func(string, ...any)) (retried map[string]bool) {
	c := &sum.ClickHouse
	disagree := func(format string, args ...any) {
		c.Disagreements = append(c.Disagreements, fmt.Sprintf(format, args...))
	}
	defer func() {
		c.Agree = len(c.Disagreements) == 0
		for _, d := range c.Disagreements {
			sum.Failures = append(sum.Failures, "ClickHouse disagrees: "+d)
		}
	}()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{st.chTCP}, Auth: clickhouse.Auth{Database: st.database}})
	if err != nil {
		disagree("cannot connect: %v", err)
		return
	}
	defer conn.Close()
	from := loadStart.Add(-2 * time.Second).UTC()
	to := lastAnswer.Add(time.Second).UTC()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	params := func(extra map[string]string) context.Context {
		m := map[string]string{"from": from.Format(chLayout), "to": to.Format(chLayout)}
		for k, v := range extra {
			m[k] = v
		}
		return clickhouse.Context(qctx, clickhouse.WithParameters(m))
	}
	distinct := sum.Wakes - sum.DuplicatePush
	began := time.Now()
	var events64, delivered64 uint64
	for {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		e1 := conn.QueryRow(wctx, "SELECT count() FROM events FINAL WHERE accepted_at >= {from:DateTime64(3)} AND accepted_at < {to:DateTime64(3)}",
			clickhouse.Named("from", from.Format(chLayout)), clickhouse.Named("to", to.Format(chLayout))).Scan(&events64)
		e2 := conn.QueryRow(wctx, "SELECT uniqExact(wake_id) FROM deliveries FINAL WHERE outcome = 'ACCEPTED' AND created_at >= {from:DateTime64(3)}", clickhouse.Named("from", from.Format(chLayout))).Scan(&delivered64)
		wcancel()
		if e1 == nil && e2 == nil && int(events64) >= sum.Accepted && int(delivered64) >= distinct {
			break
		}
		if time.Since(began) > 120*time.Second || ctx.Err() != nil {
			disagree("the recorder did not catch up within 120 s: %d events (want ≥ %d), %d delivered wakes (want ≥ %d) (errors %v, %v)",
				events64, sum.Accepted, delivered64, distinct, e1, e2)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.CaughtUpAfter = time.Since(began).Round(10 * time.Millisecond).String()
	logf("recorder caught up after %s", c.CaughtUpAfter)
	c.Events = int(events64)
	if c.Events < sum.Accepted || c.Events > sum.Sent {
		disagree("%d events recorded, the load test had %d accepted of %d sent", c.Events, sum.Accepted, sum.Sent)
	}
	rows, err := queryRows(params(nil), conn, "SELECT count() AS n FROM wakes FINAL WHERE created_at >= {from:DateTime64(3)}")
	if err == nil && len(rows) == 1 {
		c.Wakes = asInt(rows[0]["n"])
	}
	rows, err = queryRows(params(nil), conn, "SELECT outcome, count() AS n FROM deliveries FINAL WHERE created_at >= {from:DateTime64(3)} GROUP BY outcome")
	if err != nil {
		disagree("deliveries: %v", err)
	}
	for _, r := range rows {
		o := fmt.Sprint(r["outcome"])
		sum.Deliveries[o] = asInt(r["n"])
		if o != "ACCEPTED" {
			sum.ProviderErrors += asInt(r["n"])
		}
	}
	rows, err = queryRows(params(nil), conn, "SELECT DISTINCT toString(wake_id) AS id FROM deliveries WHERE outcome != 'ACCEPTED' AND created_at >= {from:DateTime64(3)}")
	if err != nil {
		disagree("deliveries: %v", err)
	}
	retried = make(map[string]bool, len(rows))
	for _, r := range rows {
		retried[fmt.Sprint(r["id"])] = true
	}

	text, err := chschema.Query("uncovered_events")
	if err != nil {
		disagree("uncovered_events: %v", err)
		return
	}
	for _, a := range sc.Apps {
		// With faults, the slack includes the longest grace an event got (chaos_check.go).
		rows, err := queryRows(params(map[string]string{"min_interval_ms": strconv.FormatInt(a.MinInterval.D().Milliseconds(), 10),
			"slack_ms": strconv.FormatInt((sc.Slack.D() + maxGrace(events)).Milliseconds(), 10), "app": a.ID}), conn, text)
		if err != nil {
			disagree("uncovered_events: %v", err)
			return
		}
		c.Uncovered += len(rows)
		for k, r := range rows {
			if k < 5 {
				sum.UncoveredList = append(sum.UncoveredList, fmt.Sprintf("ClickHouse: %v", r))
			}
		}
	}
	if (sum.Uncovered == 0) != (c.Uncovered == 0) {
		disagree("uncovered events: load test %d, uncovered_events %d", sum.Uncovered, c.Uncovered)
	}

	text, err = chschema.Query("latency_quantiles")
	if err != nil {
		disagree("latency_quantiles: %v", err)
		return
	}
	rows, err = queryRows(params(map[string]string{"horizon_s": "600", "app": ""}), conn, text)
	if err != nil {
		disagree("latency_quantiles: %v", err)
		return
	}
	for _, r := range rows {
		c.LatencyEvents += asInt(r["events"])
		c.Undelivered += asInt(r["undelivered"])
		c.P50MaxMinuteMS = max(c.P50MaxMinuteMS, asFloat(r["p50_ms"]))
		c.P99MaxMinuteMS = max(c.P99MaxMinuteMS, asFloat(r["p99_ms"]))
		c.MaxMS = max(c.MaxMS, asFloat(r["max_ms"]))
	}
	if sum.Uncovered == 0 && c.Undelivered > 0 {
		disagree("latency_quantiles counts %d undelivered events, the load test saw every event covered", c.Undelivered)
	}
	// ClickHouse measures acceptance → delivery recorded and may attribute an event to a later
	// wake than the first one after its send (wakes list their event ids), so it can exceed the
	// load test's worst case by up to one interval plus processing, never by more.
	// With faults, plus the longest grace an event got (chaos_check.go).
	limit := float64(sum.E2E.Max+sc.MaxMinInterval()+3*time.Second+maxGrace(events)) / 1e6
	if c.MaxMS > limit {
		disagree("latency_quantiles max %.0f ms exceeds the load test's worst e2e %.0f ms + min_interval + 3 s", c.MaxMS, float64(sum.E2E.Max)/1e6)
	}
	if sum.Uncovered == 0 && c.LatencyEvents != c.Events {
		disagree("latency_quantiles covers %d events, events table %d", c.LatencyEvents, c.Events)
	}
	return retried
}

func queryRows(ctx context.Context, conn driver.Conn, q string) ([]map[string]any, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := rows.Columns()
	var out []map[string]any
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, err
		}
		m := map[string]any{}
		for i, v := range vals {
			m[cols[i]] = reflect.ValueOf(v).Elem().Interface()
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func asInt(v any) int {
	f := asFloat(v)
	return int(f)
}

func asFloat(v any) float64 {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return 0
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	}
	return 0
}
