// Package e2e drives the real binaries of all four services, built with the test's flags,
// against a real kfake broker, a real ClickHouse (libchdb), the APNs mock and, for the XMPP path,
// a real Prosody.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	appID      = "im.wakepush.e2e"
	teamID     = "E2ETEAM001"
	keyID      = "E2EKEY0001"
	eventToken = "e2e-event-token"
	// minInterval is the app's coalescing interval: short, so trailing wakes come quickly.
	minInterval = time.Second
)

// stack is one running pipeline.
type stack struct {
	t         *testing.T
	kafka     string
	mock      *apnsmock.Server
	ch        driver.Conn
	database  string
	ingestURL string
	procs     map[string]*stacktest.Process
}

// component is an XMPP server's component port for ingest to connect to.
type component struct {
	Addr, JID, Secret string
}

// startStack starts Kafka, the APNs mock and the four services; comp may be nil.
func startStack(t *testing.T, comp *component) *stack {
	t.Helper()
	return startStackEnv(t, comp, nil)
}

// startStackEnv is startStack with env ("K=V") added to every service's environment.
func startStackEnv(t *testing.T, comp *component, env []string) *stack {
	t.Helper()
	s := &stack{t: t, procs: map[string]*stacktest.Process{}}
	s.kafka = stacktest.Kafka(t)
	chSrv := stacktest.ClickHouse(t)
	s.database = "e2e_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))

	ts := apnsmock.StartTest(t, apnsmock.Config{}, teamID, keyID, appID)
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
	appsFile := write("apps.yaml", []byte(fmt.Sprintf(`apps:
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
`, appID, minInterval, appID, teamID, keyID, keyFile, mock.URL(), caFile)))

	common := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + s.kafka,
		"WAKEPUSH_KAFKA_PARTITIONS=4",
		"WAKEPUSH_APPS_FILE=" + appsFile,
		"WAKEPUSH_LOG_FORMAT=text",
		"WAKEPUSH_LOG_LEVEL=debug",
	}
	common = append(common, env...)
	httpAddr := stacktest.FreeAddr(t)
	s.ingestURL = "http://" + httpAddr
	ingestEnv := []string{
		"WAKEPUSH_INGEST_HTTP_ADDR=" + httpAddr,
		"WAKEPUSH_NODE_KEYS=e2e1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"WAKEPUSH_DEVICE_ID_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
		"WAKEPUSH_INGEST_EVENT_TOKENS=e2e:" + eventToken,
	}
	if comp != nil {
		ingestEnv = append(ingestEnv,
			"WAKEPUSH_COMPONENT_ADDR="+comp.Addr,
			"WAKEPUSH_COMPONENT_JID="+comp.JID,
			"WAKEPUSH_COMPONENT_SECRET="+comp.Secret)
	}
	services := []struct {
		name string
		env  []string
	}{
		{"recorder", []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://" + chSrv.TCPAddr + "/" + s.database}},
		{"sender", nil},
		{"coalescer", nil},
		{"ingest", ingestEnv},
	}
	for _, svc := range services {
		bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/"+svc.name)
		admin := stacktest.FreeAddr(t)
		env := append(append([]string{"WAKEPUSH_ADMIN_ADDR=" + admin}, common...), svc.env...)
		p := stacktest.StartProcess(t, svc.name, bin, env)
		p.WaitHTTP("http://"+admin+"/readyz", 60*time.Second)
		s.procs[svc.name] = p
	}

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chSrv.TCPAddr}, Auth: clickhouse.Auth{Database: s.database}})
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s.ch = conn
	return s
}

type registration struct {
	DeviceID string `json:"device_id"`
	Node     string `json:"node"`
	Secret   string `json:"secret"`
	JID      string `json:"jid"`
}

// register registers a device token through ingest's HTTP API.
func (s *stack) register(token string) registration {
	s.t.Helper()
	var r registration
	s.post("/v1/registrations", "", map[string]any{"app": appID, "token": token, "environment": "production"}, http.StatusOK, &r)
	if r.DeviceID == "" || r.Node == "" || r.Secret == "" {
		s.t.Fatalf("registration answer incomplete: %+v", r)
	}
	return r
}

// publish sends one event through ingest's HTTP event API and returns its id.
func (s *stack) publish(r registration, urgent bool) string {
	s.t.Helper()
	var ev struct {
		EventID string `json:"event_id"`
	}
	s.post("/v1/events", eventToken, map[string]any{"node": r.Node, "secret": r.Secret, "important": true, "message_count": 1, "urgent": urgent}, http.StatusAccepted, &ev)
	return ev.EventID
}

func (s *stack) post(path, bearer string, in any, want int, out any) {
	s.t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, s.ingestURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("POST %s: %s, want %d: %s", path, resp.Status, want, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			s.t.Fatalf("POST %s: decode %q: %v", path, body, err)
		}
	}
}

// waitPushes waits until the mock holds at least n pushes for token and returns them.
func (s *stack) waitPushes(token string, n int, timeout time.Duration) []apnsmock.Push {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.mock.PushesFor(token)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("APNs mock has %d push(es) for the device after %s, want %d", len(got), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits until query (one UInt64 column) returns want.
func (s *stack) waitCount(want uint64, timeout time.Duration, query string, args ...any) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var got uint64
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.ch.QueryRow(ctx, query, args...).Scan(&got)
		cancel()
		if err == nil && got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s\n= %d (err %v), want %d", query, got, err, want)
}

// assertNoUncoveredEvents runs the shipped uncovered_events analyst query (DESIGN §5 "no loss")
// for the last minutes and fails on any event of deviceID that no wake covered.
func (s *stack) assertNoUncoveredEvents(deviceID string) {
	s.t.Helper()
	text, err := chschema.Query("uncovered_events")
	if err != nil {
		s.t.Fatal(err)
	}
	now := time.Now().UTC()
	const layout = "2006-01-02 15:04:05.000"
	ctx := clickhouse.Context(context.Background(), clickhouse.WithParameters(map[string]string{
		"from":            now.Add(-10 * time.Minute).Format(layout),
		"to":              now.Format(layout),
		"min_interval_ms": fmt.Sprint(minInterval.Milliseconds()),
		"slack_ms":        "5000",
		"app":             appID,
	}))
	rows, err := s.ch.Query(ctx, text)
	if err != nil {
		s.t.Fatalf("uncovered_events: %v", err)
	}
	defer rows.Close()
	cols := rows.Columns()
	idx := slices.Index(cols, "device_id")
	if idx < 0 {
		s.t.Fatalf("uncovered_events has no device_id column: %v", cols)
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			s.t.Fatal(err)
		}
		if fmt.Sprint(reflect.ValueOf(vals[idx]).Elem().Interface()) == deviceID {
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprintf("%s=%v", cols[i], reflect.ValueOf(v).Elem().Interface())
			}
			s.t.Errorf("uncovered event: %s", strings.Join(row, " "))
		}
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
}
