package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	s, err := New("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metric 1\n") }))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(slog.Default())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	base := "http://" + s.Addr()

	if code, _ := get(t, base+"/livez"); code != 200 {
		t.Errorf("/livez = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before ready = %d %q, want 503 starting", code, body)
	}
	s.SetReady(true, "")
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	var failing error
	s.AddCheck(Check{Name: "kafka", Fn: func(context.Context) error { return failing }})
	failing = errors.New("no brokers")
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "kafka: no brokers") {
		t.Errorf("/readyz with failing check = %d %q", code, body)
	}
	failing = nil
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz after the check recovered = %d", code)
	}
	s.SetReady(false, "draining")
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || body != "metric 1\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}
}
