package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/kafkatopic"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// burstTolerance: two wakes of a device this much less than its interval apart are still
// fine (the coalescer stamps a trailing wake when its timer fires, never earlier; this only
// absorbs timestamp rounding).
const burstTolerance = 100 * time.Millisecond

// applyGrace gives every accepted event that a fault may have delayed until the fault's
// recovery bound: an event accepted from one interval + slack before the fault's start until
// its end + max_recovery must be woken by end + max_recovery + interval + slack.
func applyGrace(events []analysis.Event, runs []*faultRun, slack time.Duration) {
	for _, r := range runs {
		if r.start.IsZero() {
			continue
		}
		end := r.end
		if end.IsZero() {
			end = r.start.Add(r.spec.Duration.D())
		}
		deadline := end.Add(r.spec.MaxRecovery.D())
		for i := range events {
			e := &events[i]
			if !e.Accepted {
				continue
			}
			acc := e.Answered
			if acc.Before(e.Sent) {
				acc = e.Sent
			}
			if acc.Before(r.start.Add(-e.Interval-slack)) || acc.After(deadline) {
				continue
			}
			e.Grace = max(e.Grace, deadline.Sub(acc))
		}
	}
}

// maxGrace is the longest grace any event got.
func maxGrace(events []analysis.Event) time.Duration {
	var g time.Duration
	for _, e := range events {
		g = max(g, e.Grace)
	}
	return g
}

// judgeFaults measures every fault's recovery, the devices it touched and their extra wakes
// against the oracle, and adds the failures to sum.
//
// received are the events the pipeline received (push.events, kafkaCheck); the oracle's
// minimum per device is replayed over them (the generator's own view when nil).
func judgeFaults(sum *report.Summary, sc *scenario.Scenario, events, received []analysis.Event, v views,
	arrivals map[int32][]analysis.Arrival, runs []*faultRun, loadStart, until time.Time) {
	thr, win := sc.Recovery.Threshold.D(), sc.Recovery.Window.D()
	c := &report.Chaos{Threshold: thr, Window: win, Pass: true}
	sum.Chaos = c

	if received == nil {
		received = events
	}
	oracle, _ := analysis.OracleDeviceWakes(received, boundaryGuard)
	extra := map[int32]int{}
	for dev, as := range arrivals {
		if dev >= 0 && len(as) > oracle[dev] {
			extra[dev] = len(as) - oracle[dev]
		}
	}
	var ws []analysis.Waiting
	for i, e := range events {
		if !e.Accepted || !v.leading[i] {
			continue
		}
		w := analysis.Waiting{Intended: e.Intended}
		if v.e2e[i] >= 0 {
			w.Covered = e.Intended.Add(v.e2e[i])
		}
		ws = append(ws, w)
	}

	touchedAny := map[int32]bool{}
	for _, r := range runs {
		f := report.FaultResult{Name: r.spec.Name(), Kind: r.spec.Kind, Target: r.spec.Target, MaxRecovery: r.spec.MaxRecovery.D(),
			Ready: -1, CatchUp: r.catchUp, Problems: slices.Clone(r.errs)}
		if r.start.IsZero() {
			f.Problems = append(f.Problems, "never injected")
			c.Faults = append(c.Faults, f)
			c.Pass = false
			continue
		}
		end := r.end
		if end.IsZero() {
			end = r.start.Add(r.spec.Duration.D())
		}
		f.Start, f.Duration = r.start.Sub(loadStart), end.Sub(r.start)
		if !r.ready.IsZero() && r.spec.Kind != scenario.FaultKafkaFreeze && r.spec.Kind != scenario.FaultAPNs503 && r.spec.Kind != scenario.FaultAPNs429 {
			f.Ready = r.ready.Sub(end)
		}
		f.Recovery, f.Recovered = analysis.Recovered(ws, end, until, thr, win)
		recoveredAt := end.Add(f.Recovery)
		if !f.Recovered {
			f.Problems = append(f.Problems, "the leading-edge lag never stayed under the threshold before the run ended")
			recoveredAt = end.Add(f.MaxRecovery)
		} else if f.Recovery > f.MaxRecovery {
			f.Problems = append(f.Problems, fmt.Sprintf("recovery %s is over its bound %s", f.Recovery.Round(100*time.Millisecond), f.MaxRecovery))
		}
		if f.CatchUp >= 0 && !r.caughtUp {
			f.Problems = append(f.Problems, "the recorder did not catch up")
		}

		touched := map[int32]bool{}
		for i, e := range events {
			if e.Sent.Before(r.start.Add(-e.Interval)) || e.Sent.After(recoveredAt) {
				continue
			}
			touched[e.Device] = true
			switch {
			case e.Accepted:
				f.TouchedEvents++
				if v.e2e[i] < 0 {
					f.Uncovered++
				}
			case !e.Sent.Before(r.start):
				f.Refused++
			}
		}
		f.TouchedDevices = len(touched)
		for dev := range touched {
			touchedAny[dev] = true
			if n := extra[dev]; n > 0 {
				f.ExtraWakes += n
				f.DevicesWithExtra++
				f.MaxExtra = max(f.MaxExtra, n)
			}
		}
		if f.MaxExtra > 1 {
			f.Problems = append(f.Problems, fmt.Sprintf("a touched device received %d wakes beyond the oracle's minimum (at most 1 allowed)", f.MaxExtra))
		}
		if f.Uncovered > 0 {
			f.Problems = append(f.Problems, fmt.Sprintf("%d touched events lost", f.Uncovered))
		}
		f.Pass = len(f.Problems) == 0
		c.Pass = c.Pass && f.Pass
		c.Faults = append(c.Faults, f)
	}
	for dev, n := range extra {
		if !touchedAny[dev] {
			c.UntouchedWithExtra++
			c.MaxExtraUntouched = max(c.MaxExtraUntouched, n)
		}
	}
	if c.MaxExtraUntouched > 1 {
		c.Pass = false
		sum.Failures = append(sum.Failures, fmt.Sprintf("CHAOS: a device no fault touched received %d wakes beyond the oracle's minimum", c.MaxExtraUntouched))
	}
	for _, f := range c.Faults {
		if !f.Pass {
			sum.Failures = append(sum.Failures, fmt.Sprintf("CHAOS: %s at %s: %s", f.Name, f.Start.Round(100*time.Millisecond), strings.Join(f.Problems, "; ")))
		}
	}
}

