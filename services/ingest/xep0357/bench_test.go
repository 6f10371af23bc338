package xep0357_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// repeatReader yields data forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// encoder marshals each record the way the Kafka producer does, without sending it.
type encoder struct{ bytes int }

func (e *encoder) Produce(_ context.Context, recs ...kafkax.Record) error {
	for _, r := range recs {
		b, err := proto.Marshal(r.Msg)
		if err != nil {
			return err
		}
		e.bytes += len(b)
	}
	return nil
}

// BenchmarkPublishPath is the CPU cost of one publish without Kafka's round trip: read the
// stanza from the stream, parse the IQ and the publish, verify node and secret, build and
// encode the PushEvent, write the IQ answer.
func BenchmarkPublishPath(b *testing.B) {
	for _, tc := range []struct{ name, file string }{{"prosody", "prosody-important.xml"}, {"ejabberd", "ejabberd-submit.xml"}} {
		b.Run(tc.name, func(b *testing.B) {
			raw, err := os.ReadFile(filepath.Join("testdata", "stanzas", tc.file))
			if err != nil {
				b.Fatal(err)
			}
			reg := testenv.Keys(b).Register(testenv.IOSApp, "apns", testenv.APNsToken)
			stanza := strings.Replace(strings.TrimSpace(string(raw)), "v1.k1.0123456789abcdef0123456789abcdef.im.app", reg.Node, 1)
			stanza = strings.Replace(stanza, "s3cr3t", reg.Secret, 1)
			in, err := core.New(core.Config{Apps: testenv.Apps(b), Keys: testenv.Keys(b), Producer: &encoder{}, Devices: devices.New(),
				ProduceTimeout: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			h := xep0357.NewHandler(in)
			sr := xmpp.NewStreamReader(io.MultiReader(strings.NewReader(fuzzHeader), &repeatReader{data: []byte(stanza)}), 64<<10)
			if _, err := sr.Header(); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.SetBytes(int64(len(stanza)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				el, err := sr.Next()
				if err != nil {
					b.Fatal(err)
				}
				iq := xmpp.ParseIQ(el)
				payload, serr := h.HandlePublish(ctx, iq)
				if serr != nil {
					b.Fatal(serr)
				}
				_ = xmpp.ResultXML(iq, payload)
			}
		})
	}
}
