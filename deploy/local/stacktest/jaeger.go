package stacktest

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/jaeger"
)

// Jaeger starts Jaeger all-in-one (in-memory storage, see package jaeger) for the test on free
// loopback ports and returns them; it is stopped when the test ends, its log goes to t.Log as
// "[jaeger] …". The pinned binary is built first when the user cache lacks it (~8 min cold on
// the 2-core dev machine; `make jaeger` builds it beforehand, and `make test` does): the test
// then waits for the build, it is never skipped.
func Jaeger(t testing.TB) jaeger.Ports {
	t.Helper()
	bin, ok := jaeger.Cached()
	if !ok {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root, err := jaeger.FindRoot(wd)
		if err != nil {
			t.Fatalf("stacktest: %v", err)
		}
		t.Logf("stacktest: building Jaeger %s into the user cache (~8 min cold; `make jaeger` does this ahead)", jaeger.Version)
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		out := &logWriter{t: t, prefix: "[jaeger build] "}
		if bin, err = jaeger.Build(ctx, root, out); err != nil {
			t.Fatalf("stacktest: %v", err)
		}
		t.Logf("stacktest: built Jaeger in %s", time.Since(began).Round(time.Second))
	}
	p := jaeger.Ports{OTLPHTTP: FreePort(t), QueryHTTP: FreePort(t), QueryGRPC: FreePort(t), Health: FreePort(t)}
	cfg, err := jaeger.WriteConfig(t.TempDir(), p)
	if err != nil {
		t.Fatal(err)
	}
	proc := StartProcess(t, "jaeger", bin, nil, "--config", cfg)
	proc.WaitHTTP(p.HealthURL(), 60*time.Second)
	return p
}

// logWriter sends whole lines to t.Log.
type logWriter struct {
	t      testing.TB
	prefix string
	buf    []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.t.Log(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
