package xep0357_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

const fuzzHeader = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>"

// addSeeds adds the real publish stanzas of testdata/stanzas (Prosody's mod_cloud_notify,
// ejabberd's mod_push, the fpush/Monal form) to the corpus.
func addSeeds(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "stanzas", "*.xml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed stanzas: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.TrimSpace(b))
	}
	f.Add([]byte(`<iq type='set' from='a' id='1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`))
	f.Add([]byte(`<iq type='set' from='a' id='1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data'><field var='last-message-body'><value/><value>b</value></field></x></notification></item></publish></pubsub></iq>`))
}

// stanzas reads up to 8 stanzas from data the way the component does.
func stanzas(data []byte) []*xmpp.Element {
	sr := xmpp.NewStreamReader(strings.NewReader(fuzzHeader+string(data)), 64<<10)
	if _, err := sr.Header(); err != nil {
		return nil
	}
	var out []*xmpp.Element
	for i := 0; i < 8; i++ {
		el, err := sr.Next()
		if err != nil {
			break
		}
		out = append(out, el)
	}
	return out
}

// scrub replaces the text of every non-empty last-message-body and last-message-sender value
// inside a notification, keeping emptiness (which decides "important").
func scrub(el *xmpp.Element, inNotification bool) {
	if el.Name.Local == "notification" {
		inNotification = true
	}
	if inNotification && el.Name.Local == "field" {
		if v := el.AttrValue("var"); v == "last-message-body" || v == "last-message-sender" {
			for _, c := range el.Children {
				if c.TrimmedText() != "" {
					c.Text = "scrubbed"
				}
			}
		}
	}
	for _, c := range el.Children {
		scrub(c, inNotification)
	}
}

// FuzzParsePublish: parsing never panics, and nothing ParsePublish returns depends on the
// message body or sender beyond whether a body was present (so none of it can be kept).
// Runs on the seed corpus in `go test`; `go test -fuzz FuzzParsePublish ./ingest/xep0357` explores.
func FuzzParsePublish(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		orig, scrubbed := stanzas(data), stanzas(data)
		for i, el := range orig {
			iq := xmpp.ParseIQ(el)
			p, err := xep0357.ParsePublish(iq.Payload)
			scrub(scrubbed[i], false)
			p2, err2 := xep0357.ParsePublish(xmpp.ParseIQ(scrubbed[i]).Payload)
			if (err == nil) != (err2 == nil) || !reflect.DeepEqual(p, p2) {
				t.Fatalf("the parse depends on the body or sender:\n%+v %v\n%+v %v", p, err, p2, err2)
			}
		}
	})
}

// FuzzHandlePublish: the whole publish path (parse, both conventions, answer) never panics and
// always answers with well-formed XML that never echoes the notification.
func FuzzHandlePublish(f *testing.F) {
	addSeeds(f)
	mods, _ := core.ParsePushModules("monalProdiOS=" + testenv.IOSApp)
	in, err := core.New(core.Config{Apps: testenv.Apps(f), Keys: testenv.Keys(f), Producer: &discard{}, Devices: devices.New(),
		ProduceTimeout: time.Second, TokenNodes: &core.TokenNodeConfig{Modules: mods}})
	if err != nil {
		f.Fatal(err)
	}
	h := xep0357.NewHandler(in)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, el := range stanzas(data) {
			iq := xmpp.ParseIQ(el)
			payload, serr := h.HandlePublish(context.Background(), iq)
			var out string
			if serr != nil {
				out = xmpp.ErrorXML(iq, serr)
			} else {
				out = xmpp.ResultXML(iq, payload)
			}
			d := xml.NewDecoder(strings.NewReader(out))
			for {
				if _, err := d.Token(); err != nil {
					if err.Error() != "EOF" {
						t.Fatalf("answer %q is not well-formed: %v", out, err)
					}
					break
				}
			}
			if strings.Contains(out, "notification") || strings.Contains(out, "last-message") {
				t.Fatalf("answer echoes the payload: %s", out)
			}
		}
	})
}

type discard struct{}

func (discard) Produce(context.Context, ...kafkax.Record) error { return nil }
