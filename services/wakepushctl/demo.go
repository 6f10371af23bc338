package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/services/internal/config"
)

type demoConfig struct {
	IngestURL     string
	EventToken    string
	App           string
	APNsMockURL   string
	APNsMockCA    string
	ClickHouseURL string
	JaegerURL     string
	Timeout       time.Duration
}

func demo(ctx context.Context, args []string) error {
	var c demoConfig
	s := config.New("wakepushctl demo")
	s.String(&c.IngestURL, "ingest", "WAKEPUSH_DEMO_INGEST_URL", "http://127.0.0.1:18080", "ingest HTTP API")
	s.Secret(&c.EventToken, "WAKEPUSH_DEMO_EVENT_TOKEN", "dev-event-token", "bearer token of the HTTP event API (the default is the dev stack's)")
	s.String(&c.App, "app", "WAKEPUSH_DEMO_APP", "im.wakepush.demo", "app id to register the fake device for")
	s.String(&c.APNsMockURL, "apns-mock", "WAKEPUSH_DEMO_APNS_MOCK_URL", "https://127.0.0.1:18443", "APNs mock base URL")
	s.String(&c.APNsMockCA, "apns-mock-ca", "WAKEPUSH_DEMO_APNS_MOCK_CA", ".data/dev/apns-ca.pem", "CA of the APNs mock")
	s.String(&c.ClickHouseURL, "clickhouse-http", "WAKEPUSH_DEMO_CLICKHOUSE_HTTP", "http://127.0.0.1:18123", "ClickHouse HTTP interface")
	s.String(&c.JaegerURL, "jaeger", "WAKEPUSH_DEMO_JAEGER_URL", "http://127.0.0.1:18686", "Jaeger query service (the dev stack's; empty: do not look for the trace)")
	s.Duration(&c.Timeout, "timeout", "WAKEPUSH_DEMO_TIMEOUT", 15*time.Second, "how long to wait for the push and the rows")
	if err := s.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	start := time.Now()

	tokenBytes := make([]byte, 32)
	rand.Read(tokenBytes)
	token := hex.EncodeToString(tokenBytes)

	var reg struct {
		DeviceID string `json:"device_id"`
		Node     string `json:"node"`
		Secret   string `json:"secret"`
	}
	if err := postJSON(ctx, http.DefaultClient, c.IngestURL+"/v1/registrations", "", map[string]any{
		"app": c.App, "token": token, "environment": "production",
	}, &reg); err != nil {
		return fmt.Errorf("register device: %w", err)
	}
	fmt.Printf("1. registered a fake iOS device for %s\n   device_id=%s\n   node=%s\n", c.App, reg.DeviceID, reg.Node)

	var ev struct {
		EventID string `json:"event_id"`
	}
	// The HTTP form of an XEP-0357 publish: the node and secret the XMPP server would echo, and
	// the summary facts it would carry (a message with a body, count 1). No content is sent.
	if err := postJSON(ctx, http.DefaultClient, c.IngestURL+"/v1/events", c.EventToken, map[string]any{
		"node": reg.Node, "secret": reg.Secret, "important": true, "message_count": 1,
	}, &ev); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Printf("2. published one event, accepted as %s (%s)\n", ev.EventID, since(start))

	mock, err := mockClient(c.APNsMockCA)
	if err != nil {
		return err
	}
	pushes, err := poll(ctx, func() (json.RawMessage, bool, error) {
		var list []json.RawMessage
		err := getJSON(ctx, mock, c.APNsMockURL+"/control/pushes?token="+url.QueryEscape(token), &list)
		if err != nil || len(list) == 0 {
			return nil, false, err
		}
		b, _ := json.MarshalIndent(list, "   ", "  ")
		return b, true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the push at the APNs mock: %w", err)
	}
	fmt.Printf("3. the APNs mock received (%s):\n   %s\n", since(start), pushes)

	q := fmt.Sprintf(`SELECT 'events' AS table, count() AS rows FROM wakepush.events WHERE device_id = '%[1]s'
UNION ALL SELECT 'wakes', count() FROM wakepush.wakes WHERE device_id = '%[1]s'
UNION ALL SELECT 'deliveries', count() FROM wakepush.deliveries WHERE device_id = '%[1]s' AND outcome = 'ACCEPTED'
FORMAT JSONEachRow`, reg.DeviceID)
	var counts map[string]uint64
	_, err = poll(ctx, func() (json.RawMessage, bool, error) {
		body, err := clickhouseQuery(ctx, c.ClickHouseURL, q)
		if err != nil {
			return nil, false, err
		}
		counts = map[string]uint64{}
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			// UInt64 arrives as a number or, with output_format_json_quote_64bit_integers, a string.
			var row struct {
				Table string          `json:"table"`
				Rows  json.RawMessage `json:"rows"`
			}
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				return nil, false, fmt.Errorf("decode %q: %w", line, err)
			}
			n, err := strconv.ParseUint(strings.Trim(string(row.Rows), `"`), 10, 64)
			if err != nil {
				return nil, false, fmt.Errorf("decode %q: %w", line, err)
			}
			counts[row.Table] = n
		}
		return nil, counts["events"] > 0 && counts["wakes"] > 0 && counts["deliveries"] > 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for ClickHouse rows (have %v): %w", counts, err)
	}
	fmt.Printf("4. ClickHouse holds (%s):\n", since(start))
	for _, tq := range []struct{ name, sql string }{
		{"events", "SELECT id, accepted_at, app, platform, source, important, message_count FROM wakepush.events FINAL WHERE device_id = '%s' FORMAT PrettyCompactMonoBlock"},
		{"wakes", "SELECT id, created_at, reason, event_count FROM wakepush.wakes FINAL WHERE device_id = '%s' FORMAT PrettyCompactMonoBlock"},
		{"deliveries", "SELECT wake_id, created_at, outcome, status_code, attempt FROM wakepush.deliveries FINAL WHERE device_id = '%s' FORMAT PrettyCompactMonoBlock"},
	} {
		body, err := clickhouseQuery(ctx, c.ClickHouseURL, fmt.Sprintf(tq.sql, reg.DeviceID))
		if err != nil {
			return fmt.Errorf("read %s: %w", tq.name, err)
		}
		fmt.Printf("   %s:\n%s", tq.name, indent(body, "   "))
	}
	if c.JaegerURL != "" {
		showTrace(ctx, c.JaegerURL, ev.EventID, start)
	}
	return nil
}

