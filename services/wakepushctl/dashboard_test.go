package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// The fragment encoder matches lz-string 1.5.0's compressToEncodedURIComponent: the expected
// strings are what ClickHouse's own /js/lz-string.js gives for these inputs (run in node), covering
// the empty string, repetition, dictionary growth past several bit widths, non-ASCII below and
// above U+FFFF (UTF-16 surrogate pairs).
func TestLZCompressToEncodedURIComponent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "Q"},
		{"a", "IZA"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "IY18ZVkA"},
		{"Hello, world", "BIUwNmD2A0AEDukBOYAmQ"},
		{`{"host":"http://127.0.0.1:18123","queries":[{"title":"Delivery → rate","query":"SELECT 1"}]}`,
			"N4IgFg9gzgLiBc4YwA7wPToIwCYDsAdAAzEFbxYAcuAzCADQgCOArgKYBOAlm1AgNqgYXGABs2CEABE2orgDdOATwAEgJMIVHAIYwJjVsskBlAKIAZEwGEAKiqwgAvgF0HQA"},
		{"TOBEORNOTTOBEORTOBEORNOT#", "CoeQQgoiBKByLFJGSpwQYiA"},
		{"é中😀 mixed 🙂🙂 text", "JeWjlLwbgAewBAtglgDwKYBMpkEJ7moBckJyA"},
	}
	for _, tt := range tests {
		if got := lzCompressToEncodedURIComponent(tt.in); got != tt.want {
			t.Errorf("lzCompressToEncodedURIComponent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDashboardURLRefusesUnsafeSettings(t *testing.T) {
	ok := dashboardOptions{ClickHouseURL: "http://127.0.0.1:18123", Database: "wakepush", Since: time.Hour, Rounding: time.Minute}
	if u, err := dashboardURL(ok); err != nil || !strings.HasPrefix(u, "http://127.0.0.1:18123/dashboard#") {
		t.Fatalf("dashboardURL = %q, %v", u, err)
	}
	for name, mod := range map[string]func(*dashboardOptions){
		"credentials in URL": func(o *dashboardOptions) { o.ClickHouseURL = "http://u:secret@127.0.0.1:18123" },
		"not http":           func(o *dashboardOptions) { o.ClickHouseURL = "127.0.0.1:18123" },
		"database injection": func(o *dashboardOptions) { o.Database = "wakepush`; DROP TABLE x; --" },
	} {
		o := ok
		mod(&o)
		if u, err := dashboardURL(o); err == nil {
			t.Errorf("%s: accepted, URL %q", name, u)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
}

const (
	dashApp     = "im.wakepush.dash"
	dashTeam    = "DASHTEAM01"
	dashKey     = "DASHKEY001"
	badToken    = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
	lostDevice  = "10575703456789abcdef0123456789ab"
	dashMinIval = time.Second
)

// dashServers are the HTTP event API tenants, which the records carry as the sender (the XMPP
// server for component traffic).
var dashServers = []string{"chat.example.org", "jabber.example.net", "xmpp.example.com"}

// dashStack is the pipeline the dashboard test reads: Kafka, ClickHouse, the APNs mock and the
// four services, with traffic.
type dashStack struct {
	kafka, chHTTP, db, ingest string
	mock                      *apnsmock.Server
}

func startDashStack(t *testing.T) *dashStack {
	t.Helper()
	s := &dashStack{kafka: stacktest.Kafka(t)}
	srv, db := stacktest.ClickHouseDatabase(t)
	s.chHTTP, s.db = "http://"+srv.HTTPAddr, db

	ts := apnsmock.StartTest(t, apnsmock.Config{}, dashTeam, dashKey, dashApp)
	mock := ts.Server
	s.mock = mock
	mock.SetBadToken(badToken)

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	appsFile := write("apps.yaml", fmt.Appendf(nil, `apps:
  - id: %s
    platform: apns
    coalesce:
      min_interval: %s
    apns:
      topic: %s
      team_id: %s
      key_id: %s
      key_file: %s
      endpoint: %s
      ca_file: %s
`, dashApp, dashMinIval, dashApp, dashTeam, dashKey, ts.KeyFile, mock.URL(), ts.CAFile))

	var tenants []string
	for _, srv := range dashServers {
		tenants = append(tenants, srv+":"+tenantToken(srv))
	}
	common := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + s.kafka,
		"WAKEPUSH_KAFKA_PARTITIONS=2",
		"WAKEPUSH_APPS_FILE=" + appsFile,
		"WAKEPUSH_LOG_FORMAT=text",
	}
	ingestAddr := stacktest.FreeAddr(t)
	s.ingest = "http://" + ingestAddr
	for _, svc := range []struct {
		name string
		env  []string
	}{
		{"recorder", []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://" + srv.TCPAddr + "/" + db, "WAKEPUSH_RECORDER_FLUSH_INTERVAL=200ms"}},
		{"sender", nil},
		{"coalescer", nil},
		{"ingest", []string{
			"WAKEPUSH_INGEST_HTTP_ADDR=" + ingestAddr,
			"WAKEPUSH_NODE_KEYS=dash1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)),
			"WAKEPUSH_DEVICE_ID_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32)),
			"WAKEPUSH_INGEST_EVENT_TOKENS=" + strings.Join(tenants, ","),
		}},
	} {
		bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/"+svc.name)
		admin := stacktest.FreeAddr(t)
		env := append(append([]string{"WAKEPUSH_ADMIN_ADDR=" + admin}, common...), svc.env...)
		p := stacktest.StartProcess(t, svc.name, bin, env)
		p.WaitHTTP("http://"+admin+"/readyz", 90*time.Second)
	}
	return s
}

func tenantToken(server string) string {
	return "tok-" + strings.NewReplacer(".", "-").Replace(server) + "-0123456789"
}

func (s *dashStack) post(t *testing.T, path, bearer string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, s.ingest+path, bytes.NewReader(b))
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
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

// traffic sends what every panel shows: publishes from three servers to five devices (bursts,
// so that wakes cover several events), one device whose token APNs refuses (a PERMANENT outcome),
// an event for an unknown app (a coalescer dead letter), and, written straight into ClickHouse as
// if its wake had been lost, one event that no wake covers.
func (s *dashStack) traffic(t *testing.T) (published int) {
	t.Helper()
	type reg struct{ Node, Secret string }
	register := func(token string) reg {
		var r reg
		s.post(t, "/v1/registrations", "", map[string]any{"app": dashApp, "token": token, "environment": "production"}, &r)
		return r
	}
	publish := func(server string, r reg, urgent bool) {
		s.post(t, "/v1/events", tenantToken(server), map[string]any{"node": r.Node, "secret": r.Secret, "important": true, "message_count": 1, "urgent": urgent}, nil)
		published++
	}
	var devices []reg
	for i := range 5 {
		devices = append(devices, register(fmt.Sprintf("%064x", i+1)))
	}
	for round := range 3 {
		for i, d := range devices {
			for k := range 1 + i%3 { // bursts of 1-3 events per device and round
				publish(dashServers[(i+k+round)%len(dashServers)], d, false)
			}
		}
		time.Sleep(dashMinIval + 200*time.Millisecond)
	}
	publish(dashServers[0], register(badToken), true)

	cfg := &kafkax.Config{Brokers: []string{s.kafka}, Partitions: 2, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	p, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ev := &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: lostDevice, App: "im.unknown.app"}
	if err := p.Produce(context.Background(), kafkax.Record{Ctx: context.Background(), Topic: topics.Events, Key: ev.DeviceId, Msg: ev}); err != nil {
		t.Fatal(err)
	}

	lost := fmt.Sprintf(`INSERT INTO %s.events (id, accepted_at, device_id, app, platform, source, sender)
		VALUES ('%s', now64(3) - INTERVAL 2 MINUTE, '%s', '%s', 'APNS', 'HTTP', '%s')`,
		s.db, records.NewID(), lostDevice, dashApp, dashServers[1])
	if _, err := clickhouseQuery(context.Background(), s.chHTTP, lost); err != nil {
		t.Fatal(err)
	}
	return published + 1
}

// scalar runs a one-value query.
func (s *dashStack) scalar(t *testing.T, q string) string {
	t.Helper()
	out, err := clickhouseQuery(context.Background(), s.chHTTP, q)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (s *dashStack) waitFor(t *testing.T, what, q, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	for time.Now().Before(deadline) {
		if got = s.scalar(t, q); got == want {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s: %s = %q after %s, want %q", what, q, got, timeout, want)
}

// sumColumn adds up a numeric column of a panel's answer (nulls count 0).
func sumColumn(t *testing.T, r panelResult, col string) float64 {
	t.Helper()
	var sum float64
	for _, raw := range r.Data[col] {
		var v *float64
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("column %s: value %s: %v", col, raw, err)
		}
		if v != nil {
			sum += *v
		}
	}
	return sum
}

func labels(t *testing.T, r panelResult, col string) []string {
	t.Helper()
	var out []string
	for _, raw := range r.Data[col] {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// The dashboard against a running pipeline with traffic: every panel's query answers with the
// numbers the raw tables hold, and a real browser (headless Chromium) draws every panel from the
// printed URL, with the series the data has.
func TestDashboardOnStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole pipeline and a browser")
	}
	chromium := findChromium(t)
	s := startDashStack(t)
	start := time.Now()
	published := s.traffic(t)
	db := s.db

	// Wait until the recorder has projected everything (the rollups fill on insert).
	// (The unknown app's event is recorded too, without an acceptance time; the panels ignore it.)
	s.waitFor(t, "events recorded", "SELECT count() FROM "+db+".events FINAL WHERE app = '"+dashApp+"'", fmt.Sprint(published), 60*time.Second)
	s.waitFor(t, "dead letter recorded", "SELECT sum(dead_letters) FROM "+db+".dead_letters_1m", "1", 60*time.Second)
	s.waitFor(t, "refused delivery recorded", "SELECT countIf(outcome != 'ACCEPTED') > 0 FROM "+db+".deliveries FINAL", "1", 60*time.Second)
	wakes := s.scalar(t, "SELECT count() FROM "+db+".wakes FINAL")
	s.waitFor(t, "every wake delivered", "SELECT uniqExact(wake_id) FROM "+db+".deliveries FINAL", wakes, 60*time.Second)
	t.Logf("traffic recorded in %s: %d events, %s wakes", time.Since(start).Round(time.Millisecond), published, wakes)

	// The last 10 minutes: the traffic's minutes are a visible part of the picture.
	o := dashboardOptions{ClickHouseURL: s.chHTTP, Database: db, Since: 10 * time.Minute, Rounding: time.Minute,
		MinInterval: dashMinIval, Slack: 5 * time.Second}
	results := map[string]panelResult{}
	for _, p := range dashboardPanels {
		r, err := runPanel(context.Background(), o, p)
		if err != nil {
			t.Fatalf("panel %q: %v", p.Title, err)
		}
		if r.Rows == 0 {
			t.Errorf("panel %q: no rows", p.Title)
		}
		results[p.Title] = r
	}
	num := func(q string) float64 {
		var f float64
		if _, err := fmt.Sscan(s.scalar(t, q), &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Per-minute values at one-minute buckets add up to the raw counts.
	deliveries := results["Deliveries per minute by outcome"]
	var allOutcomes float64
	for _, outcome := range []string{"accepted", "retry", "permanent", "configuration", "dead_lettered", "dropped"} {
		got := sumColumn(t, deliveries, outcome)
		if want := num("SELECT count() FROM " + db + ".deliveries FINAL WHERE outcome = '" + strings.ToUpper(outcome) + "'"); got != want {
			t.Errorf("deliveries panel: %s adds up to %v, the raw table has %v", outcome, got, want)
		}
		allOutcomes += got
	}
	if got := sumColumn(t, deliveries, "permanent"); got < 1 || allOutcomes <= got {
		t.Errorf("deliveries panel: %v permanent of %v, want the refused token's and accepted ones", got, allOutcomes)
	}
	servers := results["Events per minute by XMPP server"]
	if got := labels(t, servers, "server"); !slices.Equal(got, dashServers) {
		t.Errorf("servers %v, want %v", got, dashServers)
	}
	if got := sumColumn(t, servers, "per_minute"); got != float64(published) {
		t.Errorf("server panel adds up to %v events, %d were recorded", got, published)
	}
	uncovered := results["Events and uncovered events per minute"]
	if got := sumColumn(t, uncovered, "uncovered"); got != 1 {
		t.Errorf("uncovered events %v, want 1 (the event whose wake was lost)", got)
	}
	if got := sumColumn(t, uncovered, "events"); got < 1 {
		t.Errorf("uncovered panel counts %v events", got)
	}
	if got := sumColumn(t, results["Dead letters per minute by stage"], "coalescer"); got != 1 {
		t.Errorf("coalescer dead letters %v, want 1", got)
	}
	// Wakes per event: in (0, 1] in every minute with traffic, and the raw ratio when the
	// traffic fell in one minute (the lost event's minute has no wake, so no ratio).
	var ratios []float64
	for _, raw := range results["Coalescing: wakes per event"].Data["wakes_per_event"] {
		var v *float64
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if v != nil {
			ratios = append(ratios, *v)
		}
	}
	// Coalescing makes fewer wakes than events in all; a single minute's ratio is that, but when
	// the traffic crosses a minute boundary the trailing wakes of one minute's events fall into
	// the next, whose ratio may then exceed 1 (CI saw [0.56 4]).
	w, e := num("SELECT count() FROM "+db+".wakes FINAL"), num("SELECT count() FROM "+db+".events FINAL WHERE device_id != '"+lostDevice+"'")
	if e == 0 || w <= 0 || w > e {
		t.Errorf("raw tables: %v wakes for %v events", w, e)
	}
	if len(ratios) == 0 || slices.ContainsFunc(ratios, func(r float64) bool { return r < 0 || math.IsInf(r, 0) || math.IsNaN(r) }) ||
		len(ratios) == 1 && math.Abs(ratios[0]-w/e) > 1e-9 {
		t.Errorf("wakes per event %v (raw: %v wakes, %v events)", ratios, w, e)
	}
	for _, title := range []string{"Publish → wake latency, ms (p50, p90, p99)", "Wake → provider answer, ms (p50, p90, p99)", "Provider call, ms (p50, p90, p99)"} {
		if p99 := sumColumn(t, results[title], "p99"); p99 <= 0 {
			t.Errorf("panel %q: p99 sum %v, want > 0", title, p99)
		}
	}

	u, err := dashboardURL(o)
	if err != nil {
		t.Fatal(err)
	}
	dom := chromiumRun(t, chromium, "--dump-dom", u)
	checkRenderedDashboard(t, dom)

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if p := os.Getenv("WAKEPUSH_DASHBOARD_SCREENSHOT"); p != "" {
		shot = p // make the picture in docs/: WAKEPUSH_DASHBOARD_SCREENSHOT=$PWD/docs/img/dashboard.png
	}
	chromiumRun(t, chromium, "--screenshot="+shot, u)
	checkScreenshot(t, shot)
}

// checkRenderedDashboard checks the page Chromium rendered: one chart per panel, titled, without
// an error, each drawn by uPlot with the series its data has.
func checkRenderedDashboard(t *testing.T, dom string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	var charts []*html.Node
	walk(doc, func(n *html.Node) {
		if hasClass(n, "chart") {
			charts = append(charts, n)
		}
	})
	if len(charts) != len(dashboardPanels) {
		t.Fatalf("page shows %d charts, want %d; global error: %q", len(charts), len(dashboardPanels), textOfID(doc, "global-error"))
	}
	quantiles := []string{"p50", "p90", "p99"}
	wantSeries := map[string][]string{
		"Deliveries per minute by outcome":           {"accepted", "retry", "permanent", "configuration", "dead_lettered", "dropped"},
		"Publish → wake latency, ms (p50, p90, p99)": quantiles,
		"Wake → provider answer, ms (p50, p90, p99)": quantiles,
		"Provider call, ms (p50, p90, p99)":          quantiles,
		"Events and uncovered events per minute":     {"events", "uncovered"},
		"Coalescing: wakes per event":                {"wakes_per_event"},
		"Dead letters per minute by stage":           {"coalescer", "sender", "recorder"},
		"Events per minute by XMPP server":           dashServers,
	}
	for i, c := range charts {
		title, errText, plotted := "", "", false
		var series []string
		walk(c, func(n *html.Node) {
			switch {
			case hasClass(n, "title"):
				title = strings.TrimSpace(text(n))
			case hasClass(n, "query-error"):
				errText = strings.TrimSpace(text(n))
			case hasClass(n, "uplot"):
				plotted = true
			case hasClass(n, "u-series"):
				series = append(series, strings.TrimSpace(text(n)))
			}
		})
		p := dashboardPanels[i]
		t.Logf("chart %q: plotted %v, legend %q", title, plotted, series)
		if title != p.Title {
			t.Errorf("chart %d is titled %q, want %q", i, title, p.Title)
		}
		if errText != "" {
			t.Errorf("chart %q shows an error: %s", p.Title, errText)
		}
		if !plotted {
			t.Errorf("chart %q has no plot", p.Title)
		}
		// The legend lists the time axis and then one entry per series (uPlot writes each as
		// "label" + its value, "--" while the cursor is elsewhere).
		var got []string
		for _, s := range series {
			s = strings.TrimSuffix(s, "--")
			if s != "" && s != "time" && s != ". . ." {
				got = append(got, s)
			}
		}
		want := slices.Clone(wantSeries[p.Title])
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("chart %q: series %q, want %q", p.Title, got, want)
		}
	}
}

func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// A drawn page has many colours (lines, fills, text); a blank or error page has few.
	colours := map[uint32]bool{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|b>>8] = true
		}
	}
	t.Logf("screenshot %s: %dx%d, %d bytes, %d colours", path, bounds.Dx(), bounds.Dy(), len(b), len(colours))
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours: nothing drawn?", len(colours))
	}
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func hasClass(n *html.Node, class string) bool {
	if n.Type != html.ElementNode {
		return false
	}
	for _, a := range n.Attr {
		if a.Key == "class" && slices.Contains(strings.Fields(a.Val), class) {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
	})
	return b.String()
}

func textOfID(doc *html.Node, id string) string {
	var out string
	walk(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				out = text(n)
			}
		}
	})
	return out
}

// findChromium returns the Chromium binary. Without one the test is skipped, except in CI
// (.ci/run installs Debian's chromium), where a missing browser is a failure.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium in CI: .ci/run installs it (apt-get install chromium)")
	}
	t.Skip("no chromium: apt-get install -y --no-install-recommends chromium")
	return ""
}

// chromiumRun runs headless Chromium on url with one action flag (--dump-dom, --screenshot=…)
// and returns its standard output. Virtual time lets the page's queries and drawing finish
// before the DOM is dumped or the picture taken.
func chromiumRun(t *testing.T, bin, action, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir="+t.TempDir(), "--window-size=1400,1300",
		"--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw", action, url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", action, err, stderr.String())
	}
	return stdout.String()
}
