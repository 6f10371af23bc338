package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/wakepush/wakepush/services/internal/config"
)

// The dashboard is ClickHouse's own web page /dashboard (served by every ClickHouse, including the
// libchdb one of `make run`): each chart is a SQL query returning a unix-time column and values.
// The page takes its charts from the URL fragment: lz-string's compressToEncodedURIComponent of
// the JSON {host, user, queries: [{title, query}], params}, which is what the page itself writes
// there when a chart is edited (without a fragment it loads the charts of the built-in
// system.dashboards table, which holds ClickHouse's own server metrics and cannot be extended).
// So `wakepushctl dashboard` needs nothing installed and nothing written to ClickHouse: it builds
// that fragment from the panels below.
//
// The page substitutes its input fields into the queries as ClickHouse query parameters:
// {seconds} (look back from now), {from} and {to} (an absolute range, empty = use seconds),
// {rounding} (bucket width in seconds) and any other {name:Type} a query uses (here
// {min_interval_ms} and {slack_ms} of the uncovered-events panel).

// dashboardPanel is one chart: a title and a query (with {db} standing for the database).
type dashboardPanel struct {
	Title string
	Query string
}

// dashboardRange is the time range every panel shares: `from`/`to` are the page's absolute
// range (empty = the last {seconds}), `step` the bucket width in seconds, at least one minute and a
// whole number of minutes (the rollups are per minute).
const dashboardRange = `WITH toDateTimeOrDefault({from:String}, '', now() - {seconds:UInt32}) AS from,
     toDateTimeOrDefault({to:String}, '', now()) AS to,
     intDiv(greatest({rounding:UInt32}, 60), 60) * 60 AS step`

