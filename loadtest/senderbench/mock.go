package senderbench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/procs"
)

// MockPackage is the APNs mock command the benchmark runs as a child process.
const MockPackage = "github.com/wakepush/wakepush/loadtest/cmd/apns-mock"

// mock is the APNs mock (cmd/apns-mock) as a child process, with a client of its control API.
type mock struct {
	proc   *procs.Process
	url    string // https://127.0.0.1:port
	caFile string
	client *http.Client
}

// startMock starts the mock on a free port accepting key (team:key id:p8 file) for topic, keeping
// up to records accepted pushes, answering after latency, and waits until its control API answers.
func startMock(ctx context.Context, bin, dir, team, keyID, keyFile, topic string, records int, latency time.Duration) (*mock, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, fmt.Errorf("apns mock: free port: %w", err)
	}
	m := &mock{url: "https://" + addr, caFile: filepath.Join(dir, "apns-ca.pem")}
	args := []string{"-addr", addr, "-ca-out", m.caFile, "-key", team + ":" + keyID + ":" + keyFile, "-topic", topic,
		"-max-records", strconv.Itoa(records), "-log-level", "warn"}
	if latency > 0 {
		args = append(args, "-latency", latency.String())
	}
	if m.proc, err = procs.Start("apns-mock", bin, filepath.Join(dir, "apns-mock.log"), nil, args...); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err = m.connect(); err == nil {
			var stats mockStats
			if err = m.get(ctx, "/control/stats", &stats); err == nil {
				return m, nil
			}
		}
		select {
		case <-m.proc.Done():
			return nil, fmt.Errorf("apns mock exited before it was ready (%v); log: %s", m.proc.Err(), m.proc.Log)
		case <-ctx.Done():
			m.proc.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.proc.Stop()
			return nil, fmt.Errorf("apns mock not ready at %s after 60 s: %v; log: %s", m.url, err, m.proc.Log)
		}
	}
}

// connect makes the control API client once the mock has written its CA.
func (m *mock) connect() error {
	if m.client != nil {
		return nil
	}
	pem, err := os.ReadFile(m.caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no PEM certificate", m.caFile)
	}
	m.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	return nil
}

func (m *mock) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("apns mock %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("apns mock %s: %s: %s", path, resp.Status, b)
	}
	if w, ok := into.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(into)
	}
	if err != nil {
		return fmt.Errorf("apns mock %s: %w", path, err)
	}
	return nil
}

type mockStats struct {
	Accepted int64 `json:"accepted"`
	Recorded int   `json:"recorded"`
}

// accepted is the number of pushes the mock has accepted (answered 200).
func (m *mock) accepted(ctx context.Context) (int64, error) {
	var s mockStats
	err := m.get(ctx, "/control/stats", &s)
	return s.Accepted, err
}

// answers reads the mock's apnsmock_requests_total: APNs requests answered, by "status reason"
// ("200 " for accepted pushes).
func (m *mock) answers(ctx context.Context) (map[string]int64, error) {
	var b strings.Builder
	if err := m.get(ctx, "/metrics", &b); err != nil {
		return nil, err
	}
	return parseAnswers(b.String())
}

// parseAnswers reads the apnsmock_requests_total samples of a Prometheus text exposition.
func parseAnswers(text string) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "apnsmock_requests_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		var status, reason string
		for _, kv := range strings.Split(labels, ",") {
			k, val, _ := strings.Cut(kv, "=")
			val = strings.Trim(val, `"`)
			switch k {
			case "status":
				status = val
			case "reason":
				reason = val
			}
		}
		if v > 0 {
			out[status+" "+reason] += int64(v)
		}
	}
	return out, sc.Err()
}

// pushes returns every push the mock recorded.
func (m *mock) pushes(ctx context.Context) ([]apnsmock.Push, error) {
	var ps []apnsmock.Push
	err := m.get(ctx, "/control/pushes", &ps)
	return ps, err
}

// stop ends the mock (SIGTERM) and reports how it ended.
func (m *mock) stop() error {
	if m.client != nil {
		m.client.CloseIdleConnections()
	}
	return m.proc.Stop()
}
