package component_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// useReader makes a manual reader's provider the global one for the test.
func useReader(t *testing.T) *sdkmetric.ManualReader {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })
	return reader
}

// collect returns the data of the metric called name (nil: none).
func collect(t *testing.T, reader *sdkmetric.ManualReader, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	return nil
}

// connections reads wakepush.ingest.component.connections per server (-1: no series).
func connections(t *testing.T, reader *sdkmetric.ManualReader, server string) int64 {
	t.Helper()
	if data, ok := collect(t, reader, "wakepush.ingest.component.connections").(metricdata.Sum[int64]); ok {
		for _, dp := range data.DataPoints {
			if v, _ := dp.Attributes.Value("server"); v.AsString() == server {
				return dp.Value
			}
		}
	}
	return -1
}

// A configured connection is a series from the start: 0 until it is up (the alert
// WakepushComponentDisconnected reads it), 1 while connected.
func TestConnectionsMetric(t *testing.T) {
	reader := useReader(t)

	if _, err := component.New(component.Config{Addr: "127.0.0.1:1", JID: jid, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if got := connections(t, reader, "127.0.0.1:1"); got != 0 {
		t.Fatalf("connections of a never connected component = %d, want 0", got)
	}

	srv := newFakeServer(t)
	c, _, _ := start(t, srv, component.Config{}, nil)
	srv.next()
	waitConnected(t, c)
	if got := connections(t, reader, srv.ln.Addr().String()); got != 1 {
		t.Fatalf("connections while connected = %d, want 1", got)
	}
}

// answers reads wakepush.ingest.iq.duration's count per answer label (result, wait, undelivered…).
func answers(t *testing.T, reader *sdkmetric.ManualReader) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	if data, ok := collect(t, reader, "wakepush.ingest.iq.duration").(metricdata.Histogram[float64]); ok {
		for _, dp := range data.DataPoints {
			v, _ := dp.Attributes.Value("answer")
			got[v.AsString()] += dp.Count
		}
	}
	return got
}

// Handlers that finish together have their answers written together (one of them writes the
// others'): every answer arrives once, and each is recorded, delivered or not.
func TestAnswersFinishingTogether(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hangUp    bool // the server closes the connection before the handlers finish
		wantLabel string
	}{
		{name: "delivered", wantLabel: "result"},
		{name: "connection gone", hangUp: true, wantLabel: "undelivered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := useReader(t)

			const n = 50
			srv := newFakeServer(t)
			release := make(chan struct{})
			started := make(chan struct{}, n)
			start(t, srv, component.Config{MaxInFlight: n}, func(c *component.Component) {
				c.Handle("set", xmpp.NSPubSub, "pubsub", "publish", true, func(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
					started <- struct{}{}
					<-release // every handler finishes at once, as a Kafka acknowledgement wakes them
					return "", nil
				})
			})
			sc := srv.next()
			var pubs strings.Builder
			for i := range n {
				fmt.Fprintf(&pubs, `<iq type='set' id='p%d' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`, i)
			}
			sc.send(pubs.String())
			for range n {
				<-started
			}
			if tc.hangUp {
				sc.nc.Close()
				time.Sleep(50 * time.Millisecond) // let the component's read loop see the end
			}
			close(release)

			if !tc.hangUp {
				seen := map[string]bool{}
				for range n {
					el := sc.mustRead()
					id := el.AttrValue("id")
					if el.AttrValue("type") != "result" || seen[id] {
						t.Fatalf("answer %+v (seen before: %v)", el, seen[id])
					}
					seen[id] = true
				}
				if el, err := sc.read(100 * time.Millisecond); err == nil {
					t.Fatalf("an answer more than the %d IQs: %+v", n, el)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				got := answers(t, reader)
				if got[tc.wantLabel] == n && len(got) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("recorded answers %v, want %d %q", got, n, tc.wantLabel)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
