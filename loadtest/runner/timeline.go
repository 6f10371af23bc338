package runner

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

// maxTimelines bounds how many uncovered events get a timeline in the report.
const maxTimelines = 3

// timelines explains uncovered events: for each of the first few, what happened to its device
// around it, from ClickHouse (events accepted, wakes created with what they covered, delivery
// attempts with their outcome and provider latency) and from the provider mock (arrivals), in
// time order. An uncovered event is late somewhere between its answer and the mock, and the
// timeline shows where: a wake created late (coalescer), a first attempt long after the wake
// (Kafka or sender), or attempts refused and retried (provider answers).
func timelines(ctx context.Context, st *stack, sc *scenario.Scenario, regs []registration, events []analysis.Event,
	uncovered []int, arrivals map[int32][]analysis.Arrival) ([]string, error) {
	if len(uncovered) == 0 {
		return nil, nil
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{st.chTCP}, Auth: clickhouse.Auth{Database: st.database}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	var out []string
	done := map[int32]bool{}
	for _, i := range uncovered {
		e := events[i]
		if done[e.Device] || len(done) == maxTimelines || int(e.Device) >= len(regs) {
			continue
		}
		done[e.Device] = true
		from := e.Sent.Add(-e.Interval - 2*time.Second)
		to := e.Answered.Add(e.Interval + sc.Slack.D() + 30*time.Second)
		lines, err := deviceTimeline(qctx, conn, regs[e.Device].DeviceID, from, to)
		if err != nil {
			return out, err
		}
		for _, a := range arrivals[e.Device] {
			if !a.At.Before(from) && a.At.Before(to) {
				lines = append(lines, timelineLine{a.At, fmt.Sprintf("mock received wake %s", a.WakeID)})
			}
		}
		lines = append(lines, timelineLine{e.Sent, "load test sent the uncovered event"}, timelineLine{e.Answered, "… and got its answer"})
		slices.SortStableFunc(lines, func(a, b timelineLine) int { return a.at.Compare(b.at) })
		out = append(out, fmt.Sprintf("device %d, uncovered event sent %s (min_interval %s):", e.Device, e.Sent.UTC().Format("15:04:05.000"), e.Interval))
		for _, l := range lines {
			out = append(out, fmt.Sprintf("  %s  %s", l.at.UTC().Format("15:04:05.000"), l.what))
		}
	}
	return out, nil
}

type timelineLine struct {
	at   time.Time
	what string
}

// deviceTimeline reads a device's events, wakes and deliveries in [from, to) from ClickHouse.
func deviceTimeline(ctx context.Context, conn clickhouse.Conn, deviceID string, from, to time.Time) ([]timelineLine, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(map[string]string{
		"device": deviceID, "from": from.UTC().Format(chLayout), "to": to.UTC().Format(chLayout)}))
	var out []timelineLine
	rows, err := queryRows(ctx, conn, `SELECT accepted_at AS at, id, urgent FROM events FINAL
		WHERE device_id = {device:String} AND accepted_at >= {from:DateTime64(3)} AND accepted_at < {to:DateTime64(3)}`)
	if err != nil {
		return nil, fmt.Errorf("timeline events: %w", err)
	}
	for _, r := range rows {
		out = append(out, timelineLine{asTime(r["at"]), fmt.Sprintf("event %v accepted (urgent=%v)", r["id"], r["urgent"])})
	}
	rows, err = queryRows(ctx, conn, `SELECT created_at AS at, id, reason, event_count, first_event_at, last_event_at FROM wakes FINAL
		WHERE device_id = {device:String} AND created_at >= {from:DateTime64(3)} AND created_at < {to:DateTime64(3)}`)
	if err != nil {
		return nil, fmt.Errorf("timeline wakes: %w", err)
	}
	for _, r := range rows {
		out = append(out, timelineLine{asTime(r["at"]), fmt.Sprintf("wake %v created (%v, %v events accepted %s–%s)", r["id"], r["reason"],
			r["event_count"], asTime(r["first_event_at"]).UTC().Format("15:04:05.000"), asTime(r["last_event_at"]).UTC().Format("15:04:05.000"))})
	}
	rows, err = queryRows(ctx, conn, `SELECT created_at AS at, wake_id, outcome, attempt, status_code, reason, provider_latency_ms FROM deliveries FINAL
		WHERE device_id = {device:String} AND created_at >= {from:DateTime64(3)} AND created_at < {to:DateTime64(3)}`)
	if err != nil {
		return nil, fmt.Errorf("timeline deliveries: %w", err)
	}
	for _, r := range rows {
		status := fmt.Sprint(r["status_code"])
		if reason := fmt.Sprint(r["reason"]); reason != "" {
			status += " " + reason
		}
		out = append(out, timelineLine{asTime(r["at"]), fmt.Sprintf("delivery of wake %v recorded: attempt %v %v (status %s, provider answered in %.0f ms)",
			r["wake_id"], r["attempt"], r["outcome"], status, asFloat(r["provider_latency_ms"]))})
	}
	return out, nil
}

func asTime(v any) time.Time {
	if t, ok := v.(time.Time); ok {
		return t
	}
	return time.Time{}
}