// showTrace prints the publish's trace as Jaeger holds it: its URL and the span tree. A stack
// without Jaeger is said, not an error.
func showTrace(ctx context.Context, base, eventID string, start time.Time) {
	spans, err := demoTrace(ctx, base, eventID, start)
	switch {
	case errors.Is(err, errNoJaeger):
		fmt.Printf("5. no Jaeger at %s: this `make run` has no traces (its first run builds Jaeger in the background, `make jaeger` in the foreground; docs/tracing.md)\n", base)
		return
	case err != nil:
		fmt.Printf("5. trace: %v\n", err)
		return
	}
	id := spans[0].TraceID
	fmt.Printf("5. the trace in Jaeger (%s), publish → Kafka → wake → APNs → delivery record:\n", since(start))
	fmt.Printf("   %s/api/v3/traces/%s   (OTLP JSON; Jaeger JSON: %s/api/traces/%s)\n", base, id, base, id)
	fmt.Printf("   %s/trace/%s   (the web UI, if this Jaeger has one: the Go-built one shows a placeholder, docs/tracing.md)\n", base, id)
	printTraceTree(os.Stdout, spans, "   ")
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

func indent(s, pfx string) string {
	return pfx + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pfx) + "\n"
}

// poll calls f every 200 ms until it reports done or ctx ends.
func poll(ctx context.Context, f func() (json.RawMessage, bool, error)) (json.RawMessage, error) {
	var last error
	for {
		v, done, err := f()
		if done {
			return v, nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func mockClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("APNs mock CA (is `make run` up, from the repo root?): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("APNs mock CA %s: no PEM certificate", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}, nil
}

func postJSON(ctx context.Context, hc *http.Client, u, bearer string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return do(hc, req, out)
}

func getJSON(ctx context.Context, hc *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return do(hc, req, out)
}

func do(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

func clickhouseQuery(ctx context.Context, base, q string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/", strings.NewReader(q))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
