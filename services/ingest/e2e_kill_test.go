package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/internal/fakexmpp"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

// TestSIGKILLLosesNoAcceptedPublish streams HTTP events and component publishes into the ingest
// binary and SIGKILLs it mid-stream: every publish answered 202 or IQ result must be in Kafka
// (the answer is only written after Kafka's acks=all acknowledgement).
func TestSIGKILLLosesNoAcceptedPublish(t *testing.T) {
	kcfg := testenv.Kafka(t)
	fx, err := fakexmpp.Listen("component-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer fx.Close()
	const tenantToken = "tenant-token-0123456789"
	p, httpAddr := startIngest(t, kcfg, nil,
		"WAKEPUSH_COMPONENT_ADDR="+fx.Addr(), "WAKEPUSH_COMPONENT_JID=push.example.org", "WAKEPUSH_COMPONENT_SECRET=component-secret",
		"WAKEPUSH_INGEST_EVENT_TOKENS=loadtest:"+tenantToken)
	conn, err := fx.Accept(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keys := testenv.Keys(t)

	var (
		mu          sync.Mutex
		httpIDs     = map[string]bool{} // event ids answered 202
		iqDevices   = map[string]bool{} // device ids whose publish was answered result
		stop        atomic.Bool
		wg          sync.WaitGroup
		seq         atomic.Int64
		httpErrs    atomic.Int64
		iqNotResult atomic.Int64
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 4; w++ {
		wg.Go(func() { // HTTP events
			for !stop.Load() {
				reg := keys.Register(testenv.IOSApp, "apns", fmt.Sprintf("%064x", seq.Add(1)))
				body, _ := json.Marshal(map[string]any{"node": reg.Node, "secret": reg.Secret, "important": true})
				req, _ := http.NewRequest("POST", "http://"+httpAddr+"/v1/events", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tenantToken)
				resp, err := client.Do(req)
				if err != nil {
					httpErrs.Add(1)
					continue
				}
				var out struct {
					EventID string `json:"event_id"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					mu.Lock()
					httpIDs[out.EventID] = true
					mu.Unlock()
				}
			}
		})
		wg.Go(func() { // component publishes, 8 in flight per worker
			sem := make(chan struct{}, 8)
			var inner sync.WaitGroup
			for !stop.Load() {
				sem <- struct{}{}
				reg := keys.Register(testenv.IOSApp, "apns", fmt.Sprintf("%064x", seq.Add(1)))
				id := conn.NextID()
				ch, err := conn.Send(id, fakexmpp.Publish(id, "example.com", "push.example.org", reg.Node, reg.Secret))
				if err != nil {
					<-sem
					break
				}
				inner.Go(func() {
					defer func() { <-sem }()
					select {
					case a := <-ch:
						if a.Type == "result" {
							mu.Lock()
							iqDevices[reg.DeviceID] = true
							mu.Unlock()
						} else {
							iqNotResult.Add(1)
						}
					case <-conn.Done():
					}
				})
			}
			inner.Wait()
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait(10 * time.Second)
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(httpIDs) < 20 || len(iqDevices) < 20 {
		t.Fatalf("only %d HTTP and %d component publishes were accepted before the kill", len(httpIDs), len(iqDevices))
	}
	inKafka := map[string]bool{}
	for _, m := range testenv.ReadAll(t, kcfg, topics.Events) {
		var ev wakepushv1.PushEvent
		if err := proto.Unmarshal(m.Value, &ev); err != nil {
			t.Fatal(err)
		}
		inKafka[ev.Id] = true
		inKafka[ev.DeviceId] = true
	}
	var lost int
	for id := range httpIDs {
		if !inKafka[id] {
			lost++
		}
	}
	for dev := range iqDevices {
		if !inKafka[dev] {
			lost++
		}
	}
	t.Logf("accepted before SIGKILL: %d HTTP events, %d component publishes (%d other IQ answers); %d records in push.events",
		len(httpIDs), len(iqDevices), iqNotResult.Load(), len(inKafka)/2)
	if lost > 0 {
		t.Fatalf("%d accepted publishes are not in Kafka", lost)
	}
}
