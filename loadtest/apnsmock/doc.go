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
//  3. an apns-* or authorization header twice 400 DuplicateHeaders
//  4. no apns-topic                           400 MissingTopic
//  5. topic not registered (AddTopic)         400 TopicDisallowed
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
//  17. no "bearer" authorization              403 MissingProviderToken
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
// Then faults: per-device limit (429 TooManyRequests), Rate500, Rate503,
// RateStall, RateReset (RST_STREAM), RateDrop (TCP close); see Config. Only
// pushes that pass everything are recorded (Pushes, PushesFor, OnPush).
//
// JWTs are verified with github.com/golang-jwt/jwt/v5 once per distinct token
// (cached, invalidated when keys change); a connection re-using its current
// token costs one atomic load.
//
// Not modelled: the single stream APNs allows before the first valid JWT,
// GOAWAY with a JSON reason, closing a connection after many errors or after
// TooManyProviderTokenUpdates, idle timeouts, topic ownership per team, and
// certificate (mTLS) authentication.
package apnsmock
