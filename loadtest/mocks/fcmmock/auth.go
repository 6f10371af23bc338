package fcmmock

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scope is FCM's OAuth2 scope; an assertion must ask for it.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// GrantType is the JWT-bearer grant type (RFC 7523).
const GrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

type account struct {
	email, project, keyID string
	pub                   *rsa.PublicKey
}

type issued struct {
	acct    *account
	expires time.Time
}

// ServiceAccount is a Google service account key file as the Firebase console downloads it.
type ServiceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
}

// NewServiceAccount generates an RSA key, registers it for project and returns the service
// account JSON (token_uri pointing at this mock).
func (s *Server) NewServiceAccount(project string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	kid := randomHex(20)
	email := "firebase-adminsdk-" + kid[:5] + "@" + project + ".iam.gserviceaccount.com"
	s.accounts.Store(kid, &account{email: email, project: project, keyID: kid, pub: &key.PublicKey})
	return json.MarshalIndent(ServiceAccount{
		Type: "service_account", ProjectID: project, PrivateKeyID: kid,
		PrivateKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail: email, ClientID: "1" + randomHex(10)[:19],
		AuthURI: "https://accounts.google.com/o/oauth2/auth", TokenURI: s.TokenURL(),
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
	}, "", "  ")
}

// WriteServiceAccount writes NewServiceAccount(project) to path (mode 0600).
func (s *Server) WriteServiceAccount(path, project string) error {
	b, err := s.NewServiceAccount(project)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// RevokeServiceAccounts forgets every service account and access token: token requests then
// fail with invalid_grant and sends with 401 UNAUTHENTICATED.
func (s *Server) RevokeServiceAccounts() {
	s.accounts.Clear()
	s.tokens.Clear()
}

// ExpireAccessTokens makes every issued access token invalid (sends get 401 until the client
// fetches a new one).
func (s *Server) ExpireAccessTokens() { s.tokens.Clear() }

// TokensIssued counts access tokens issued.
func (s *Server) TokensIssued() uint64 { return s.m.tokensIssued.Load() }

// serveToken is Google's OAuth2 token endpoint for the JWT-bearer grant.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", "bad form")
		return
	}
	if r.PostForm.Get("grant_type") != GrantType {
		oauthError(w, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	var acct *account
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		v, ok := s.accounts.Load(kid)
		if !ok {
			return nil, jwt.ErrTokenUnverifiable
		}
		acct = v.(*account)
		return acct.pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(s.now), jwt.WithLeeway(time.Minute),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithAudience(s.TokenURL()))
	if err != nil || acct == nil {
		oauthError(w, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	iss, _ := claims.GetIssuer()
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	scope, _ := claims["scope"].(string)
	switch {
	case iss != acct.email:
		oauthError(w, "invalid_grant", "Invalid JWT: iss is not the key's service account")
		return
	case iat == nil || exp.Sub(iat.Time) > time.Hour+time.Minute:
		oauthError(w, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
		return
	case !strings.Contains(" "+scope+" ", " "+Scope+" "):
		oauthError(w, "invalid_scope", "scope must include "+Scope)
		return
	}
	tok := "ya29.mock-" + randomHex(24)
	s.tokens.Store(tok, &issued{acct: acct, expires: s.now().Add(s.cfg.TokenLifetime)})
	s.m.tokensIssued.Add(1)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "expires_in": int(s.cfg.TokenLifetime / time.Second), "token_type": "Bearer",
	})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// bearer checks an Authorization header: the account of a valid access token.
func (s *Server) bearer(h string) *account {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil
	}
	v, ok := s.tokens.Load(tok)
	if !ok {
		return nil
	}
	is := v.(*issued)
	if !s.now().Before(is.expires) {
		return nil
	}
	return is.acct
}
