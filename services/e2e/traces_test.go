package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/jaeger"
	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

// TestTracesInJaeger reads the pipeline's traces back from a real Jaeger (query API v3) after
// real Prosody publishes: several messages to an offline user, so one leading wake covers the
// first publish and one trailing wake the others. For every publish there is one trace, rooted
// at the component IQ, with the Kafka produce under it; the coalescer's wake span links to every
// event it covers and continues the trace of the first; under it the wake is produced, consumed
// by the sender, sent to the APNs mock (a CLIENT span) and its delivery record produced. Kafka
// spans follow the OpenTelemetry messaging conventions, and no token, JID, secret or message
// body is in any span of any service.
func TestTracesInJaeger(t *testing.T) {
	jg := stacktest.Jaeger(t)
	srv := prosody.Start(t, prosody.Options{})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")
	started := time.Now()
	s := startStackEnv(t, &component{Addr: srv.ComponentAddr, JID: srv.ComponentJID, Secret: srv.ComponentSecret}, []string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + jg.TracesEndpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"OTEL_TRACES_SAMPLER=parentbased_always_on",
	})
	srv.WaitLog("External component successfully authenticated", 20*time.Second)

	token := deviceToken(t)
	reg := s.register(token)
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(reg.JID, reg.Node, reg.Secret)
	alice.Close() // offline: each message goes to offline storage and mod_cloud_notify publishes

	const body = "the secret plans are in the usual place"
	const messages = 4
	bob := srv.Login(t, "bob", "bob-pw")
	for i := range messages {
		bob.Message(srv.JID("alice"), fmt.Sprintf("%s, part %d", body, i+1))
	}
	// Usually a leading wake for the first publish and one trailing wake for the rest
	// (minInterval = 1 s); when the coalescer reads all four in the fetch that opens the leading
	// wake, they join it before it is produced and one wake covers them all. Both are right.
	s.waitPushes(token, 1, 20*time.Second)
	s.waitCount(messages, 20*time.Second, "SELECT count() FROM events FINAL WHERE device_id = ? AND source = 'XMPP_COMPONENT'", reg.DeviceID)
	time.Sleep(minInterval + time.Second) // a trailing wake, if any, is out by now
	wakes := len(s.mock.PushesFor(token))
	if wakes < 1 || wakes > 2 {
		t.Fatalf("APNs mock got %d pushes for %d publishes inside one interval, want 1 or 2", wakes, messages)
	}

	// Read back until every wake's chain reached Jaeger (spans are exported every 100 ms).
	cl := jg.Client()
	var v *traceView
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		v, err = readTraces(cl, "ingest", started, reg.DeviceID)
		if err == nil && len(v.publishes) == messages && v.complete(wakes) {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("jaeger: %v", err)
			}
			t.Fatalf("after 30 s Jaeger holds %d publish trace(s) of %d and an incomplete wake chain:\n%s", len(v.publishes), messages, v.dump())
		}
		time.Sleep(250 * time.Millisecond)
	}

	// One trace per publish, rooted at the component IQ, with the push.events produce under it.
	eventSpans := map[string]jaeger.Span{} // producer span id → span
	seenTraces := map[string]bool{}
	for _, iq := range v.publishes {
		if seenTraces[iq.TraceID] {
			t.Errorf("two publishes in trace %s", iq.TraceID)
		}
		seenTraces[iq.TraceID] = true
		if iq.ParentSpanID != "" || iq.Kind != "SERVER" || iq.Attributes["xmpp.from_domain"] != srv.Domain {
			t.Errorf("publish span %s: parent %q kind %s attributes %v: want a SERVER root from %s", iq.Name, iq.ParentSpanID, iq.Kind, iq.Attributes, srv.Domain)
		}
		prods := v.descendants(iq, func(sp jaeger.Span) bool { return sp.Name == "send push.events" })
		if len(prods) != 1 {
			t.Errorf("publish trace %s has %d push.events produce span(s) under the IQ, want 1:\n%s", iq.TraceID, len(prods), v.dump())
			continue
		}
		p := prods[0]
		assertMessaging(t, p, "PRODUCER", "send", "push.events", reg.DeviceID)
		eventSpans[p.SpanID] = p
	}

	// The wakes: each links to every event it covers, continues the trace of the first, and
	// leads to the wake produce, the sender's processing, the APNs call and the delivery record.
	covered := map[string]int{}
	coalesced := false
	for _, w := range v.wakes {
		assertMessaging(t, w, "CONSUMER", "process", "push.events", reg.DeviceID)
		if w.Attributes["messaging.consumer.group.name"] == "" {
			t.Errorf("wake span has no messaging.consumer.group.name: %v", w.Attributes)
		}
		n, _ := strconv.Atoi(w.Attributes["messaging.batch.message_count"])
		if n != len(w.Links) || n == 0 {
			t.Errorf("wake span covers %d event(s) (messaging.batch.message_count) but has %d link(s)", n, len(w.Links))
		}
		coalesced = coalesced || len(w.Links) >= 2
		for _, l := range w.Links {
			ev, ok := eventSpans[l.SpanID]
			if !ok || ev.TraceID != l.TraceID {
				t.Errorf("wake links to %s/%s, which is no publish's push.events span", l.TraceID, l.SpanID)
				continue
			}
			covered[l.SpanID]++
		}
		if len(w.Links) > 0 && (w.TraceID != w.Links[0].TraceID || w.ParentSpanID != w.Links[0].SpanID) {
			t.Errorf("wake span %s/%s (parent %s) does not continue the first covered event's trace %s/%s",
				w.TraceID, w.SpanID, w.ParentSpanID, w.Links[0].TraceID, w.Links[0].SpanID)
		}
		chain := v.chain(w)
		if chain.produce == nil || chain.process == nil || chain.client == nil || chain.delivery == nil {
			t.Errorf("wake %s: incomplete chain %+v\n%s", w.Attributes["wakepush.wake.id"], chain, v.dump())
			continue
		}
		assertMessaging(t, *chain.produce, "PRODUCER", "send", "push.wakes", reg.DeviceID)
		assertMessaging(t, *chain.process, "CONSUMER", "process", "push.wakes", reg.DeviceID)
		if chain.process.Service != "sender" || chain.process.Attributes["messaging.consumer.group.name"] == "" {
			t.Errorf("push.wakes process span: service %s attributes %v", chain.process.Service, chain.process.Attributes)
		}
		if c := chain.client; c.Service != "sender" || c.Name != "apns push" || c.Attributes["http.response.status_code"] != "200" ||
			c.Attributes["server.address"] != "127.0.0.1" || c.Attributes["http.request.method"] != "POST" {
			t.Errorf("APNs client span %s (%s): %v", c.Name, c.Service, c.Attributes)
		}
		assertMessaging(t, *chain.delivery, "PRODUCER", "send", "push.deliveries", reg.DeviceID)
	}
	if len(v.wakes) != wakes {
		t.Errorf("%d wake span(s) in Jaeger, %d pushes at the mock", len(v.wakes), wakes)
	}
	if !coalesced {
		t.Errorf("no wake span covers several events: the test did not coalesce")
	}
	for id := range eventSpans {
		if covered[id] != 1 {
			t.Errorf("event span %s is linked from %d wake(s), want 1", id, covered[id])
		}
	}

	// No token, JID, secret or body anywhere: every span of every service since the start.
	services, err := cl.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ingest", "coalescer", "sender", "recorder"} {
		if !slices.Contains(services, want) {
			t.Errorf("Jaeger has no spans of %s (services %v)", want, services)
		}
	}
	forbidden := []string{token, strings.ToUpper(token), reg.Secret, srv.JID("alice"), srv.JID("bob"), "alice@", "bob@", body[:20], srv.ComponentSecret}
	checked := 0
	seen := map[string]bool{} // a trace spanning several services is found once per service
	for _, svc := range services {
		traces, err := cl.FindTraces(context.Background(), svc, started.Add(-time.Minute), time.Now().Add(time.Minute), 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, spans := range traces {
			for _, sp := range spans {
				if seen[sp.SpanID] {
					continue
				}
				seen[sp.SpanID] = true
				checked++
				for where, text := range spanTexts(sp) {
					for _, f := range forbidden {
						if f != "" && strings.Contains(text, f) {
							t.Errorf("%s span %q: %s carries %q", sp.Service, sp.Name, where, f)
						}
					}
					if jidRE.MatchString(text) {
						t.Errorf("%s span %q: %s looks like a JID: %q", sp.Service, sp.Name, where, text)
					}
				}
				if k, ok := sp.Attributes["messaging.kafka.message.key"]; ok && !keyRE.MatchString(k) {
					t.Errorf("%s span %q: message key %q is not a device id", sp.Service, sp.Name, k)
				}
			}
		}
	}
	t.Logf("%d publish traces, %d wakes (links %v); privacy checked on %d spans of %v", len(v.publishes), len(v.wakes), linkCounts(v.wakes), checked, services)
}

