package monitoring_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/segmentio/kafka-go"
	"gopkg.in/yaml.v3"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/deploy/monitoring"
	"github.com/wakepush/wakepush/deploy/monitoring/dashboards"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	goodApp   = "im.wakepush.monitoring"
	brokenApp = "im.wakepush.misconfigured" // its topic is unknown to the APNs mock: configuration errors
	teamID    = "MONTEAM001"
	keyID     = "MONKEY0001"
	token     = "monitoring-event-token"
	scrapeInt = time.Second
)

// Metrics a panel or rule reads that this short, healthy run does not produce: no XMPP server
// sends IQs (the component connection is configured to a closed port), ClickHouse never
// refuses an insert, and no wake exhausts its attempts. Every other metric a panel or rule
// names must appear on a service's /metrics, so a misspelt name fails the test.
var notProducedByTheRun = map[string]string{
	"wakepush_ingest_iq_duration_seconds_bucket": "no XMPP server sends IQs in this run",
	"wakepush_recorder_insert_errors_total":      "ClickHouse accepts every insert",
	"wakepush_sender_dead_letters_total":         "no wake exhausts its attempts",
}

// TestPanelsAgainstTheStack runs the real services on kfake, ClickHouse and the APNs mock with
// traffic (deliveries, retries, dead tokens, configuration errors, an undecodable record),
// scrapes their /metrics into a Prometheus TSDB like a Prometheus server would, and then runs
// every panel of the committed dashboards: PromQL through Prometheus's engine, SQL (macros and
// variables expanded as Grafana and the ClickHouse plugin do) on ClickHouse. Every query must
// run; panels marked MustHaveData must return data; every metric name in a panel or an alert
// rule must exist on /metrics.
func TestPanelsAgainstTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	root := repoRoot(t)
	s := startStack(t)
	began := time.Now()

	st := teststorage.New(t)
	scr := &scraper{st: st, targets: s.admin, seen: map[string]bool{}}
	stopScrape := scr.run(t)

	s.traffic(t)
	// Let the recorder flush (1 s interval) and the scraper see the last increments.
	s.waitRows(t, "deliveries_1m", 1)
	s.waitRows(t, "dead_letters_1m", 1)
	time.Sleep(4 * scrapeInt)
	stopScrape()
	end := time.Now()
	t.Logf("stack run with traffic: %s, %d scrapes", end.Sub(began).Round(time.Millisecond), scr.scrapes)

	byFile := map[string]dashboards.Dashboard{}
	for _, d := range dashboards.All() {
		byFile[d.File] = d
	}
	var usedMetrics []string
	for file, spec := range byFile {
		b, err := os.ReadFile(filepath.Join(root, monitoring.ChartDashboards, file))
		if err != nil {
			t.Fatal(err)
		}
		var dash grafanaDashboard
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatal(err)
		}
		must := map[string]bool{}
		quiet := map[string]bool{} // "title/refId" of queries allowed to be empty
		for _, row := range spec.Rows {
			for _, p := range row.Panels {
				must[p.Title] = p.MustHaveData
				for i, q := range p.Queries {
					if q.Quiet {
						quiet[p.Title+"/"+string(rune('A'+i))] = true
					}
				}
			}
		}
		for _, p := range dash.Panels {
			if p.Type == "row" {
				continue
			}
			t.Run(strings.TrimSuffix(file, ".json")+"/"+p.Title, func(t *testing.T) {
				for _, q := range p.Targets {
					var n int
					switch spec.Datasource {
					case dashboards.Prometheus:
						var names []string
						n, names = s.runPromQL(t, st, q.Expr, began, end)
						usedMetrics = append(usedMetrics, names...)
					case dashboards.ClickHouse:
						n = s.runSQL(t, q, began, end)
					}
					t.Logf("%s: %d series/rows", q.RefID, n)
					if must[p.Title] && n == 0 && !quiet[p.Title+"/"+q.RefID] {
						t.Errorf("query %s returned no data; the panel must show data after the run:\n%s", q.RefID, q.Expr+q.RawSQL)
					}
				}
			})
		}
	}
	checkRulesOnRun(t, st, filepath.Join(root, monitoring.RulesFile), end)
	usedMetrics = append(usedMetrics, ruleMetrics(t, filepath.Join(root, monitoring.RulesFile))...)
	slices.Sort(usedMetrics)
	for _, name := range slices.Compact(usedMetrics) {
		if !scr.saw(name) && notProducedByTheRun[name] == "" {
			t.Errorf("metric %s (in a panel or rule) never appeared on any /metrics", name)
		}
	}
}

