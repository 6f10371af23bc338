package apnsmock_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// BenchmarkAcceptedPush measures accepted pushes per second through the real
// sideshow/apns2 client (one shared client, i.e. one HTTP/2 connection, as the
// sender uses per key) against the mock, client and server in one process.
func BenchmarkAcceptedPush(b *testing.B) {
	f := newFixture(b, apnsmock.Config{})
	c := f.client(f.teamToken())
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = deviceToken()
	}
	// Warm up: connection, TLS, JWT verification.
	if resp, err := c.Push(alertNotification(tokens[0])); err != nil || resp.StatusCode != 200 {
		b.Fatalf("warm-up: %v %+v", err, resp)
	}
	var seq atomic.Uint64
	var failed atomic.Int64
	b.SetParallelism(64) // 64 × GOMAXPROCS concurrent streams on the connection
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := alertNotification(tokens[seq.Add(1)%uint64(len(tokens))])
			resp, err := c.PushWithContext(context.Background(), n)
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d pushes failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}

// BenchmarkHandler measures the mock's own cost per accepted push (validation,
// cached JWT check, recording) without HTTP/2 and TLS.
func BenchmarkHandler(b *testing.B) {
	f := newFixture(b, apnsmock.Config{MaxRecords: 100_000})
	bearer := "bearer " + signJWT(b, f.key, keyID, teamID, time.Now())
	tok := deviceToken()
	body := `{"aps":{"alert":{"title":"New message"},"mutable-content":1}}`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/3/device/"+tok, strings.NewReader(body))
			r.ProtoMajor, r.ProtoMinor = 2, 0
			r.Header["Authorization"] = []string{bearer}
			r.Header["Apns-Topic"] = []string{topic}
			r.Header["Apns-Push-Type"] = []string{"alert"}
			r.Header["Apns-Priority"] = []string{"10"}
			w := httptest.NewRecorder()
			f.srv.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
