package fcmmock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
)

const project = "proj-1"

type env struct {
	srv    *fcmmock.Server
	hc     *http.Client
	client *http.Client // with the OAuth2 token source
	clock  *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newEnv(t *testing.T, cfg fcmmock.Config) *env {
	t.Helper()
	clk := &clock{t: time.Now()}
	if cfg.Now == nil {
		cfg.Now = clk.now
	}
	srv, err := fcmmock.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig(), ForceAttemptHTTP2: true}}
	return &env{srv: srv, hc: hc, client: tokenClient(t, srv, hc, project), clock: clk}
}

// tokenClient is the client side as the sender does it: a service account JSON through
// golang.org/x/oauth2/jwt.
func tokenClient(t *testing.T, srv *fcmmock.Server, hc *http.Client, proj string) *http.Client {
	t.Helper()
	b, err := srv.NewServiceAccount(proj)
	if err != nil {
		t.Fatal(err)
	}
	var sa fcmmock.ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		t.Fatal(err)
	}
	if sa.TokenURI != srv.TokenURL() || sa.Type != "service_account" {
		t.Fatalf("service account %+v", sa)
	}
	conf := &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Scopes: []string{fcmmock.Scope}, TokenURL: sa.TokenURI}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	return conf.Client(ctx)
}

func (e *env) send(t *testing.T, c *http.Client, proj, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := c.Post(e.srv.SendURL(proj), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func wake(token string) string {
	return `{"message":{"token":"` + token + `","data":{"wake_id":"w1"},"android":{"priority":"high","ttl":"600s","collapse_key":"wp-x"}}}`
}

func TestAcceptsAndLogs(t *testing.T) {
	e := newEnv(t, fcmmock.Config{})
	status, _, body := e.send(t, e.client, project, wake("tok-a"))
	if status != 200 || !strings.Contains(string(body), `"name":"projects/proj-1/messages/`) {
		t.Fatalf("%d %s", status, body)
	}
	e.send(t, e.client, project, wake("tok-b"))
	e.send(t, e.client, project, wake("tok-a"))
	got := e.srv.MessagesFor("tok-a")
	if len(got) != 2 || e.srv.Accepted() != 3 || len(e.srv.Messages()) != 3 {
		t.Fatalf("tok-a %d, accepted %d", len(got), e.srv.Accepted())
	}
	m := got[0]
	if m.Priority != "high" || m.TTL != "600s" || m.CollapseKey != "wp-x" || m.Data["wake_id"] != "w1" || m.Notification || m.Project != project {
		t.Fatalf("message %+v", m)
	}
	if e.srv.TokensIssued() != 1 {
		t.Fatalf("tokens issued %d, want 1 (reused)", e.srv.TokensIssued())
	}
	// validate_only is not recorded
	status, _, _ = e.send(t, e.client, project, `{"validate_only":true,"message":{"token":"tok-c"}}`)
	if status != 200 || len(e.srv.MessagesFor("tok-c")) != 0 {
		t.Fatalf("validate_only: %d", status)
	}
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, fcmmock.Config{})
	e.srv.Unregister("gone")
	e.srv.SetSenderMismatch("other-sender")
	e.srv.SetInvalid("bad")
	e.srv.SetThirdPartyAuthError("apns-broken")
	cases := []struct {
		name, body  string
		faults      fcmmock.Faults
		status      int
		rpc, code   string
		retryAfter  string
		noBearer    bool
		otherProj   bool
		beforeCheck func()
	}{
		{name: "unregistered", body: wake("gone"), status: 404, rpc: "NOT_FOUND", code: "UNREGISTERED"},
		{name: "sender id mismatch", body: wake("other-sender"), status: 403, rpc: "PERMISSION_DENIED", code: "SENDER_ID_MISMATCH"},
		{name: "invalid token state", body: wake("bad"), status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "invalid token chars", body: wake("a b"), status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "bad priority", body: `{"message":{"token":"t","android":{"priority":"urgent"}}}`, status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "bad ttl", body: `{"message":{"token":"t","android":{"ttl":"10m"}}}`, status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "non-string data", body: `{"message":{"token":"t","data":{"n":1}}}`, status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "too big", body: `{"message":{"token":"t","data":{"x":"` + strings.Repeat("a", 4100) + `"}}}`, status: 400, rpc: "INVALID_ARGUMENT", code: "INVALID_ARGUMENT"},
		{name: "third party auth", body: wake("apns-broken"), status: 401, rpc: "UNAUTHENTICATED", code: "THIRD_PARTY_AUTH_ERROR"},
		{name: "500", body: wake("t"), faults: fcmmock.Faults{Rate500: 1}, status: 500, rpc: "INTERNAL", code: "INTERNAL"},
		{name: "503", body: wake("t"), faults: fcmmock.Faults{Rate503: 1, RetryAfter: 3}, status: 503, rpc: "UNAVAILABLE", code: "UNAVAILABLE", retryAfter: "3"},
		{name: "429", body: wake("t"), faults: fcmmock.Faults{Rate429: 1, RetryAfter: 7}, status: 429, rpc: "RESOURCE_EXHAUSTED", code: "QUOTA_EXCEEDED", retryAfter: "7"},
		{name: "no bearer", body: wake("t"), noBearer: true, status: 401, rpc: "UNAUTHENTICATED"},
		{name: "other project", body: wake("t"), otherProj: true, status: 403, rpc: "PERMISSION_DENIED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.srv.SetFaults(c.faults)
			cl, proj := e.client, project
			if c.noBearer {
				cl = e.hc
			}
			if c.otherProj {
				proj = "someone-else"
			}
			status, h, body := e.send(t, cl, proj, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			var eb fcmmock.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if eb.Error.Code != c.status || eb.Error.Status != c.rpc || eb.Error.Message == "" {
				t.Fatalf("error %+v", eb.Error)
			}
			code := ""
			if len(eb.Error.Details) == 1 && eb.Error.Details[0].Type == fcmmock.FcmErrorType {
				code = eb.Error.Details[0].ErrorCode
			}
			if code != c.code {
				t.Fatalf("errorCode %q, want %q (%s)", code, c.code, body)
			}
			if h.Get("Retry-After") != c.retryAfter {
				t.Fatalf("Retry-After %q, want %q", h.Get("Retry-After"), c.retryAfter)
			}
		})
	}
	if e.srv.Accepted() != 0 {
		t.Fatalf("accepted %d", e.srv.Accepted())
	}
}

func TestPerDeviceLimit(t *testing.T) {
	e := newEnv(t, fcmmock.Config{Faults: fcmmock.Faults{PerDeviceLimit: 2, PerDeviceWindow: time.Minute}})
	for i, want := range []int{200, 200, 429} {
		if st, _, b := e.send(t, e.client, project, wake("busy")); st != want {
			t.Fatalf("#%d: %d %s", i, st, b)
		}
	}
	if st, _, _ := e.send(t, e.client, project, wake("calm")); st != 200 {
		t.Fatalf("other device: %d", st)
	}
	e.clock.add(time.Minute)
	if st, _, _ := e.send(t, e.client, project, wake("busy")); st != 200 {
		t.Fatalf("after the window: %d", st)
	}
}

func TestTokenEndpoint(t *testing.T) {
	e := newEnv(t, fcmmock.Config{TokenLifetime: 10 * time.Minute})
	if st, _, _ := e.send(t, e.client, project, wake("t")); st != 200 {
		t.Fatal(st)
	}
	// A forged grant: unknown key.
	resp, err := e.hc.PostForm(e.srv.TokenURL(), map[string][]string{"grant_type": {fcmmock.GrantType}, "assertion": {"a.b.c"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !bytes.Contains(b, []byte("invalid_grant")) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// The access token expires on the mock's clock; the oauth2 client still believes it valid
	// (its own clock), so it gets 401.
	e.clock.add(11 * time.Minute)
	if st, _, _ := e.send(t, e.client, project, wake("t")); st != 401 {
		t.Fatalf("expired token: %d", st)
	}
	// Revoked accounts cannot get tokens.
	e.srv.RevokeServiceAccounts()
	c2 := tokenClient(t, e.srv, e.hc, project) // a new account works
	if st, _, _ := e.send(t, c2, project, wake("t")); st != 200 {
		t.Fatalf("new account: %d", st)
	}
}

func TestControlAPI(t *testing.T) {
	e := newEnv(t, fcmmock.Config{})
	post := func(path, body string) int {
		resp, err := e.hc.Post(e.srv.URL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("/control/unregister", `{"token":"x"}`); st != 204 {
		t.Fatal(st)
	}
	if st, _, _ := e.send(t, e.client, project, wake("x")); st != 404 {
		t.Fatalf("unregistered via control: %d", st)
	}
	post("/control/reregister", `{"token":"x"}`)
	if st, _, _ := e.send(t, e.client, project, wake("x")); st != 200 {
		t.Fatalf("reregistered: %d", st)
	}
	if st := post("/control/faults", `{"rate_503":1,"retry_after":2}`); st != 200 {
		t.Fatal(st)
	}
	if st, h, _ := e.send(t, e.client, project, wake("x")); st != 503 || h.Get("Retry-After") != "2" {
		t.Fatalf("faults via control: %d", st)
	}
	post("/control/reset", "")
	resp, err := e.hc.Get(e.srv.URL() + "/control/messages?token=x")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []fcmmock.Message
	_ = json.NewDecoder(resp.Body).Decode(&msgs)
	resp.Body.Close()
	if len(msgs) != 0 || e.srv.Faults().Rate503 != 0 {
		t.Fatalf("after reset: %d messages, faults %+v", len(msgs), e.srv.Faults())
	}
	e.send(t, e.client, project, wake("x"))
	resp, _ = e.hc.Get(e.srv.URL() + "/metrics")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte(`fcmmock_requests_total{code="",status="200"}`)) || !bytes.Contains(b, []byte(`fcmmock_faults_injected_total{kind="503"} 1`)) {
		t.Fatalf("metrics:\n%s", b)
	}
}
