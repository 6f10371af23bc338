package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/services/internal/config"
)

// stats answers "how is wakepush doing" for a time range: the shipped queries stats_summary
// (events, wakes, delivered share, lost events, stage latencies; in total, per app and
// platform, per XMPP server) and stats_outcomes (delivery records by outcome and reason). It
// only reads, and passes every value as a query parameter.

// statsOptions are the stats command's settings.
type statsOptions struct {
	Since, Until string
	App          string
	Format       string
	MinInterval  time.Duration
	Slack        time.Duration
	Horizon      time.Duration
}

// stageQuantiles are a stage's latency quantiles in ms; nil when no event reached the stage.
type stageQuantiles struct {
	P50 *float64 `json:"p50"`
	P90 *float64 `json:"p90"`
	P99 *float64 `json:"p99"`
}

// statsGroup is one row of stats_summary.
type statsGroup struct {
	Level          string                    `json:"level"` // total, app, server
	App            string                    `json:"app"`
	Platform       string                    `json:"platform"`
	Sender         string                    `json:"sender"`
	Events         uint64                    `json:"events"`
	Wakes          uint64                    `json:"wakes"`
	WakesPerEvent  float64                   `json:"wakes_per_event"`
	Delivered      uint64                    `json:"delivered"`
	DeliveredShare float64                   `json:"delivered_share"`
	Uncovered      uint64                    `json:"uncovered"`
	Pending        uint64                    `json:"pending"`
	Receipted      uint64                    `json:"receipted"`
	LatencyMS      map[string]stageQuantiles `json:"latency_ms"`
}

// statsOutcome is one row of stats_outcomes.
type statsOutcome struct {
	Level         string   `json:"level"` // total, app
	App           string   `json:"app"`
	Platform      string   `json:"platform"`
	Outcome       string   `json:"outcome"`
	Reason        string   `json:"reason"`
	Deliveries    uint64   `json:"deliveries"`
	Wakes         uint64   `json:"wakes"`
	Share         float64  `json:"share"`
	StatusCodes   []uint16 `json:"status_codes"`
	ProviderP50MS *float64 `json:"provider_p50_ms"`
	ProviderP99MS *float64 `json:"provider_p99_ms"`
}

// statsReport is what stats prints.
type statsReport struct {
	From     time.Time      `json:"from"`
	To       time.Time      `json:"to"`
	App      string         `json:"app"` // "" = all apps
	Groups   []statsGroup   `json:"groups"`
	Outcomes []statsOutcome `json:"outcomes"`
}

// stages are the latency stages, in pipeline order, with their table headings.
var stages = []struct{ key, title string }{
	{"publish_to_wake", "publish→wake"},
	{"wake_to_provider", "wake→provider"},
	{"provider_to_receipt", "provider→receipt"},
}

// stats is `wakepushctl stats`: events, wakes, wakes per event, delivered share, uncovered (lost
// or late) events, latency p50/p90/p99 per stage (publish → wake → provider accepted → device
// receipt) and delivery outcomes by reason, in total, per app and platform and per XMPP server.
// Defaults: the last hour, all apps, a table.
func stats(ctx context.Context, args []string) error { return statsTo(ctx, os.Stdout, args) }