// stack is the running pipeline.
type stack struct {
	kafka     string
	mock      *apnsmock.Server
	ch        clickhouse.Conn
	ingestURL string
	admin     map[string]string // service → admin address
	devices   map[string][]registration
	mortal    map[string]bool // tokens the provider refuses for good: their devices end up unregistered
}

type registration struct {
	DeviceID string `json:"device_id"`
	Node     string `json:"node"`
	Secret   string `json:"secret"`
	token    string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{admin: map[string]string{}, devices: map[string][]registration{}}
	s.kafka = stacktest.Kafka(t)
	chSrv, db := stacktest.ClickHouseDatabase(t)

	ts := apnsmock.StartTest(t, apnsmock.Config{}, teamID, keyID, goodApp)
	mock, keyFile, caFile := ts.Server, ts.KeyFile, ts.CAFile
	s.mock = mock

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var apps strings.Builder
	apps.WriteString("apps:\n")
	for _, app := range []string{goodApp, brokenApp} {
		fmt.Fprintf(&apps, `  - id: %s
    platform: apns
    coalesce:
      min_interval: 1s
    apns:
      team_id: %s
      key_id: %s
      key_file: %s
      endpoint: %s
      ca_file: %s
`, app, teamID, keyID, keyFile, mock.URL(), caFile)
	}
	appsFile := write("apps.yaml", []byte(apps.String()))

	common := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + s.kafka,
		"WAKEPUSH_KAFKA_PARTITIONS=2",
		"WAKEPUSH_APPS_FILE=" + appsFile,
		"WAKEPUSH_LOG_FORMAT=text",
	}
	httpAddr := stacktest.FreeAddr(t)
	s.ingestURL = "http://" + httpAddr
	services := []struct {
		name string
		env  []string
	}{
		{"recorder", []string{"WAKEPUSH_CLICKHOUSE_DSN=" + chSrv.DSN(db)}},
		{"sender", []string{"WAKEPUSH_SENDER_CONFIG_PAUSE=1s"}}, // probe the broken app again soon: several errors
		{"coalescer", nil},
		{"ingest", []string{
			"WAKEPUSH_INGEST_HTTP_ADDR=" + httpAddr,
			"WAKEPUSH_NODE_KEYS=mon1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)),
			"WAKEPUSH_DEVICE_ID_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32)),
			"WAKEPUSH_INGEST_EVENT_TOKENS=mon:" + token,
			// An XMPP server that is down: the connection series shows 0.
			"WAKEPUSH_COMPONENT_ADDR=" + stacktest.FreeAddr(t),
			"WAKEPUSH_COMPONENT_JID=push.monitoring.example",
			"WAKEPUSH_COMPONENT_SECRET=monitoring-secret",
		}},
	}
	// Build in parallel (the first build of a cold cache dominates the test's time).
	var wg sync.WaitGroup
	bins := make([]string, len(services))
	for i, svc := range services {
		wg.Go(func() { bins[i] = stacktest.Build(t, "github.com/wakepush/wakepush/services/"+svc.name) })
	}
	wg.Wait()
	for i, svc := range services {
		admin := stacktest.FreeAddr(t)
		env := append(append([]string{"WAKEPUSH_ADMIN_ADDR=" + admin}, common...), svc.env...)
		p := stacktest.StartProcess(t, svc.name, bins[i], env)
		p.WaitHTTP("http://"+admin+"/readyz", 90*time.Second)
		s.admin[svc.name] = admin
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chSrv.TCPAddr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.ch = conn
	return s
}

