package fcm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/sender/internal/fcm"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

const project = "proj-test"

func setup(t *testing.T, opts fcm.Options) (*fcmmock.Server, *fcm.Pool, *apps.App) {
	t.Helper()
	mock, err := fcmmock.New(fcmmock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mock.Close() })
	dir := t.TempDir()
	sa, ca := filepath.Join(dir, "sa.json"), filepath.Join(dir, "ca.pem")
	if err := mock.WriteServiceAccount(sa, project); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, mock.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	app := &apps.App{ID: "im.test.android", Platform: "fcm", FCM: &apps.FCM{ProjectID: project, CredentialsFile: sa, Endpoint: mock.URL(), CAFile: ca}}
	var chk config.Check
	fcm.Validate(app, &chk)
	if err := chk.Err(); err != nil {
		t.Fatal(err)
	}
	pool, err := fcm.New([]*apps.App{app}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return mock, pool, app
}

func target(app *apps.App, token string) provider.Target {
	return provider.Target{App: app, DeviceID: "dev-" + token, Token: token}
}

func TestSendDataOnlyHighPriority(t *testing.T) {
	mock, pool, app := setup(t, fcm.DefaultOptions)
	res := pool.Send(context.Background(), target(app, "tok-1"), &wakepushv1.Wake{Id: "wake-1"})
	if res.Action != provider.Accepted || res.StatusCode != 200 || res.MessageID == "" || res.Latency <= 0 {
		t.Fatalf("%+v", res)
	}
	res = pool.Send(context.Background(), target(app, "tok-1"), &wakepushv1.Wake{Id: "wake-2", Urgent: true})
	if res.Action != provider.Accepted {
		t.Fatalf("%+v", res)
	}
	msgs := mock.MessagesFor("tok-1")
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.Notification || m.Priority != "high" || m.TTL != "600s" || m.CollapseKey != fcm.CollapseKey("dev-tok-1") ||
		len(m.Data) != 1 || m.Data["wake_id"] != "wake-1" || m.Project != project {
		t.Fatalf("message %+v", m)
	}
	if u := msgs[1]; u.TTL != "30s" || u.Data["urgent"] != "1" {
		t.Fatalf("urgent message %+v", u)
	}
	if mock.TokensIssued() != 1 {
		t.Fatalf("tokens issued %d", mock.TokensIssued())
	}
}

func TestSendErrors(t *testing.T) {
	mock, pool, app := setup(t, fcm.DefaultOptions)
	mock.Unregister("gone")
	mock.SetSenderMismatch("mismatch")
	mock.SetInvalid("invalid")
	mock.SetThirdPartyAuthError("thirdparty")
	cases := []struct {
		token      string
		faults     fcmmock.Faults
		action     provider.Action
		status     int
		reason     string
		retryAfter time.Duration
		deviceRL   bool
	}{
		{token: "gone", action: provider.Permanent, status: 404, reason: "UNREGISTERED"},
		{token: "mismatch", action: provider.Permanent, status: 403, reason: "SENDER_ID_MISMATCH"},
		{token: "invalid", action: provider.Drop, status: 400, reason: "INVALID_ARGUMENT"},
		{token: "thirdparty", action: provider.Configuration, status: 401, reason: "THIRD_PARTY_AUTH_ERROR"},
		{token: "ok", faults: fcmmock.Faults{Rate500: 1}, action: provider.Retry, status: 500, reason: "INTERNAL"},
		{token: "ok", faults: fcmmock.Faults{Rate503: 1, RetryAfter: 3}, action: provider.Retry, status: 503, reason: "UNAVAILABLE", retryAfter: 3 * time.Second},
		{token: "ok", faults: fcmmock.Faults{Rate429: 1, RetryAfter: 9}, action: provider.Retry, status: 429, reason: "QUOTA_EXCEEDED", retryAfter: 9 * time.Second, deviceRL: true},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			mock.SetFaults(c.faults)
			before := time.Now()
			res := pool.Send(context.Background(), target(app, c.token), &wakepushv1.Wake{Id: "w"})
			if res.Action != c.action || res.StatusCode != c.status || res.Reason != c.reason ||
				res.RetryAfter != c.retryAfter || res.DeviceRateLimited != c.deviceRL || res.Err == nil {
				t.Fatalf("%+v", res)
			}
			if c.action == provider.Permanent && res.InvalidAt.Before(before) {
				t.Fatalf("InvalidAt %v", res.InvalidAt)
			}
		})
	}
	if mock.Accepted() != 0 {
		t.Fatal("accepted")
	}
}