func statsTo(ctx context.Context, w io.Writer, args []string) error {
	var (
		o  statsOptions
		ch chSettings
	)
	s := config.New("wakepushctl stats")
	ch.register(s)
	s.String(&o.Since, "since", "WAKEPUSH_STATS_SINCE", "1h", "start: a duration before now (1h, 90m), now-…, RFC 3339 (2026-01-02T15:04:05Z) or 2026-01-02 15:04:05 (UTC)")
	s.String(&o.Until, "until", "WAKEPUSH_STATS_UNTIL", "now", "end (exclusive), in the same forms as -since")
	s.String(&o.App, "app", "WAKEPUSH_STATS_APP", "", "only this app (empty: all apps)")
	s.String(&o.Format, "format", "WAKEPUSH_STATS_FORMAT", "table", "table, json or csv (csv: one row per group and metric)")
	s.Duration(&o.MinInterval, "min-interval", "WAKEPUSH_STATS_MIN_INTERVAL", 10*time.Second, "coalescing interval: an event with no wake within min-interval + slack is uncovered")
	s.Duration(&o.Slack, "slack", "WAKEPUSH_STATS_SLACK", 5*time.Second, "processing time allowed on top of min-interval")
	s.Duration(&o.Horizon, "horizon", "WAKEPUSH_STATS_HORIZON", 10*time.Minute, "how long after -until wakes, deliveries and receipts of the range's events still count")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch o.Format {
	case "table", "json", "csv":
	default:
		return fmt.Errorf("stats: -format %q: want table, json or csv", o.Format)
	}
	now := time.Now()
	from, err := chschema.ParseTime(o.Since, now)
	if err != nil {
		return fmt.Errorf("stats: -since: %w", err)
	}
	to, err := chschema.ParseTime(o.Until, now)
	if err != nil {
		return fmt.Errorf("stats: -until: %w", err)
	}
	if !from.Before(to) {
		return fmt.Errorf("stats: -since (%s) must be before -until (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	for name, d := range map[string]time.Duration{"min-interval": o.MinInterval, "slack": o.Slack, "horizon": o.Horizon} {
		if d < 0 {
			return fmt.Errorf("stats: -%s must not be negative", name)
		}
	}
	conn, err := ch.open()
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := collectStats(ctx, conn, o, from, to, now)
	if err != nil {
		return err
	}
	switch o.Format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "csv":
		return writeStatsCSV(w, rep)
	}
	return writeStatsTable(w, rep)
}