// traffic registers devices and publishes for ~12 s: plain and urgent events (coalesced and
// delivered), a dead token (410 Unregistered), a bad token (400 BadDeviceToken), a 500 storm
// (retries), an app whose topic the provider refuses (configuration errors, paused) and an
// undecodable record on push.events (dead letters at the coalescer and the recorder).
func (s *stack) traffic(t *testing.T) {
	t.Helper()
	for i := range 6 {
		s.register(t, goodApp, fmt.Sprintf("%064x", i+1))
	}
	s.register(t, brokenApp, fmt.Sprintf("%064x", 100))
	dead, bad := s.devices[goodApp][4], s.devices[goodApp][5]
	s.mock.Unregister(dead.token, time.Now()) // after its registration, so the sender ends it
	s.mortal = map[string]bool{dead.token: true, bad.token: true}
	s.mock.SetBadToken(bad.token)

	w := &kafka.Writer{Addr: kafka.TCP(s.kafka), Topic: "push.events", RequiredAcks: kafka.RequireAll}
	defer w.Close()
	garbage := func() {
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("garbage"), Value: []byte("not a protobuf record")}); err != nil {
			t.Fatalf("write an undecodable record: %v", err)
		}
	}
	garbage()

	// A 500 storm answers the next pushes with InternalServerError: the sender retries them.
	if err := s.mock.SetOverride(&apnsmock.Override{Status: http.StatusInternalServerError}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, s.devices[goodApp][0], true)
	deadline := time.Now().Add(20 * time.Second)
	for s.mock.Overridden() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	s.mock.SetOverride(nil)
	if s.mock.Overridden() == 0 {
		t.Fatal("the 500 storm answered nothing")
	}

	for round := range 12 {
		for i, r := range s.devices[goodApp] {
			s.publish(t, r, round%4 == 0 && i == 0)
		}
		if round%3 == 0 {
			s.publish(t, s.devices[brokenApp][0], false)
		}
		if round == 6 {
			garbage() // a second one: the dead letter counters increase within the run
		}
		time.Sleep(time.Second)
	}
	// Trailing wakes come min_interval (1 s) after the last events.
	deadline = time.Now().Add(20 * time.Second)
	for s.mock.Accepted() < 8 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("APNs mock accepted %d pushes", s.mock.Accepted())
}

func (s *stack) register(t *testing.T, app, tok string) {
	t.Helper()
	var r registration
	s.post(t, "/v1/registrations", "", map[string]any{"app": app, "token": tok, "environment": "production"}, []int{http.StatusOK}, &r)
	r.token = tok
	s.devices[app] = append(s.devices[app], r)
}

func (s *stack) publish(t *testing.T, r registration, urgent bool) {
	t.Helper()
	want := []int{http.StatusAccepted}
	if s.mortal[r.token] {
		want = append(want, http.StatusGone) // once the provider's 410 ended its registration
	}
	s.post(t, "/v1/events", token, map[string]any{"node": r.Node, "secret": r.Secret, "important": true, "message_count": 1, "urgent": urgent}, want, nil)
}