var (
	jidRE = regexp.MustCompile(`[^\s@/"'<>]+@[A-Za-z0-9.\-]+`)
	// A Kafka key is a device id or "<device_id>/<registration_id>" (keyed hashes).
	keyRE = regexp.MustCompile(`^[0-9a-f]{32}(/[0-9a-f]{32})?$`)
)

func linkCounts(ws []jaeger.Span) []int {
	var n []int
	for _, w := range ws {
		n = append(n, len(w.Links))
	}
	return n
}

// spanTexts is every text a span carries, by where it is.
func spanTexts(sp jaeger.Span) map[string]string {
	m := map[string]string{"name": sp.Name, "status": sp.StatusMsg}
	for k, v := range sp.Attributes {
		m["attribute "+k] = v
	}
	for k, v := range sp.Resource {
		m["resource "+k] = v
	}
	for i, e := range sp.Events {
		m[fmt.Sprintf("event %d name", i)] = e.Name
		for k, v := range e.Attributes {
			m[fmt.Sprintf("event %d (%s) %s", i, e.Name, k)] = v
		}
	}
	for i, l := range sp.Links {
		for k, v := range l.Attributes {
			m[fmt.Sprintf("link %d %s", i, k)] = v
		}
	}
	return m
}

// assertMessaging checks the OpenTelemetry messaging conventions on a Kafka span.
func assertMessaging(t *testing.T, sp jaeger.Span, kind, op, topic, key string) {
	t.Helper()
	want := map[string]string{
		"messaging.system":            "kafka",
		"messaging.operation.type":    op,
		"messaging.operation.name":    op,
		"messaging.destination.name":  topic,
		"messaging.kafka.message.key": key,
	}
	for k, v := range want {
		if sp.Attributes[k] != v {
			t.Errorf("%s span %q: %s = %q, want %q", sp.Service, sp.Name, k, sp.Attributes[k], v)
		}
	}
	if sp.Kind != kind || sp.Name != op+" "+topic {
		t.Errorf("%s span %q kind %s, want %q %s", sp.Service, sp.Name, sp.Kind, op+" "+topic, kind)
	}
	if _, err := strconv.Atoi(sp.Attributes["messaging.destination.partition.id"]); err != nil {
		t.Errorf("%s span %q: messaging.destination.partition.id %q", sp.Service, sp.Name, sp.Attributes["messaging.destination.partition.id"])
	}
	// A wake span processes several records: no single offset.
	if sp.Name != "process push.events" {
		if _, err := strconv.ParseInt(sp.Attributes["messaging.kafka.offset"], 10, 64); err != nil {
			t.Errorf("%s span %q: messaging.kafka.offset %q", sp.Service, sp.Name, sp.Attributes["messaging.kafka.offset"])
		}
	}
}