// collectStats runs the two stats queries for [from, to).
func collectStats(ctx context.Context, conn driver.Conn, o statsOptions, from, to, now time.Time) (*statsReport, error) {
	rep := &statsReport{From: from.UTC().Truncate(time.Millisecond), To: to.UTC().Truncate(time.Millisecond), App: o.App,
		Groups: []statsGroup{}, Outcomes: []statsOutcome{}}
	args := map[string]string{
		"from": rep.From.Format(time.RFC3339Nano), "to": rep.To.Format(time.RFC3339Nano), "app": o.App,
		"horizon_s": o.Horizon.Round(time.Second).String(), "min_interval_ms": o.MinInterval.Round(time.Millisecond).String(),
		"slack_ms": o.Slack.Round(time.Millisecond).String(),
	}
	run := func(name string, each func(driver.Rows) error) error {
		q, err := chschema.LoadQuery(name)
		if err != nil {
			return err
		}
		given := map[string]string{}
		for _, p := range q.Params {
			if v, ok := args[p.Name]; ok {
				given[p.Name] = v
			}
		}
		params, err := q.Bind(given, now)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows, err := conn.Query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), q.Text)
		if err != nil {
			return fmt.Errorf("run %s: %w", name, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return rows.Err()
	}
	err := run("stats_summary", func(rows driver.Rows) error {
		var r struct {
			Level          string  `ch:"level"`
			App            string  `ch:"app"`
			Platform       string  `ch:"platform"`
			Sender         string  `ch:"sender"`
			Events         uint64  `ch:"events"`
			Wakes          uint64  `ch:"wakes"`
			WakesPerEvent  float64 `ch:"wakes_per_event"`
			Delivered      uint64  `ch:"delivered"`
			DeliveredShare float64 `ch:"delivered_share"`
			Uncovered      uint64  `ch:"uncovered"`
			Pending        uint64  `ch:"pending"`
			Receipted      uint64  `ch:"receipted"`
			PW50           float64 `ch:"publish_to_wake_p50_ms"`
			PW90           float64 `ch:"publish_to_wake_p90_ms"`
			PW99           float64 `ch:"publish_to_wake_p99_ms"`
			WP50           float64 `ch:"wake_to_provider_p50_ms"`
			WP90           float64 `ch:"wake_to_provider_p90_ms"`
			WP99           float64 `ch:"wake_to_provider_p99_ms"`
			PR50           float64 `ch:"provider_to_receipt_p50_ms"`
			PR90           float64 `ch:"provider_to_receipt_p90_ms"`
			PR99           float64 `ch:"provider_to_receipt_p99_ms"`
		}
		if err := rows.ScanStruct(&r); err != nil {
			return err
		}
		rep.Groups = append(rep.Groups, statsGroup{
			Level: r.Level, App: r.App, Platform: r.Platform, Sender: r.Sender,
			Events: r.Events, Wakes: r.Wakes, WakesPerEvent: r.WakesPerEvent, Delivered: r.Delivered,
			DeliveredShare: r.DeliveredShare, Uncovered: r.Uncovered, Pending: r.Pending, Receipted: r.Receipted,
			LatencyMS: map[string]stageQuantiles{
				"publish_to_wake":     {num(r.PW50), num(r.PW90), num(r.PW99)},
				"wake_to_provider":    {num(r.WP50), num(r.WP90), num(r.WP99)},
				"provider_to_receipt": {num(r.PR50), num(r.PR90), num(r.PR99)},
			},
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = run("stats_outcomes", func(rows driver.Rows) error {
		var r struct {
			Level       string   `ch:"level"`
			App         string   `ch:"app"`
			Platform    string   `ch:"platform"`
			Outcome     string   `ch:"outcome"`
			Reason      string   `ch:"reason"`
			Deliveries  uint64   `ch:"deliveries"`
			Wakes       uint64   `ch:"wakes"`
			Share       float64  `ch:"share"`
			StatusCodes []uint16 `ch:"status_codes"`
			P50         float64  `ch:"provider_p50_ms"`
			P99         float64  `ch:"provider_p99_ms"`
		}
		if err := rows.ScanStruct(&r); err != nil {
			return err
		}
		rep.Outcomes = append(rep.Outcomes, statsOutcome{Level: r.Level, App: r.App, Platform: r.Platform, Outcome: r.Outcome,
			Reason: r.Reason, Deliveries: r.Deliveries, Wakes: r.Wakes, Share: r.Share, StatusCodes: r.StatusCodes,
			ProviderP50MS: num(r.P50), ProviderP99MS: num(r.P99)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// With no events at all, the summary's GROUPING SETS still yield the total row (all zero).
	return rep, nil
}

// num is v, or nil for NaN (a quantile over no values).
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// label names a group's row: "total", "APP PLATFORM", or "  SENDER" under its app.
func (g statsGroup) label() string {
	switch g.Level {
	case "total":
		return "total"
	case "app":
		return g.App + " " + g.Platform
	}
	sender := g.Sender
	if sender == "" {
		sender = "(no sender)"
	}
	return "  " + sender
}

func fmtMS(v *float64) string {
	if v == nil {
		return "-"
	}
	if *v >= 100 {
		return strconv.FormatFloat(*v, 'f', 0, 64)
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

func fmtShare(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + " %" }

func writeStatsTable(w io.Writer, rep *statsReport) error {
	apps := "all apps"
	if rep.App != "" {
		apps = "app " + rep.App
	}
	fmt.Fprintf(w, "wakepush stats %s → %s UTC (%s)\n", rep.From.Format("2006-01-02 15:04:05"), rep.To.Format("2006-01-02 15:04:05"), apps)

	// Labels are padded to one width so they read left-aligned in right-aligned tables.
	width := len("latency ms")
	for _, g := range rep.Groups {
		width = max(width, utf8.RuneCountInString(g.label()))
	}
	for _, o := range rep.Outcomes {
		width = max(width, utf8.RuneCountInString(o.label()))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-utf8.RuneCountInString(s)) }
	table := func(header []string, rows [][]string) error {
		fmt.Fprintln(w)
		// No padding from the tabwriter (it would go left of the labels too): the value cells
		// carry their own two leading spaces.
		tw := tabwriter.NewWriter(w, 0, 4, 0, ' ', tabwriter.AlignRight)
		line := func(cells []string) {
			fmt.Fprintln(tw, pad(cells[0])+"\t  "+strings.Join(cells[1:], "\t  ")+"\t")
		}
		line(header)
		for _, r := range rows {
			line(r)
		}
		return tw.Flush()
	}

	var rows [][]string
	for _, g := range rep.Groups {
		rows = append(rows, []string{g.label(), strconv.FormatUint(g.Events, 10), strconv.FormatUint(g.Wakes, 10),
			strconv.FormatFloat(g.WakesPerEvent, 'f', 3, 64), fmtShare(g.DeliveredShare), strconv.FormatUint(g.Uncovered, 10),
			strconv.FormatUint(g.Pending, 10), strconv.FormatUint(g.Receipted, 10)})
	}
	if err := table([]string{"summary", "events", "wakes", "wakes/event", "delivered", "uncovered", "pending", "receipted"}, rows); err != nil {
		return err
	}

	header := []string{"latency ms"}
	for _, st := range stages {
		header = append(header, st.title+" p50", "p90", "p99")
	}
	rows = nil
	for _, g := range rep.Groups {
		r := []string{g.label()}
		for _, st := range stages {
			q := g.LatencyMS[st.key]
			r = append(r, fmtMS(q.P50), fmtMS(q.P90), fmtMS(q.P99))
		}
		rows = append(rows, r)
	}
	if err := table(header, rows); err != nil {
		return err
	}

	rows = nil
	for _, o := range rep.Outcomes {
		codes := make([]string, len(o.StatusCodes))
		for i, c := range o.StatusCodes {
			codes[i] = strconv.Itoa(int(c))
		}
		reason := o.Reason
		if reason == "" {
			reason = "-"
		}
		rows = append(rows, []string{o.label(), o.Outcome, reason, strconv.FormatUint(o.Deliveries, 10), fmtShare(o.Share),
			strconv.FormatUint(o.Wakes, 10), strings.Join(codes, ","), fmtMS(o.ProviderP50MS), fmtMS(o.ProviderP99MS)})
	}
	if len(rows) == 0 {
		rows = append(rows, []string{"total", "-", "-", "0", "-", "0", "-", "-", "-"})
	}
	return table([]string{"outcomes", "outcome", "reason", "deliveries", "share", "wakes", "status", "provider p50 ms", "p99 ms"}, rows)
}

// label names an outcome row: "total" or "APP PLATFORM".
func (o statsOutcome) label() string {
	if o.Level == "total" {
		return "total"
	}
	return o.App + " " + o.Platform
}

// writeStatsCSV writes one row per group (or outcome) and metric, with a header: tidy data, ready
// for a pivot table or a data frame.
func writeStatsCSV(w io.Writer, rep *statsReport) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"section", "level", "app", "platform", "sender", "outcome", "reason", "metric", "value"})
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	p := func(v *float64) string {
		if v == nil {
			return ""
		}
		return f(*v)
	}
	for _, g := range rep.Groups {
		row := func(metric, value string) {
			_ = cw.Write([]string{"summary", g.Level, g.App, g.Platform, g.Sender, "", "", metric, value})
		}
		row("events", u(g.Events))
		row("wakes", u(g.Wakes))
		row("wakes_per_event", f(g.WakesPerEvent))
		row("delivered", u(g.Delivered))
		row("delivered_share", f(g.DeliveredShare))
		row("uncovered", u(g.Uncovered))
		row("pending", u(g.Pending))
		row("receipted", u(g.Receipted))
		for _, st := range stages {
			q := g.LatencyMS[st.key]
			row(st.key+"_p50_ms", p(q.P50))
			row(st.key+"_p90_ms", p(q.P90))
			row(st.key+"_p99_ms", p(q.P99))
		}
	}
	for _, o := range rep.Outcomes {
		row := func(metric, value string) {
			_ = cw.Write([]string{"outcomes", o.Level, o.App, o.Platform, "", o.Outcome, o.Reason, metric, value})
		}
		codes := make([]string, len(o.StatusCodes))
		for i, c := range o.StatusCodes {
			codes[i] = strconv.Itoa(int(c))
		}
		row("deliveries", u(o.Deliveries))
		row("wakes", u(o.Wakes))
		row("share", f(o.Share))
		row("status_codes", strings.Join(codes, " "))
		row("provider_p50_ms", p(o.ProviderP50MS))
		row("provider_p99_ms", p(o.ProviderP99MS))
	}
	cw.Flush()
	return cw.Error()
}
