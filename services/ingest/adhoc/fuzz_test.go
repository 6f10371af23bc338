package adhoc_test

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/adhoc"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

type fakeRegistrar struct{}

func (fakeRegistrar) Register(_ context.Context, req core.RegisterRequest) (core.Registered, error) {
	if len(req.Token) < 16 {
		return core.Registered{}, &core.Error{Code: core.CodeMalformed, Detail: "bad token"}
	}
	return core.Registered{DeviceID: "d", Node: "v1.k.d." + req.App, Secret: "s", JID: "push.example.org"}, nil
}

func (fakeRegistrar) UnregisterAccount(context.Context, string, string, string, string, wakepushv1.RegistrationSource) (string, error) {
	return "", errors.New("kafka down")
}

// FuzzCommand: the ad-hoc command and its form handling never panic and always answer with
// well-formed XML. Runs on the seed corpus in `go test`.
func FuzzCommand(f *testing.F) {
	// What Conversations sends (one stage), and a multi-stage client's first step.
	f.Add([]byte(`<iq type='set' id='c' from='alice@example.com/phone' to='push.example.org'><command xmlns='http://jabber.org/protocol/commands' node='register-push-fcm' action='execute'>` +
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>https://p2.siacs.eu/push</value></field>` +
		`<field var='token'><value>fcm-token-0123456789abcdef</value></field><field var='android-id'><value>4bc2</value></field></x></command></iq>`))
	f.Add([]byte(`<iq type='set' id='c' from='a@b/c'><command xmlns='http://jabber.org/protocol/commands' node='register-push-apns'/></iq>`))
	f.Add([]byte(`<iq type='set' id='c' from='a@b/c'><command xmlns='http://jabber.org/protocol/commands' node='unregister-push-fcm' action='execute' sessionid='x&apos;y'>` +
		`<x xmlns='jabber:x:data' type='submit'><field var='android-id'><value>4bc2</value></field><field var='muc'><value>r@muc.b</value></field></x></command></iq>`))
	c := adhoc.New(fakeRegistrar{}, "push.example.org", adhoc.Services{"apns": "im.app", "fcm": "org.app"}, core.Rate{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sr := xmpp.NewStreamReader(strings.NewReader("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>"+string(data)), 64<<10)
		if _, err := sr.Header(); err != nil {
			return
		}
		el, err := sr.Next()
		if err != nil {
			return
		}
		iq := xmpp.ParseIQ(el)
		if iq.Payload == nil {
			return
		}
		payload, serr := c.HandleCommand(context.Background(), iq)
		out := xmpp.ResultXML(iq, payload)
		if serr != nil {
			out = xmpp.ErrorXML(iq, serr)
		}
		d := xml.NewDecoder(strings.NewReader(out))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("answer %q: %v", out, err)
			}
		}
	})
}
