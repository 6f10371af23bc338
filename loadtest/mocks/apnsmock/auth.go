package apnsmock

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxCachedTokens bounds the JWT verification cache; it is cleared when full.
const maxCachedTokens = 100_000

// identity is the outcome of verifying one bearer token (cached).
type identity struct {
	teamID string
	keyID  string
	iat    time.Time
	reason string // "" if the signature, kid and iss are valid
	keyGen uint64 // key-set generation the verification used
}

type authCache struct {
	m    sync.Map // bearer -> *identity
	size atomic.Int64
}

var jwtParser = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}), jwt.WithoutClaimsValidation())

var errUnknownKey = errors.New("unknown key id")

// verifyBearer checks an ES256 provider token against the registered keys,
// caching the result so that each distinct token is verified once.
func (s *Server) verifyBearer(bearer string) *identity {
	gen := s.keyGen.Load()
	if v, ok := s.auth.m.Load(bearer); ok {
		if id := v.(*identity); id.keyGen == gen {
			s.metrics.jwtCacheHit.Inc()
			return id
		}
	}
	id := &identity{keyGen: gen, reason: ReasonInvalidProviderToken}
	var key *keyEntry
	claims := jwt.MapClaims{}
	_, err := jwtParser.ParseWithClaims(bearer, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		v, ok := s.keys.Load(kid)
		if !ok {
			return nil, errUnknownKey
		}
		key = v.(*keyEntry)
		return key.pub, nil
	})
	if err == nil {
		iss, _ := claims["iss"].(string)
		iat, iatErr := claims.GetIssuedAt()
		if iss != "" && iss == key.teamID && iatErr == nil && iat != nil {
			id.teamID, id.keyID, id.iat, id.reason = key.teamID, key.keyID, iat.Time, ""
		}
	}
	if id.reason == "" {
		s.metrics.jwtVerified.Inc()
	} else {
		s.metrics.jwtRejected.Inc()
	}
	if s.auth.size.Add(1) > maxCachedTokens {
		s.auth.m.Clear()
		s.auth.size.Store(0)
	}
	s.auth.m.Store(bearer, id)
	return id
}

// connState is the per-TLS-connection provider-token state APNs keeps: the
// pinned team and the bearer token in use.
type connState struct {
	conn net.Conn
	cur  atomic.Pointer[connToken]

	goAway atomic.Bool                 // the next response carries GOAWAY (Server.GoAway)
	cert   atomic.Pointer[certVerdict] // the client certificate's verdict, cached

	mu         sync.Mutex
	team       string
	lastChange time.Time // when the bearer token was last replaced
}

type connToken struct {
	bearer string
	id     *identity
}

type connKey struct{}

func connFromContext(ctx context.Context) *connState {
	cs, _ := ctx.Value(connKey{}).(*connState)
	return cs
}

// authenticate checks the authorization header. The fast path (the same
// bearer as the connection's previous request) costs one atomic load and a
// string compare.
func (s *Server) authenticate(r *http.Request, now time.Time) (*identity, string) {
	a := first(r.Header["Authorization"])
	if len(a) < len("bearer ") || !strings.EqualFold(a[:len("bearer ")], "bearer ") {
		return nil, ReasonMissingProviderToken
	}
	bearer := strings.TrimSpace(a[len("bearer "):])
	if bearer == "" {
		return nil, ReasonMissingProviderToken
	}
	cs := connFromContext(r.Context())
	if cs == nil {
		cs = &connState{} // not served by our http.Server (e.g. httptest): no connection state
	}
	gen := s.keyGen.Load()
	if cur := cs.cur.Load(); cur != nil && cur.bearer == bearer && cur.id.keyGen == gen {
		if now.Sub(cur.id.iat) > providerTokenMaxAge {
			return nil, ReasonExpiredProviderToken
		}
		return cur.id, ""
	}

	id := s.verifyBearer(bearer)
	if id.reason != "" {
		return nil, id.reason
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// One team per connection: the first valid token pins it.
	if cs.team == "" {
		cs.team = id.teamID
	} else if cs.team != id.teamID {
		return nil, ReasonInvalidProviderToken
	}
	if now.Sub(id.iat) > providerTokenMaxAge {
		return nil, ReasonExpiredProviderToken
	}
	cur := cs.cur.Load()
	if cur != nil && cur.bearer != bearer {
		// A token change. APNs allows one per 20 minutes per connection.
		if !cs.lastChange.IsZero() && now.Sub(cs.lastChange) < providerTokenMinGap {
			return nil, ReasonTooManyProviderTokenUpdates
		}
		cs.lastChange = now
	}
	cs.cur.Store(&connToken{bearer: bearer, id: id})
	return id, ""
}

// connSet tracks open connections for metrics and DropConnections.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]*connState
}

func (c *connSet) add(conn net.Conn, cs *connState) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[net.Conn]*connState)
	}
	c.m[conn] = cs
	c.mu.Unlock()
}

func (c *connSet) remove(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[conn]; !ok {
		return false
	}
	delete(c.m, conn)
	return true
}

func (c *connSet) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// closeAll closes every connection except keep (may be nil).
func (c *connSet) closeAll(keep net.Conn) int {
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.m))
	for conn := range c.m {
		if conn != keep {
			conns = append(conns, conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
	return len(conns)
}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	cs := &connState{conn: c}
	s.conns.add(c, cs)
	s.connsOpened.Add(1)
	s.metrics.connsTotal.Inc()
	s.log.Debug("apns-mock connection opened", "remote", c.RemoteAddr().String())
	return context.WithValue(ctx, connKey{}, cs)
}

func (s *Server) connStateHook(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		if s.conns.remove(c) {
			s.log.Debug("apns-mock connection closed", "remote", c.RemoteAddr().String())
		}
	}
}
