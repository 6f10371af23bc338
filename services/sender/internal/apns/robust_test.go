package apns

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// sendAll sends n wakes concurrently (one device each), resending a wake after
// ExpiredProviderToken (as the engine would), and counts answers by reason.
func (f *mockFixture) sendAll(t *testing.T, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			tok := newToken()
			for range 3 {
				res := f.pool.Send(context.Background(), f.target(tok), wake("w-"+tok[48:]))
				mu.Lock()
				counts[res.Action.String()+":"+res.Reason]++
				mu.Unlock()
				if res.Reason != apns2.ReasonExpiredProviderToken {
					return
				}
			}
		})
	}
	wg.Wait()
	return counts
}

func (f *mockFixture) bearer() (string, int64) {
	c := f.pool.clients[clientKey{testApp, wakepushv1.Environment_ENVIRONMENT_PRODUCTION}]
	c.tok.Lock()
	defer c.tok.Unlock()
	return c.tok.Bearer, c.tok.IssuedAt
}

// apns2 renews the shared JWT after 50 min; under 500 concurrent pushes on a live connection
// that is exactly one token change (one Generate under the token's lock), so APNs never sees a
// second change within 20 min (429 TooManyProviderTokenUpdates). apns2 reads time.Now for
// this, so the test ages the token instead of moving a clock.
func TestJWTRenewalUnderLoad(t *testing.T) {
	f := newMockFixture(t, apnsmock.Config{}, DefaultOptions)
	if got := f.sendAll(t, 200); got["accepted:"] != 200 {
		t.Fatalf("warm-up: %v", got)
	}
	first, _ := f.bearer()
	c := f.pool.clients[clientKey{testApp, wakepushv1.Environment_ENVIRONMENT_PRODUCTION}]
	c.tok.Lock()
	c.tok.IssuedAt -= int64((51 * time.Minute).Seconds())
	c.tok.Unlock()
	got := f.sendAll(t, 500)
	if got["accepted:"] != 500 || len(got) != 1 {
		t.Fatalf("after renewal: %v, want 500 accepted and nothing else", got)
	}
	second, iat := f.bearer()
	if second == first || time.Since(time.Unix(iat, 0)) > time.Minute {
		t.Fatalf("token not renewed (iat %v)", time.Unix(iat, 0))
	}
}

// APNs calls our JWT expired (its clock is 35 min ahead, our token is 30 min old: 65 min to
// APNs): every concurrent push gets 403 ExpiredProviderToken, the sender renews the shared
// token once (a token younger than 20 min is never renewed), the retries are accepted, and no
// push ever sees TooManyProviderTokenUpdates.
func TestExpiredProviderTokenRefreshUnderLoad(t *testing.T) {
	var skew atomic.Int64
	f := newMockFixture(t, apnsmock.Config{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }}, DefaultOptions)
	c := f.pool.clients[clientKey{testApp, wakepushv1.Environment_ENVIRONMENT_PRODUCTION}]
	old := time.Now().Add(-30 * time.Minute)
	jt := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": testTeam, "iat": old.Unix()})
	jt.Header["kid"] = testKey
	signed, err := jt.SignedString(f.key)
	if err != nil {
		t.Fatal(err)
	}
	c.tok.Lock()
	c.tok.IssuedAt, c.tok.Bearer = old.Unix(), signed
	c.tok.Unlock()
	if got := f.sendAll(t, 50); got["accepted:"] != 50 {
		t.Fatalf("with the 30-min-old token: %v", got)
	}
	skew.Store(int64(35 * time.Minute))
	got := f.sendAll(t, 500)
	if got["accepted:"] != 500 || got["retry:"+apns2.ReasonExpiredProviderToken] == 0 || got["retry:"+apns2.ReasonTooManyProviderTokenUpdates] != 0 || len(got) != 2 {
		t.Fatalf("answers %v: want 500 accepted after ExpiredProviderToken, no TooManyProviderTokenUpdates", got)
	}
	if b, iat := f.bearer(); b == signed || time.Since(time.Unix(iat, 0)) > time.Minute {
		t.Fatal("token not renewed")
	}
	t.Logf("answers: %v", got)
}

// Options.Connections opens that many HTTP/2 connections per client and spreads pushes over
// them, all on the one shared JWT.
func TestSeveralConnections(t *testing.T) {
	opts := DefaultOptions
	opts.Connections = 3
	f := newMockFixture(t, apnsmock.Config{}, opts)
	if got := f.sendAll(t, 60); got["accepted:"] != 60 {
		t.Fatalf("answers %v", got)
	}
	if n := f.mock.OpenConnections(); n != 3 {
		t.Fatalf("%d connections open, want 3", n)
	}
}