// traceView is what Jaeger holds of one device's publishes.
type traceView struct {
	spans     map[string]jaeger.Span // by span id, every trace
	children  map[string][]jaeger.Span
	publishes []jaeger.Span // the component IQ spans of the device
	wakes     []jaeger.Span // the coalescer's wake spans of the device
}

// readTraces reads every trace with a span of service since from, keeping the device's.
func readTraces(cl *jaeger.Client, service string, from time.Time, deviceID string) (*traceView, error) {
	traces, err := cl.FindTraces(context.Background(), service, from.Add(-time.Minute), time.Now().Add(time.Minute), 1000)
	if err != nil {
		return nil, err
	}
	v := &traceView{spans: map[string]jaeger.Span{}, children: map[string][]jaeger.Span{}}
	for _, spans := range traces {
		for _, sp := range spans {
			v.spans[sp.SpanID] = sp
			if sp.ParentSpanID != "" {
				v.children[sp.ParentSpanID] = append(v.children[sp.ParentSpanID], sp)
			}
			switch {
			case sp.Service == "ingest" && sp.Name == "xep0357 publish" && sp.Attributes["wakepush.device_id"] == deviceID:
				v.publishes = append(v.publishes, sp)
			case sp.Service == "coalescer" && sp.Name == "process push.events" && sp.Attributes["messaging.kafka.message.key"] == deviceID:
				v.wakes = append(v.wakes, sp)
			}
		}
	}
	return v, nil
}