func TestTokenRejectedAndRenewed(t *testing.T) {
	mock, pool, app := setup(t, fcm.DefaultOptions)
	if res := pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w1"}); res.Action != provider.Accepted {
		t.Fatalf("%+v", res)
	}
	// FCM forgets our access token: 401 UNAUTHENTICATED is configuration (the app pauses), and
	// the next send fetches a new token.
	mock.ExpireAccessTokens()
	res := pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w2"})
	if res.Action != provider.Configuration || res.StatusCode != 401 || res.Reason != "UNAUTHENTICATED" {
		t.Fatalf("%+v", res)
	}
	if res := pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w3"}); res.Action != provider.Accepted {
		t.Fatalf("after renewal: %+v", res)
	}
	// The service account is deleted: the token is refused, then the token endpoint refuses
	// the account.
	mock.RevokeServiceAccounts()
	if res := pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w4"}); res.Action != provider.Configuration {
		t.Fatalf("revoked: %+v", res)
	}
	res = pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w4"})
	if res.Action != provider.Configuration || res.Reason != fcm.ReasonOAuthRejected {
		t.Fatalf("revoked: %+v", res)
	}
}

func TestTimeout(t *testing.T) {
	opts := fcm.DefaultOptions
	opts.Timeout = 200 * time.Millisecond
	mock, pool, app := setup(t, opts)
	mock.SetFaults(fcmmock.Faults{Latency: func() time.Duration { return 5 * time.Second }})
	res := pool.Send(context.Background(), target(app, "t"), &wakepushv1.Wake{Id: "w"})
	if res.Action != provider.Retry || res.Reason != fcm.ReasonTimeout {
		t.Fatalf("%+v", res)
	}
}

func TestBuildJSON(t *testing.T) {
	b, err := json.Marshal(fcm.Build("tok", "dev", &wakepushv1.Wake{Id: "w"}, fcm.DefaultOptions))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"message":{"token":"tok","data":{"wake_id":"w"},"android":{"priority":"high","ttl":"600s","collapse_key":"` + fcm.CollapseKey("dev") + `"}}}`
	if string(b) != want {
		t.Fatalf("%s\nwant %s", b, want)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"type":"service_account","client_email":"a@b","private_key":"nope"}`), 0o600)
	var chk config.Check
	fcm.Validate(&apps.App{ID: "a", Platform: "fcm", FCM: &apps.FCM{ProjectID: "p", CredentialsFile: bad, Endpoint: "ftp://x", CAFile: filepath.Join(dir, "none.pem")}}, &chk)
	fcm.Validate(&apps.App{ID: "b", Platform: "fcm", FCM: &apps.FCM{ProjectID: "p"}}, &chk)
	err := chk.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"private_key is not PEM", "fcm.ca_file", "fcm.endpoint", `app "b": fcm.credentials_file is required`} {
		if !contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// BenchmarkSend measures accepted FCM sends per second through the sender's FCM path (JSON,
// cached OAuth2 token, HTTP/2 to the mock in the same process, classification).
func BenchmarkSend(b *testing.B) {
	mock, err := fcmmock.New(fcmmock.Config{MaxRecords: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mock.Close() })
	dir := b.TempDir()
	sa, ca := filepath.Join(dir, "sa.json"), filepath.Join(dir, "ca.pem")
	if err := mock.WriteServiceAccount(sa, project); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(ca, mock.CACertPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	app := &apps.App{ID: "bench", Platform: "fcm", FCM: &apps.FCM{ProjectID: project, CredentialsFile: sa, Endpoint: mock.URL(), CAFile: ca}}
	pool, err := fcm.New([]*apps.App{app}, fcm.DefaultOptions)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	var failed atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := pool.Send(context.Background(), target(app, "tok-bench"), &wakepushv1.Wake{Id: "w"}); res.Action != provider.Accepted {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d not accepted", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