// kafkaTables maps each topic to the ClickHouse table the recorder writes its records to.
var kafkaTables = []struct{ topic, table string }{
	{topics.Events, "events"},
	{topics.Registrations, "registrations"},
	{topics.Wakes, "wakes"},
	{topics.Deliveries, "deliveries"},
	{topics.Receipts, "receipts"},
	{topics.WakesDLQ, "dead_letters"},
	{topics.EventsDLQ, "dead_letters"},
}

// kafkaCheck reads every topic once the pipeline is quiet and checks that ClickHouse holds
// exactly its distinct records, that no dead letter was written, and that no device got two
// distinct non-urgent wakes closer than its interval (a duplicate burst). Problems become
// failures in sum.
//
// It returns the events push.events holds, one per event id, as the pipeline received them
// (accepted_at as their send time): ingest may have written an event it then failed to
// acknowledge (its produce deadline passed), and the pipeline rightly wakes for it, so the
// extra-wake judgement replays the oracle over these.
func kafkaCheck(ctx context.Context, st *stack, sc *scenario.Scenario, plan *scenario.Plan, regs []registration,
	wp *scenario.WarmupPlan, warmRegs []registration, sum *report.Summary, logf func(string, ...any)) (received []analysis.Event) {
	k := &report.KafkaCheck{}
	sum.Kafka = k
	fail := func(format string, args ...any) { sum.Failures = append(sum.Failures, fmt.Sprintf(format, args...)) }

	// Quiet: no topic grew for 3 s (bounded by a minute).
	var last int64 = -1
	for quietSince, began := time.Now(), time.Now(); time.Since(began) < time.Minute; time.Sleep(500 * time.Millisecond) {
		var n int64
		for _, t := range kafkaTables {
			c, err := kafkatopic.Count(ctx, st.kafkaAddr, t.topic)
			if err != nil {
				fail("KAFKA: count %s: %v", t.topic, err)
				return nil
			}
			n += c
		}
		if n != last {
			last, quietSince = n, time.Now()
		} else if time.Since(quietSince) >= 3*time.Second {
			break
		}
	}

	// The warm-up devices follow the scenario's (indices len(plan.Devices)+k): their wakes are
	// checked for duplicate bursts like any others, their events are not the load phase's.
	devIndex := make(map[string]int32, len(regs)+len(warmRegs))
	for i, r := range regs {
		devIndex[r.DeviceID] = int32(i)
	}
	for k, r := range warmRegs {
		devIndex[r.DeviceID] = int32(len(plan.Devices) + k)
	}
	interval := func(dev int32) time.Duration {
		switch n := len(plan.Devices); {
		case dev >= 0 && int(dev) < n:
			return sc.Apps[plan.Devices[dev].App].MinInterval.D()
		case wp != nil && int(dev) >= n && int(dev)-n < len(wp.Devices):
			return sc.Apps[wp.Devices[int(dev)-n].App].MinInterval.D()
		}
		return sc.MaxMinInterval()
	}
	distinct := map[string]map[string]bool{}
	var wakes []analysis.Wake
	for _, t := range kafkaTables {
		ids := map[string]bool{}
		distinct[t.topic] = ids
		tc := report.TopicCount{Topic: t.topic, Table: t.table}
		err := kafkatopic.Read(ctx, st.kafkaAddr, t.topic, func(m kafka.Message) {
			tc.Records++
			schema := kafkaHeader(m, records.HeaderSchema)
			if m.Value == nil && schema == "" {
				return // a tombstone (compacted push.registrations): no row
			}
			msg, err := records.Decode(schema, m.Value)
			if err != nil {
				ids[fmt.Sprintf("undecodable:%d:%d", m.Partition, m.Offset)] = true
				return
			}
			var fresh bool
			if rec, ok := msg.(interface{ GetId() string }); ok {
				fresh = !ids[rec.GetId()]
				ids[rec.GetId()] = true
			}
			switch r := msg.(type) {
			case *wakepushv1.PushEvent:
				if dev, ok := devIndex[r.GetDeviceId()]; ok && fresh && int(dev) < len(plan.Devices) {
					at := r.GetAcceptedAt().AsTime()
					received = append(received, analysis.Event{Device: dev, Intended: at, Sent: at, Answered: at, Accepted: true,
						Urgent: r.GetUrgent(), Interval: interval(dev)})
				}
			case *wakepushv1.Wake:
				dev, ok := devIndex[r.GetDeviceId()]
				if !ok {
					dev = -1
				}
				wakes = append(wakes, analysis.Wake{ID: r.GetId(), Device: dev, Created: r.GetCreatedAt().AsTime(),
					Urgent: r.GetReason() == wakepushv1.WakeReason_WAKE_REASON_URGENT})
			case *wakepushv1.DeadLetter:
				if len(k.DeadLetterReasons) < 10 {
					k.DeadLetterReasons = append(k.DeadLetterReasons, fmt.Sprintf("%s: %s (stage %s, from %s/%d@%d)", t.topic, r.GetReason(), r.GetStage(), r.GetTopic(), r.GetPartition(), r.GetOffset()))
				}
			}
		})
		if err != nil {
			fail("KAFKA: read %s: %v", t.topic, err)
			return nil
		}
		tc.Distinct = len(ids)
		k.Topics = append(k.Topics, tc)
		if t.table == "dead_letters" {
			k.DeadLetters += tc.Records
		}
	}
	if k.DeadLetters > 0 {
		fail("DLQ: %d dead letters (push.wakes.dlq, push.events.dlq); the scenario causes none on purpose", k.DeadLetters)
	}

	bursts := analysis.Bursts(wakes, interval, burstTolerance)
	k.Bursts = len(bursts)
	for i, b := range bursts {
		if i == 10 {
			break
		}
		k.BurstSample = append(k.BurstSample, fmt.Sprintf("device %d: wake %s at %s, then %s %s later (interval %s)", b.Device, b.First.ID,
			b.First.Created.UTC().Format("15:04:05.000"), b.Second.ID, b.Second.Created.Sub(b.First.Created).Round(time.Millisecond), interval(b.Device)))
	}
	if k.Bursts > 0 {
		fail("BURSTS: %d pairs of distinct non-urgent wakes closer than the device's interval", k.Bursts)
	}

	// ClickHouse: every table holds its topics' distinct records (the recorder may still be
	// flushing: wait up to 2 min).
	want := map[string]int{}
	for _, t := range k.Topics {
		want[t.Table] += t.Distinct
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{st.chTCP}, Auth: clickhouse.Auth{Database: st.database}})
	if err != nil {
		fail("KAFKA vs ClickHouse: %v", err)
		return received
	}
	defer conn.Close()
	began := time.Now()
	rows := map[string]int{}
	for {
		var qerr error
		for table := range want {
			var n uint64
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := conn.QueryRow(qctx, "SELECT count() FROM "+table+" FINAL").Scan(&n); err != nil {
				qerr = err
			}
			cancel()
			rows[table] = int(n)
		}
		agree := qerr == nil
		for table, n := range want {
			agree = agree && rows[table] == n
		}
		if agree {
			k.CountsAgree = true
			k.CountsAfter = time.Since(began).Round(10 * time.Millisecond).String()
			break
		}
		if time.Since(began) > 2*time.Minute || ctx.Err() != nil {
			if qerr != nil {
				fail("KAFKA vs ClickHouse: %v", qerr)
			}
			break
		}
		time.Sleep(time.Second)
	}
	for i := range k.Topics {
		t := &k.Topics[i]
		t.Rows = rows[t.Table]
	}
	if !k.CountsAgree {
		var parts []string
		for table, n := range want {
			if rows[table] != n {
				parts = append(parts, fmt.Sprintf("%s: %d rows, Kafka %d distinct records", table, rows[table], n))
			}
		}
		slices.Sort(parts)
		fail("KAFKA vs ClickHouse: counts differ after 2 min: %s", strings.Join(parts, "; "))
	}
	logf("Kafka vs ClickHouse: agree %v; %d dead letters; %d duplicate bursts", k.CountsAgree, k.DeadLetters, k.Bursts)
	return received
}

func kafkaHeader(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
