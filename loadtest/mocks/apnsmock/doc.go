// Package apnsmock is a faithful, fast mock of Apple's APNs provider API for
// tests and load tests of the wakepush sender (facts it honours:
// /work/shared/domain/apns-fcm.md, i.e. docs/domain in the monorepo).
//
// New generates a CA and an ECDSA P-256 server certificate (127.0.0.1, ::1,
// localhost and Config.Hosts), binds Config.Addr and serves right away (there
// is no Start). Clients trust CertPool or CACertPEM and use URL as the APNs
// host, e.g. with sideshow/apns2:
//
//	srv, _ := apnsmock.New(apnsmock.Config{Addr: "127.0.0.1:0"})
//	defer srv.Close()
//	key, _, _ := apnsmock.NewSigningKey()
//	srv.AddKey("TEAMID0001", "KEYID00001", &key.PublicKey)
//	srv.AddTopic("im.example.chat")
//	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: "KEYID00001", TeamID: "TEAMID0001"})
//	c.Host = srv.URL()
//	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: srv.CertPool()}
//
// # Certificate authentication
//
// The server requests a TLS client certificate but does not require one, so
// token clients are unaffected. A connection that presents one is
// authenticated by it; the authorization header on such a connection is
// ignored (Apple: "When the provider certificate is used to establish a
// connection, this request header is ignored"). Trust a CA for client
// certificates with Config.ClientCAs or AddClientCA and issue Apple-style
// push certificates with CA.IssueClientCert (subject UID and CN "Apple Push
// Services: <bundle id>", OU = team id, Apple's development/production
// extensions 1.2.840.113635.100.6.3.1/.2; ClientCert.PEM is the
// certificate+key file apns2's certificate.FromPemFile reads):
//
//	srv.AddClientCA(srv.CA().Cert)
//	cc, _ := srv.CA().IssueClientCert(apnsmock.ClientCertOptions{Topic: "im.example.chat"})
//	c := apns2.NewClient(cc.TLS) // then Host and RootCAs as above
//
// The certificate must chain to a trusted client CA, be valid now (Config.Now)
// and allow client auth, else 403 BadCertificate; a certificate marked for
// the other environment only (Config.Environment "production" or "sandbox")
// gets 403 BadCertificateEnvironment. It is good for its topic (subject UID,
// else the CN after "…: ") and, for a bundle id, that bundle's push-type
// variants (.voip, .complication, …) like Apple's universal certificate; any
// other topic gets 400 TopicDisallowed (topics registered with AddTopic do
// not matter for certificate connections), and a missing apns-topic defaults
// to the certificate's. The verdict is cached per connection. Pushes record
// Auth "certificate" and the certificate's OU as TeamID.
//
// # Protocol
//
// HTTP/2 over TLS 1.2+ with ALPN h2 and the configured
// SETTINGS_MAX_CONCURRENT_STREAMS (set through net/http's HTTP2Config: the
// x/net/http2.Server knob is deprecated since Go 1.24). Only
// POST /3/device/{token} is APNs; HTTP/1.1 reaches only the control API and
// /metrics (an APNs request over HTTP/1.1 gets 505). Every answer carries an
// apns-id header: the request's, lowercased, or a new random UUID. Errors
// are {"reason":"..."}; 410 adds "timestamp" in milliseconds.
//
// # Validation order (pushy's MockApnsServer, extended)
//
//  1. apns-id not a canonical UUID            400 BadMessageId
//  2. method not POST                         405 MethodNotAllowed
//  3. an apns-* or authorization header twice 400 DuplicateHeaders;
//     then, on a connection with a client certificate, its verdict:
//     403 BadCertificate / BadCertificateEnvironment
//  4. no apns-topic (with a certificate: it names the topic) 400 MissingTopic
//  5. topic not registered (AddTopic), or not the certificate's
//     400 TopicDisallowed
//  6. apns-collapse-id > 64 bytes             400 BadCollapseId
//  7. apns-priority not 1, 5 or 10            400 BadPriority
//  8. apns-expiration not a UNIX time         400 BadExpirationDate
//  9. push type unknown or not matching the topic suffix (voip needs .voip,
//     pushtotalk .voip-ptt, complication .complication, fileprovider
//     .pushkit.fileprovider, location .location-query, liveactivity
//     .push-type.liveactivity; a suffixed topic needs its type)
//     400 InvalidPushType; an absent apns-push-type is inferred from the topic
//  10. background with priority 10 (also when the header is absent: APNs
//     defaults to 10)                        400 BadPriority
//  11. path not /3/device/...                 404 BadPath
//  12. empty token                            400 MissingDeviceToken
//  13. token not even-length hex ≤ 200 chars  400 BadDeviceToken
//  14. Unregister / ExpireToken               410 Unregistered / ExpiredToken + timestamp
//  15. SetBadToken                            400 BadDeviceToken
//  16. SetTokenTopic to another topic         400 DeviceTokenNotForTopic
//  17. (token connections only; certificate connections skip 17–20)
//     no "bearer" authorization              403 MissingProviderToken
//  18. JWT not ES256, bad signature, unknown kid, iss not the key's team,
//     no iat, or a second team on the TLS connection  403 InvalidProviderToken
//  19. iat older than 1 h                     403 ExpiredProviderToken
//  20. a second token change within 20 min on one connection (the first
//     token of a connection is not a change)  429 TooManyProviderTokenUpdates
//  21. empty body                             400 PayloadEmpty
//  22. body > 4096 bytes (5120 for voip)      413 PayloadTooLarge
//  23. body not a JSON object                 400 BadPayload (mock extension:
//     Apple documents no reason for malformed JSON)
//
// Then faults: per-device limit (429 TooManyRequests), a storm (Override:
// a share of pushes answered 429, 500 or 503, with Retry-After if set, until
// it is cleared; SetOverride or PUT/DELETE /control/override), Rate500,
// Rate503, RateStall, RateReset (RST_STREAM), RateDrop (TCP close),
// RateGoAway; see Config. Only pushes that pass everything are recorded (Pushes, PushesFor,
// OnPush); valid pushes a fault refused go to OnRefuse (the load test judges loss
// by a wake's first offer).
//
// # GOAWAY
//
// RateGoAway (and Server.GoAway or POST /control/goaway for every open
// connection's next response) closes a connection gracefully: the response
// carries "Connection: close", on which net/http's HTTP/2 server sends GOAWAY
// with NO_ERROR and the highest stream id it received, answers those streams,
// and closes the connection about a second later (its goAwayTimeout); streams
// the client opened after that id are not processed, so a client retries them
// on a new connection and nothing is accepted twice. The triggering push is
// accepted, or, with GoAwayReason (e.g. "Shutdown"), answered with that reason
// (503 for Shutdown), which is how APNs announces a closing connection.
// net/http offers no way to emit GOAWAY on one connection or to put debug
// data into the frame, so the JSON reason APNs may send in the GOAWAY's debug
// data is not sent there; the per-response trigger is the closest real
// behaviour (a per-connection graceful close). Server.Close sends GOAWAY on
// every connection (http.Server.Shutdown).
//
// JWTs are verified with github.com/golang-jwt/jwt/v5 once per distinct token
// (cached, invalidated when keys change); a connection re-using its current
// token costs one atomic load.
//
// Not modelled: the single stream APNs allows before the first valid JWT,
// debug data (a JSON reason) in GOAWAY frames, closing a connection after
// many errors or after TooManyProviderTokenUpdates, idle timeouts, topic
// ownership per team, the topics extension (1.2.840.113635.100.6.3.6) of
// Apple's universal certificates, and certificate revocation.
package apnsmock