// descendants returns the spans under sp that match.
func (v *traceView) descendants(sp jaeger.Span, match func(jaeger.Span) bool) []jaeger.Span {
	var out []jaeger.Span
	for _, c := range v.children[sp.SpanID] {
		if match(c) {
			out = append(out, c)
		}
		out = append(out, v.descendants(c, match)...)
	}
	return out
}

type wakeChain struct {
	produce, process, client, delivery *jaeger.Span
}

// chain follows a wake span: its push.wakes produce, the sender's process span under that, and
// the APNs client span and the delivery produce under the process span.
func (v *traceView) chain(w jaeger.Span) wakeChain {
	var c wakeChain
	one := func(parent jaeger.Span, match func(jaeger.Span) bool) *jaeger.Span {
		for _, s := range v.children[parent.SpanID] {
			if match(s) {
				return &s
			}
		}
		return nil
	}
	if c.produce = one(w, func(s jaeger.Span) bool { return s.Name == "send push.wakes" }); c.produce == nil {
		return c
	}
	if c.process = one(*c.produce, func(s jaeger.Span) bool { return s.Name == "process push.wakes" }); c.process == nil {
		return c
	}
	c.client = one(*c.process, func(s jaeger.Span) bool { return s.Kind == "CLIENT" })
	c.delivery = one(*c.process, func(s jaeger.Span) bool { return s.Name == "send push.deliveries" })
	return c
}

// complete reports whether n wakes and their whole chains are there.
func (v *traceView) complete(n int) bool {
	if len(v.wakes) != n {
		return false
	}
	for _, w := range v.wakes {
		c := v.chain(w)
		if c.client == nil || c.delivery == nil {
			return false
		}
	}
	return true
}

// dump lists the spans of the device's traces for a failure message.
func (v *traceView) dump() string {
	traces := map[string]bool{}
	for _, s := range append(slices.Clone(v.publishes), v.wakes...) {
		traces[s.TraceID] = true
	}
	var b strings.Builder
	for id, s := range v.spans {
		if traces[s.TraceID] {
			fmt.Fprintf(&b, "  trace %s span %s parent %s %s/%s %s links %d\n", s.TraceID, id, s.ParentSpanID, s.Service, s.Name, s.Kind, len(s.Links))
		}
	}
	return b.String()
}
