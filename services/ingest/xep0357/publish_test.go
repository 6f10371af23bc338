package xep0357_test

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// parseIQ reads one stanza the way the component does.
func parseIQ(t *testing.T, stanza string) xmpp.IQ {
	t.Helper()
	sr := xmpp.NewStreamReader(strings.NewReader(
		"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>"+stanza), 64<<10)
	if _, err := sr.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := sr.Next()
	if err != nil {
		t.Fatalf("read stanza: %v", err)
	}
	return xmpp.ParseIQ(el)
}

const secretOptions = `<publish-options><x xmlns='jabber:x:data' type='submit'>` +
	`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
	`<field var='secret'><value>s3cr3t</value></field></x></publish-options>`

// prosodyPublish is mod_cloud_notify's stanza (Prosody 0.12 / prosody-modules): a form of
// type 'form' with every field, message-count always 1, the dummy body for important stanzas.
func prosodyPublish(body string) string {
	bodyField := `<field type='text-single' var='last-message-body'/>`
	if body != "" {
		bodyField = `<field type='text-single' var='last-message-body'><value>` + body + `</value></field>`
	}
	return `<iq type='set' to='push.example.org' from='example.com' id='9f2c'>` +
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='v1.k1.0123456789abcdef0123456789abcdef.im.app'>` +
		`<item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>` +
		`<field type='hidden' var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>` +
		`<field type='text-single' var='message-count'><value>1</value></field>` +
		`<field type='text-single' var='pending-subscription-count'/>` +
		`<field type='jid-single' var='last-message-sender'><value>romeo@montague.lit/orchard</value></field>` +
		bodyField +
		`</x></notification></item></publish>` + secretOptions + `</pubsub></iq>`
}

func TestParsePublish(t *testing.T) {
	const node = "v1.k1.0123456789abcdef0123456789abcdef.im.app"
	tests := []struct {
		name   string
		stanza string
		want   *xep0357.Publish // nil: malformed
	}{
		{
			name:   "prosody important (dummy body)",
			stanza: prosodyPublish("New Message!"),
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t",
				Summary: xep0357.Summary{Present: true, FormType: "form", Important: true, MessageCount: 1}},
		},
		{
			name:   "prosody with real body (push_notification_with_body)",
			stanza: prosodyPublish("Wherefore art thou &amp; &lt;b&gt;"),
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t",
				Summary: xep0357.Summary{Present: true, FormType: "form", Important: true, MessageCount: 1}},
		},
		{
			name:   "prosody unimportant (empty body field)",
			stanza: prosodyPublish(""),
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t",
				Summary: xep0357.Summary{Present: true, FormType: "form", MessageCount: 1}},
		},
		{
			name: "ejabberd submit form, no message-count",
			stanza: `<iq from='example.com' to='push.example.org' type='set' id='a1' xml:lang='en'>` +
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'>` +
				`<item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='submit'>` +
				`<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field>` +
				`<field var='last-message-body'><value>New message</value></field>` +
				`</x></notification></item></publish>` + secretOptions + `</pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t",
				Summary: xep0357.Summary{Present: true, FormType: "submit", Important: true}},
		},
		{
			name: "ejabberd without summary",
			stanza: `<iq from='example.com' to='push.example.org' type='set' id='a2'>` +
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'>` +
				`<item><notification xmlns='urn:xmpp:push:0'/></item></publish>` + secretOptions + `</pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t"},
		},
		{
			name: "no item at all, counts and pending subscriptions",
			stanza: `<iq from='example.com' to='push.example.org' type='set' id='a3'>` +
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node=' ` + node + ` '/>` + secretOptions + `</pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Secret: "s3cr3t"},
		},
		{
			name: "XEP-0357 example: counts, sender, no FORM_TYPE type attr, prefixed namespaces",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='n12'>` +
				`<ps:pubsub xmlns:ps='http://jabber.org/protocol/pubsub'><ps:publish node='` + node + `'><ps:item>` +
				`<notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data'>` +
				`<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>` +
				`<field var='message-count'><value> 5 </value></field>` +
				`<field var='pending-subscription-count'><value>2</value></field>` +
				`<field var='last-message-sender'><value>juliet@capulet.example/balcony</value></field>` +
				`<field var='last-message-body'><value>Wherefore art thou, Romeo?</value></field>` +
				`</x></notification></ps:item></ps:publish>` +
				`<ps:publish-options><x xmlns='jabber:x:data' type='submit'>` +
				`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
				`<field var='secret'><value>eruio234vzxc2kla-91</value></field>` +
				`<field var='pushModule'><value>monalProdiOS</value></field>` +
				`</x></ps:publish-options></ps:pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Secret: "eruio234vzxc2kla-91", Options: map[string]string{"pushModule": "monalProdiOS"},
				Summary: xep0357.Summary{Present: true, Important: true, MessageCount: 5, PendingSubscriptionCount: 2}},
		},
		{
			name: "urgent publish option, garbage and huge counts",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='u1'>` +
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'><item>` +
				`<notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>` +
				`<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>` +
				`<field var='message-count'><value>many</value></field>` +
				`<field var='pending-subscription-count'><value>99999999999999999999999</value></field>` +
				`</x></notification></item></publish>` +
				`<publish-options><x xmlns='jabber:x:data' type='submit'>` +
				`<field var='secret'><value>s</value></field><field var='urgent'><value>true</value></field>` +
				`</x></publish-options></pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Secret: "s", Urgent: true,
				Summary: xep0357.Summary{Present: true, FormType: "form", PendingSubscriptionCount: math.MaxUint32}},
		},
		{
			name: "urgent in the summary (a server module may add it), no publish-options",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='u2'>` +
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'><item>` +
				`<notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>` +
				`<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>` +
				`<field var='urgent'><value>1</value></field>` +
				`</x></notification></item></publish></pubsub></iq>`,
			want: &xep0357.Publish{Node: node, Urgent: true, Summary: xep0357.Summary{Present: true, FormType: "form"}},
		},
		{
			name:   "no publish",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='m1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='x'/></pubsub></iq>`,
		},
		{
			name:   "no node",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='m2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish><item/></publish></pubsub></iq>`,
		},
		{
			name:   "empty node",
			stanza: `<iq type='set' from='example.com' to='push.example.org' id='m3'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='  '/></pubsub></iq>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := xep0357.ParsePublish(parseIQ(t, tt.stanza).Payload)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("parsed %+v, want malformed", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			// Nothing of the body or the sender survives parsing.
			dump := strings.ToLower(fmtValue(got))
			for _, s := range []string{"wherefore", "new message", "romeo", "juliet", "montague"} {
				if strings.Contains(dump, s) {
					t.Fatalf("parsed publish retains %q: %s", s, dump)
				}
			}
		})
	}
}

func fmtValue(p *xep0357.Publish) string {
	return strings.Join([]string{p.Node, p.Secret, p.Summary.FormType, reflect.ValueOf(p.Options).String()}, "|") + "|" + strings.Join(mapValues(p.Options), "|")
}

func mapValues(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

// TestNoContentFields asserts structurally that the parsed types have no field that could hold
// a message body or sender (DESIGN §4).
func TestNoContentFields(t *testing.T) {
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name := strings.ToLower(f.Name)
			for _, bad := range []string{"body", "sender", "from", "lastmessage", "text", "content"} {
				if strings.Contains(name, bad) {
					t.Errorf("%s.%s could hold message content", path, f.Name)
				}
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeOf(xep0357.Publish{}), "Publish")
}