// dashboardPanels are wakepush's charts. Every query returns t (unix seconds) first; then either
// a label column (String) and a value, one series per label (the page pivots them; used for the
// open-ended set of XMPP servers), or value columns, one series each. Values are Float64: the
// page's JSON would quote 64-bit integers. The panels span the whole range (WITH FILL): counts
// are 0 in a quiet minute, latencies and ratios NULL (a gap: no wake is not 0 ms).
var dashboardPanels = []dashboardPanel{
	{"Deliveries per minute by outcome", dashboardRange + `
SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t,
       toFloat64(sumIf(deliveries, outcome = 'ACCEPTED')) * 60 / step AS accepted,
       toFloat64(sumIf(deliveries, outcome = 'RETRY')) * 60 / step AS retry,
       toFloat64(sumIf(deliveries, outcome = 'PERMANENT')) * 60 / step AS permanent,
       toFloat64(sumIf(deliveries, outcome = 'CONFIGURATION')) * 60 / step AS configuration,
       toFloat64(sumIf(deliveries, outcome = 'DEAD_LETTERED')) * 60 / step AS dead_lettered,
       toFloat64(sumIf(deliveries, outcome = 'DROPPED')) * 60 / step AS dropped
FROM {db}.deliveries_1m
WHERE minute >= toStartOfMinute(from) AND minute <= to
GROUP BY t
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	{"Publish → wake latency, ms (p50, p90, p99)", dashboardRange + `
SELECT t, toNullable(q[1]) AS p50, toNullable(q[2]) AS p90, toNullable(q[3]) AS p99
FROM (SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t,
             quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms) AS q
      FROM {db}.wake_latency_1m
      WHERE minute >= toStartOfMinute(from) AND minute <= to
      GROUP BY t)
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	{"Wake → provider answer, ms (p50, p90, p99)", dashboardRange + `
SELECT t, toNullable(q[1]) AS p50, toNullable(q[2]) AS p90, toNullable(q[3]) AS p99
FROM (SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t,
             quantilesTDigestMerge(0.5, 0.9, 0.99)(wake_to_provider_ms) AS q
      FROM {db}.deliveries_1m
      WHERE minute >= toStartOfMinute(from) AND minute <= to
      GROUP BY t)
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	{"Provider call, ms (p50, p90, p99)", dashboardRange + `
SELECT t, toNullable(q[1]) AS p50, toNullable(q[2]) AS p90, toNullable(q[3]) AS p99
FROM (SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t,
             quantilesTDigestMerge(0.5, 0.9, 0.99)(provider_latency_ms) AS q
      FROM {db}.deliveries_1m
      WHERE minute >= toStartOfMinute(from) AND minute <= to
      GROUP BY t)
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	// An event is uncovered when no wake of its device was created at or after its acceptance
	// within min_interval + slack (the shipped query uncovered_events lists them one by one).
	// Events younger than that are still waiting, so the range ends that much before {to}.
	{"Events and uncovered events per minute", dashboardRange + `,
     to - toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32}) AS settled
SELECT toStartOfInterval(e.accepted_at, toIntervalSecond(step))::INT AS t,
       toFloat64(count()) * 60 / step AS events,
       toFloat64(countIf(w.device_id = '' OR w.created_at > e.accepted_at + toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32}))) * 60 / step AS uncovered
FROM (SELECT accepted_at, device_id FROM {db}.events FINAL WHERE accepted_at >= from AND accepted_at < settled) AS e
ASOF LEFT JOIN (SELECT device_id, created_at FROM {db}.wakes FINAL WHERE created_at >= from) AS w
    ON e.device_id = w.device_id AND w.created_at >= e.accepted_at
GROUP BY t
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO settled::INT STEP step`},
	{"Coalescing: wakes per event", dashboardRange + `
SELECT t, toNullable(w.wakes / e.events) AS wakes_per_event
FROM (SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t, toFloat64(sum(events)) AS events
      FROM {db}.events_1m WHERE minute >= toStartOfMinute(from) AND minute <= to GROUP BY t) AS e
INNER JOIN (SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t, toFloat64(sum(wakes)) AS wakes
      FROM {db}.wake_latency_1m WHERE minute >= toStartOfMinute(from) AND minute <= to GROUP BY t) AS w
    USING t
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	{"Dead letters per minute by stage", dashboardRange + `
SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t,
       toFloat64(sumIf(dead_letters, stage = 'coalescer')) * 60 / step AS coalescer,
       toFloat64(sumIf(dead_letters, stage = 'sender')) * 60 / step AS sender,
       toFloat64(sumIf(dead_letters, stage = 'recorder')) * 60 / step AS recorder
FROM {db}.dead_letters_1m
WHERE minute >= toStartOfMinute(from) AND minute <= to
GROUP BY t
ORDER BY t WITH FILL FROM toStartOfInterval(from, toIntervalSecond(step))::INT TO to::INT STEP step`},
	{"Events per minute by XMPP server", dashboardRange + `
SELECT toStartOfInterval(minute, toIntervalSecond(step))::INT AS t, toString(sender) AS server,
       toFloat64(sum(events)) * 60 / step AS per_minute
FROM {db}.events_1m
WHERE minute >= toStartOfMinute(from) AND minute <= to
GROUP BY t, server
ORDER BY t, server`},
}

// dashboardOptions are the settings of `wakepushctl dashboard`.
type dashboardOptions struct {
	ClickHouseURL string
	Database      string
	User          string
	Since         time.Duration
	Rounding      time.Duration
	MinInterval   time.Duration
	Slack         time.Duration
	Open          bool
	Check         bool
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func dashboard(ctx context.Context, args []string) error {
	var o dashboardOptions
	s := config.New("wakepushctl dashboard")
	s.String(&o.ClickHouseURL, "clickhouse-http", "WAKEPUSH_DASHBOARD_CLICKHOUSE_HTTP", "http://127.0.0.1:18123", "ClickHouse HTTP interface (serves /dashboard and answers its queries)")
	s.String(&o.Database, "database", "WAKEPUSH_DASHBOARD_DATABASE", "wakepush", "database the recorder writes")
	s.String(&o.User, "user", "WAKEPUSH_DASHBOARD_USER", "", "ClickHouse user the page logs in as ('' = default; a password is typed into the page, never put in the URL)")
	s.Duration(&o.Since, "since", "WAKEPUSH_DASHBOARD_SINCE", time.Hour, "time range shown: this long before now")
	s.Duration(&o.Rounding, "rounding", "WAKEPUSH_DASHBOARD_ROUNDING", time.Minute, "bucket width (whole minutes; the rollups are per minute)")
	s.Duration(&o.MinInterval, "min-interval", "WAKEPUSH_DASHBOARD_MIN_INTERVAL", 10*time.Second, "coalescing interval the uncovered-events panel allows (the apps file's default)")
	s.Duration(&o.Slack, "slack", "WAKEPUSH_DASHBOARD_SLACK", 5*time.Second, "processing time the uncovered-events panel allows on top of it")
	s.Bool(&o.Open, "open", "WAKEPUSH_DASHBOARD_OPEN", false, "also open the URL in the desktop's browser (xdg-open / open)")
	s.Bool(&o.Check, "check", "WAKEPUSH_DASHBOARD_CHECK", false, "run every panel's query against ClickHouse and print its row count (exit 1 if one fails)")
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	u, err := dashboardURL(o)
	if err != nil {
		return err
	}
	fmt.Println(u)
	if o.Check {
		failed := 0
		for _, p := range dashboardPanels {
			r, err := runPanel(ctx, o, p)
			if err != nil {
				failed++
				fmt.Fprintf(os.Stderr, "panel %q: %v\n", p.Title, err)
				continue
			}
			fmt.Fprintf(os.Stderr, "panel %q: %d rows\n", p.Title, r.Rows)
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d panels failed", failed, len(dashboardPanels))
		}
	}
	if o.Open {
		return openBrowser(u)
	}
	return nil
}

// dashboardParams are the page's input fields: the query parameters of every panel.
func dashboardParams(o dashboardOptions) map[string]string {
	return map[string]string{
		"rounding":        strconv.Itoa(max(1, int(o.Rounding.Round(time.Minute)/time.Minute)) * 60),
		"seconds":         strconv.Itoa(max(60, int(o.Since/time.Second))),
		"from":            "",
		"to":              "",
		"min_interval_ms": strconv.FormatInt(o.MinInterval.Milliseconds(), 10),
		"slack_ms":        strconv.FormatInt(o.Slack.Milliseconds(), 10),
	}
}

// panelQuery is p's SQL for database db (a plain identifier, checked by dashboardURL).
func panelQuery(p dashboardPanel, db string) string {
	return strings.ReplaceAll(p.Query, "{db}", "`"+db+"`")
}

// dashboardURL is the /dashboard URL of o.ClickHouseURL with wakepush's panels in its fragment.
func dashboardURL(o dashboardOptions) (string, error) {
	base, err := url.Parse(strings.TrimRight(o.ClickHouseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("-clickhouse-http %q: want http(s)://host:port", o.ClickHouseURL)
	}
	if base.User != nil {
		return "", errors.New("-clickhouse-http must not carry credentials: the URL is printed and kept in browser history")
	}
	if !identRE.MatchString(o.Database) {
		return "", fmt.Errorf("-database %q: want a plain identifier", o.Database)
	}
	type query struct {
		Title string `json:"title"`
		Query string `json:"query"`
	}
	state := struct {
		Host        string            `json:"host"`
		User        string            `json:"user"`
		Queries     []query           `json:"queries"`
		Params      map[string]string `json:"params"`
		SearchQuery string            `json:"search_query"`
		Customized  bool              `json:"customized"`
	}{Host: base.String(), User: o.User, Params: dashboardParams(o), Customized: true}
	for _, p := range dashboardPanels {
		state.Queries = append(state.Queries, query{p.Title, panelQuery(p, o.Database)})
	}
	b, err := json.Marshal(state)
	if err != nil {
		return "", err
	}
	return base.String() + "/dashboard#" + lzCompressToEncodedURIComponent(string(b)), nil
}

// panelResult is a panel query's answer in the page's format (JSONColumnsWithMetadata).
type panelResult struct {
	Rows int `json:"rows"`
	Meta []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"meta"`
	Data map[string][]json.RawMessage `json:"data"`
}

// runPanel runs p the way the page does (POST to the HTTP interface, the page's fields as
// param_* query parameters, the same output format).
func runPanel(ctx context.Context, o dashboardOptions, p dashboardPanel) (panelResult, error) {
	var out panelResult
	v := url.Values{"default_format": {"JSONColumnsWithMetadata"}}
	if o.User != "" {
		v.Set("user", o.User)
	}
	for k, val := range dashboardParams(o) {
		v.Set("param_"+k, val)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.ClickHouseURL, "/")+"/?"+v.Encode(),
		strings.NewReader(panelQuery(p, o.Database)))
	if err != nil {
		return out, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("answer: %w", err)
	}
	if len(out.Meta) < 2 || out.Meta[0].Name != "t" {
		return out, fmt.Errorf("answer has columns %v: want t and at least one series", out.Meta)
	}
	return out, nil
}

// openBrowser hands u to the desktop's opener.
func openBrowser(u string) error {
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	if err := exec.Command(opener, u).Start(); err != nil {
		return fmt.Errorf("open the browser (%s): %w; open the URL above by hand", opener, err)
	}
	return nil
}

// lzCompressToEncodedURIComponent is lz-string's compressToEncodedURIComponent (lz-string 1.5.0,
// the version ClickHouse's dashboard loads from /js/lz-string.js): LZW over the UTF-16 code units
// of s, written 6 bits per character in a URL-safe alphabet.
func lzCompressToEncodedURIComponent(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-$"
	const bitsPerChar = 6
	var out strings.Builder
	val, pos := 0, 0
	writeBit := func(b int) {
		val = val<<1 | b
		if pos == bitsPerChar-1 {
			pos = 0
			out.WriteByte(alphabet[val])
			val = 0
		} else {
			pos++
		}
	}
	writeBits := func(n, v int) { // least significant bit first
		for range n {
			writeBit(v & 1)
			v >>= 1
		}
	}

	key := func(units []uint16) string {
		b := make([]byte, 0, 2*len(units))
		for _, u := range units {
			b = append(b, byte(u>>8), byte(u))
		}
		return string(b)
	}
	dict := map[string]int{}
	toCreate := map[string]bool{}
	enlargeIn, dictSize, numBits := 2, 3, 2
	enlarge := func() {
		enlargeIn--
		if enlargeIn == 0 {
			enlargeIn = 1 << numBits
			numBits++
		}
	}
	emit := func(w []uint16) {
		k := key(w)
		if toCreate[k] {
			if w[0] < 256 {
				writeBits(numBits, 0)
				writeBits(8, int(w[0]))
			} else {
				writeBits(numBits, 1)
				writeBits(16, int(w[0]))
			}
			enlarge()
			delete(toCreate, k)
		} else {
			writeBits(numBits, dict[k])
		}
		enlarge()
	}

	var w []uint16
	for _, c := range utf16.Encode([]rune(s)) {
		ck := key([]uint16{c})
		if _, ok := dict[ck]; !ok {
			dict[ck] = dictSize
			dictSize++
			toCreate[ck] = true
		}
		wc := append(append(make([]uint16, 0, len(w)+1), w...), c)
		if _, ok := dict[key(wc)]; ok {
			w = wc
			continue
		}
		emit(w)
		dict[key(wc)] = dictSize
		dictSize++
		w = []uint16{c}
	}
	if len(w) > 0 {
		emit(w)
	}
	writeBits(numBits, 2) // end of stream
	for {                 // flush the last character
		val <<= 1
		if pos == bitsPerChar-1 {
			out.WriteByte(alphabet[val])
			break
		}
		pos++
	}
	return out.String()
}