func (s *stack) post(t *testing.T, path, bearer string, in any, want []int, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, s.ingestURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !slices.Contains(want, resp.StatusCode) {
		t.Fatalf("POST %s: %s, want %v: %s", path, resp.Status, want, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

// waitRows waits until table has at least n rows.
func (s *stack) waitRows(t *testing.T, table string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got uint64
		err := s.ch.QueryRow(context.Background(), "SELECT count() FROM "+table).Scan(&got)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows after 30s (%v), want ≥ %d", table, got, err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runPromQL evaluates a panel's expression as Grafana would ask Prometheus for it: a range
// query over the run with step $__interval, $__rate_interval from the scrape interval, $app =
// All. It returns the number of series with a value and the metric names the expression reads.
func (s *stack) runPromQL(t *testing.T, st storage.Queryable, expr string, from, to time.Time) (int, []string) {
	t.Helper()
	step := 2 * time.Second
	q, err := interpolate(expr, map[string][]string{"app": {goodApp, brokenApp}}, map[string]string{"app": ".*"}, map[string]string{
		"__interval": step.String(), "__rate_interval": rateInterval(step, scrapeInt).String(), "__range": to.Sub(from).Round(time.Second).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	ast, err := p.ParseExpr(q)
	if err != nil {
		t.Fatalf("PromQL %q: %v", q, err)
	}
	var names []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, Parser: p})
	rq, err := eng.NewRangeQuery(context.Background(), st, nil, q, from, to, step)
	if err != nil {
		t.Fatalf("PromQL %q: %v", q, err)
	}
	defer rq.Close()
	res := rq.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("PromQL %q: %v", q, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		t.Fatalf("PromQL %q: %v", q, err)
	}
	n := 0
	for _, series := range m {
		if slices.ContainsFunc(series.Floats, func(p promql.FPoint) bool { return !math.IsNaN(p.F) }) {
			n++
		}
	}
	return n, names
}

// runSQL runs a ClickHouse target: the $app variable's own query first (as Grafana does to
// resolve "All"), then the panel's SQL with ${app:singlequote} = every app and the plugin's
// macros for the run's time range, with Grafana's interval for ~1000 points (at least 1 s).
func (s *stack) runSQL(t *testing.T, q grafanaTarget, from, to time.Time) int {
	t.Helper()
	from = from.Add(-time.Minute).Truncate(time.Minute) // the rollups are per minute
	apps := s.queryColumn(t, dashboards.AppVariableSQL, from, to)
	if !slices.Contains(apps, goodApp) {
		t.Fatalf("the app variable lists %v, want %s among them", apps, goodApp)
	}
	sql, err := interpolate(q.RawSQL, map[string][]string{"app": apps}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sql, err = clickHouseMacros(sql, from, to, max(to.Sub(from)/1000, time.Second))
	if err != nil {
		t.Fatalf("%v in\n%s", err, q.RawSQL)
	}
	rows, err := s.ch.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("ClickHouse: %v\n%s", err, sql)
	}
	defer rows.Close()
	cols := rows.ColumnTypes()
	if q.Format != nil && *q.Format == 0 { // time series: a time column the plugin can use
		if len(cols) < 2 || cols[0].Name() != "time" || !strings.HasPrefix(cols[0].DatabaseTypeName(), "DateTime") {
			t.Errorf("time series query: first column %s %s, want time DateTime", cols[0].Name(), cols[0].DatabaseTypeName())
		}
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("ClickHouse: %v\n%s", err, sql)
	}
	return n
}

func (s *stack) queryColumn(t *testing.T, sql string, from, to time.Time) []string {
	t.Helper()
	sql, err := clickHouseMacros(sql, from, to, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.ch.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("ClickHouse: %v\n%s", err, sql)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// scraper scrapes every service's /metrics each scrapeInt into the TSDB, with the job and
// instance labels a Prometheus scrape adds, parsing with Prometheus's own text parser.
type scraper struct {
	st      *teststorage.TestStorage
	targets map[string]string
	mu      sync.Mutex
	seen    map[string]bool
	scrapes int
}

func (sc *scraper) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(scrapeInt)
		defer tick.Stop()
		for {
			for job, addr := range sc.targets {
				if err := sc.scrape(ctx, job, addr); err != nil && ctx.Err() == nil {
					t.Errorf("scrape %s: %v", job, err)
				}
			}
			sc.mu.Lock()
			sc.scrapes++
			sc.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop) // before the storage closes, also when the test fails early
	return stop
}

func (sc *scraper) scrape(ctx context.Context, job, addr string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	ts := time.Now().UnixMilli()
	p, err := textparse.New(body, resp.Header.Get("Content-Type"), labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		return err
	}
	app := sc.st.Appender(ctx)
	var lset labels.Labels
	for {
		e, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("parse: %w", err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, _, v := p.Series()
		p.Labels(&lset)
		b := labels.NewBuilder(lset)
		b.Set("job", job)
		b.Set("instance", addr)
		l := b.Labels()
		if _, err := app.Append(0, l, ts, v); err != nil {
			app.Rollback()
			return err
		}
		sc.mu.Lock()
		sc.seen[l.Get(labels.MetricName)] = true
		sc.mu.Unlock()
	}
	return app.Commit()
}

func (sc *scraper) saw(name string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.seen[name]
}

// ruleMetrics lists the metric names the alert rules read (the __name__ regex of the lag rule
// expanded by what the rule means: each service's consumer lag gauge).
func ruleMetrics(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			ast, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("rule %q: %v", r.Expr, err)
			}
			parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				if vs.Name != "" {
					names = append(names, vs.Name)
					return nil
				}
				for _, m := range vs.LabelMatchers {
					if m.Name == labels.MetricName {
						for _, svc := range []string{"coalescer", "sender", "recorder"} {
							if n := "wakepush_" + svc + "_consumer_lag"; m.Matches(n) {
								names = append(names, n)
							}
						}
					}
				}
				return nil
			})
		}
	}
	return names
}

// checkRulesOnRun evaluates the alert rules' expressions (their conditions, without `for`) on
// the run's scraped metrics at its end: the conditions the traffic provoked hold, with the
// labels that say where, and the ones of a healthy pipeline do not.
func checkRulesOnRun(t *testing.T, st storage.Queryable, path string, at time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, Parser: p, LookbackDelta: 5 * time.Minute})
	got := map[string][]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			q, err := eng.NewInstantQuery(context.Background(), st, nil, r.Expr, at)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			res := q.Exec(context.Background())
			if res.Err != nil {
				t.Fatalf("%s: %v", r.Alert, res.Err)
			}
			v, err := res.Vector()
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			for _, smp := range v {
				got[r.Alert] = append(got[r.Alert], smp.Metric.String())
			}
			q.Close()
		}
	}
	t.Logf("alert conditions true at the end of the run: %v", got)
	want := map[string]string{ // alert → a label the condition must carry
		"WakepushProviderConfigurationErrors": `app="` + brokenApp + `"`,
		"WakepushDeadLetters":                 `stage="coalescer"`,
		"WakepushComponentDisconnected":       `component_jid="push.monitoring.example"`,
		"WakepushComponentServerUnreachable":  `component_jid="push.monitoring.example"`,
		"WakepushWakesNotDelivered":           `app="` + brokenApp + `"`,
	}
	for alert, label := range want {
		if !slices.ContainsFunc(got[alert], func(s string) bool { return strings.Contains(s, label) }) {
			t.Errorf("%s: condition %v after the run, want one with %s", alert, got[alert], label)
		}
	}
	if l := got["WakepushWakesNotDelivered"]; slices.ContainsFunc(l, func(s string) bool { return strings.Contains(s, goodApp) }) {
		t.Errorf("WakepushWakesNotDelivered holds for %s, whose wakes were delivered: %v", goodApp, l)
	}
	for _, alert := range []string{"WakepushEventsNotReachingCoalescer", "WakepushEventsWithoutWakes", "WakepushIngestRefusingPublishes", "WakepushConsumerLag"} {
		if len(got[alert]) > 0 {
			t.Errorf("%s holds on a healthy run: %v", alert, got[alert])
		}
	}
}
