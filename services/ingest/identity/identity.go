// Package identity derives wakepush's device ids, registration ids, nodes and node secrets
// (DESIGN §3) without any lookup:
//
//   - device_id = lowercase hex of the first 16 bytes of
//     HMAC-SHA256(deviceKey, app + "\x00" + platform + "\x00" + token). The same token always yields
//     the same id, whichever convention registered it, so several accounts on one phone are one
//     device. The device key must never change: changing it changes every device id.
//   - registration_id = 32 lowercase hex characters naming one registration of a device: random
//     for an HTTP API registration (NewRegistrationID), a keyed hash of (account, device) for an
//     ad-hoc account (AccountRegistrationID) and of (environment, device) for a token node
//     (TokenNodeRegistrationID). Knowing a token therefore never yields another party's node.
//   - node = "v2.<kid>.<device_id>.<registration_id>.<app>": ingest finds the device, the
//     registration and the key in the node itself. The app may contain dots; the other parts
//     never do. No token appears in a node. "v1.<kid>.<device_id>.<app>" nodes (one per device,
//     handed out before registration ids existed) still verify; they name the device's v1
//     registration (empty registration id).
//   - secret = the first 32 characters of base64url (no padding) of HMAC-SHA256(nodeKey[kid], node),
//     compared in constant time. Node keys rotate: the first key is used for new registrations,
//     every configured key verifies, so old nodes keep working until their key is removed.
package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/wakepush/wakepush/services/internal/config"
)

// MinKeyLen is the minimum length of every key in bytes (the HMAC-SHA256 block of security).
const MinKeyLen = 32

// Node scheme versions, the node's first dot-separated part.
const (
	// VersionV1 nodes name a device ("v1.<kid>.<device_id>.<app>"); they are no longer handed out.
	VersionV1 = "v1"
	// VersionV2 nodes name one registration ("v2.<kid>.<device_id>.<registration_id>.<app>").
	VersionV2 = "v2"
)

// RegistrationIDLen is the length of a registration id in hex characters.
const RegistrationIDLen = 32

// SecretLen is the length of a node secret in characters (192 bits of the HMAC).
const SecretLen = 32

// DeviceIDLen is the length of a device id in hex characters.
const DeviceIDLen = 32

// maxKidLen bounds key ids so that nodes stay short.
const maxKidLen = 16

// Errors returned by Verify. ErrMalformedNode means the node is not of this scheme at all
// (another convention or garbage); ErrUnknownKey and ErrBadSecret mean it is ours but the caller
// is not authorized.
var (
	ErrMalformedNode = errors.New("identity: node is not a wakepush v1 node")
	ErrUnknownKey    = errors.New("identity: node key id is not configured")
	ErrBadSecret     = errors.New("identity: wrong node secret")
)

// NodeKey is one node-signing key.
type NodeKey struct {
	ID  string
	Key []byte
}

// Keys is the configured key material. Build it with New or FromEnv.
type Keys struct {
	device  []byte
	regIDs  []byte // derived from device: the key of derived registration ids
	current NodeKey
	byID    map[string][]byte
	// macs holds, per key id, HMACs already keyed with that key (Reset returns one to its
	// keyed state), so that verifying a secret does not set up an HMAC each time.
	macs map[string]*sync.Pool
}

// nodeMAC is a keyed HMAC with room for what verifying computes.
type nodeMAC struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
	enc [44]byte // base64 of sum
}

// New validates the keys; nodeKeys[0] is the current key.
func New(deviceKey []byte, nodeKeys []NodeKey) (*Keys, error) {
	var errs []error
	if len(deviceKey) < MinKeyLen {
		errs = append(errs, fmt.Errorf("device id key is %d bytes, need at least %d", len(deviceKey), MinKeyLen))
	}
	if len(nodeKeys) == 0 {
		errs = append(errs, errors.New("at least one node key is required"))
	}
	k := &Keys{device: append([]byte(nil), deviceKey...), byID: make(map[string][]byte, len(nodeKeys)),
		macs: make(map[string]*sync.Pool, len(nodeKeys))}
	// A subkey, so that no registration-id input can ever collide with a device-id input.
	k.regIDs = hmacSum(k.device, []byte("wakepush registration id key v1"))
	for i, nk := range nodeKeys {
		if err := validKid(nk.ID); err != nil {
			errs = append(errs, fmt.Errorf("node key #%d: %w", i+1, err))
			continue
		}
		if len(nk.Key) < MinKeyLen {
			errs = append(errs, fmt.Errorf("node key %q is %d bytes, need at least %d", nk.ID, len(nk.Key), MinKeyLen))
			continue
		}
		if _, dup := k.byID[nk.ID]; dup {
			errs = append(errs, fmt.Errorf("node key id %q is listed twice", nk.ID))
			continue
		}
		key := append([]byte(nil), nk.Key...)
		k.byID[nk.ID] = key
		k.macs[nk.ID] = &sync.Pool{New: func() any { return &nodeMAC{h: hmac.New(sha256.New, key)} }}
		if i == 0 {
			k.current = NodeKey{ID: nk.ID, Key: k.byID[nk.ID]}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}

// FromEnv parses the environment formats: deviceKey is base64 (standard or URL alphabet, padding
// optional); nodeKeys is "kid:base64key[,kid:base64key…]", the first being current. deviceVar and
// nodeVar name the variables in errors.
func FromEnv(deviceVar, deviceKey, nodeVar, nodeKeys string) (*Keys, error) {
	var errs []error
	dk, err := decodeKey(deviceKey)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", deviceVar, err))
	} else if len(dk) < MinKeyLen {
		errs = append(errs, fmt.Errorf("%s: key is %d bytes, need at least %d (e.g. `openssl rand -base64 32`)", deviceVar, len(dk), MinKeyLen))
	}
	var nks []NodeKey
	if strings.TrimSpace(nodeKeys) == "" {
		errs = append(errs, fmt.Errorf("%s: at least one kid:base64key is required", nodeVar))
	}
	for _, item := range config.SplitList(nodeKeys) {
		kid, b64, ok := strings.Cut(item, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: entry %q is not kid:base64key", nodeVar, redact(item)))
			continue
		}
		key, err := decodeKey(b64)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: key %q: %w", nodeVar, kid, err))
		case validKid(kid) != nil:
			errs = append(errs, fmt.Errorf("%s: %w", nodeVar, validKid(kid)))
		case len(key) < MinKeyLen:
			errs = append(errs, fmt.Errorf("%s: node key %q is %d bytes, need at least %d", nodeVar, kid, len(key), MinKeyLen))
		default:
			nks = append(nks, NodeKey{ID: kid, Key: key})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	k, err := New(dk, nks)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", deviceVar, nodeVar, err)
	}
	return k, nil
}

// redact keeps only a recognisable prefix of a malformed entry, which may contain key material.
func redact(s string) string {
	if len(s) > 4 {
		return s[:4] + "…"
	}
	return s
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty key")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

func validKid(kid string) error {
	if kid == "" || len(kid) > maxKidLen {
		return fmt.Errorf("key id %q: want 1 to %d characters", kid, maxKidLen)
	}
	for _, r := range kid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("key id %q: only letters, digits, '-' and '_' are allowed", kid)
		}
	}
	return nil
}

// CurrentKeyID is the id of the key that signs new nodes.
func (k *Keys) CurrentKeyID() string { return k.current.ID }

// DeviceID returns the device id of (app, platform, token). The token must already be normalized
// (NormalizeToken) so that every convention derives the same id.
func (k *Keys) DeviceID(app, platform, token string) string {
	m := hmac.New(sha256.New, k.device)
	m.Write([]byte(app))
	m.Write([]byte{0})
	m.Write([]byte(platform))
	m.Write([]byte{0})
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil)[:DeviceIDLen/2])
}

// Node is a parsed node. RegistrationID is empty for a v1 node.
type Node struct {
	KeyID          string
	DeviceID       string
	RegistrationID string
	App            string
}

// String formats the node: v2 with a registration id, v1 without.
func (n Node) String() string {
	if n.RegistrationID == "" {
		return VersionV1 + "." + n.KeyID + "." + n.DeviceID + "." + n.App
	}
	return VersionV2 + "." + n.KeyID + "." + n.DeviceID + "." + n.RegistrationID + "." + n.App
}

// ParseNode parses a node of this scheme (v1 or v2). It checks the format only, not the secret.
func ParseNode(node string) (Node, error) {
	version, rest, _ := strings.Cut(node, ".")
	var n Node
	switch version {
	case VersionV1:
		// kid.device.app (the app may contain dots)
		kid, r1, ok1 := strings.Cut(rest, ".")
		dev, app, ok2 := strings.Cut(r1, ".")
		if !ok1 || !ok2 {
			return Node{}, ErrMalformedNode
		}
		n = Node{KeyID: kid, DeviceID: dev, App: app}
	case VersionV2:
		// kid.device.registration.app
		kid, r1, ok1 := strings.Cut(rest, ".")
		dev, r2, ok2 := strings.Cut(r1, ".")
		reg, app, ok3 := strings.Cut(r2, ".")
		if !ok1 || !ok2 || !ok3 || !ValidRegistrationID(reg) {
			return Node{}, ErrMalformedNode
		}
		n = Node{KeyID: kid, DeviceID: dev, RegistrationID: reg, App: app}
	default:
		return Node{}, ErrMalformedNode
	}
	if validKid(n.KeyID) != nil || !ValidDeviceID(n.DeviceID) || n.App == "" || len(n.App) > 255 {
		return Node{}, ErrMalformedNode
	}
	return n, nil
}

// ValidDeviceID reports whether id has the form of a device id (32 lowercase hex characters).
func ValidDeviceID(id string) bool { return len(id) == DeviceIDLen && lowerHex(id) }

// ValidRegistrationID reports whether id has the form of a registration id (32 lowercase hex
// characters).
func ValidRegistrationID(id string) bool { return len(id) == RegistrationIDLen && lowerHex(id) }

// notLowerHex is 1 for every byte that is not a lowercase hex digit. A table instead of
// comparisons, which branch unpredictably on random hex digits (BenchmarkValidRegistrationID:
// 14.4 → 11.0 ns per id; checked twice per publish).
var notLowerHex = func() (t [256]byte) {
	for i := range t {
		t[i] = 1
	}
	for _, c := range "0123456789abcdef" {
		t[c] = 0
	}
	return t
}()

func lowerHex(s string) bool {
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= notLowerHex[s[i]]
	}
	return bad == 0
}

// Registration is what a client gets for one registration of a device.
type Registration struct {
	DeviceID       string
	RegistrationID string
	Node           string
	Secret         string
}

// NewRegistrationID returns a random registration id (128 bits from crypto/rand).
func NewRegistrationID() string {
	var b [RegistrationIDLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b[:])
}

// AccountRegistrationID is the registration id of an account's registration of a device (the
// p2/Conversations ad-hoc commands): the same account registering the same token gets the same
// registration back, another account a different one. account is the bare JID, lowercased.
func (k *Keys) AccountRegistrationID(deviceID, account string) string {
	return k.derivedRegistrationID("account", account, deviceID)
}

// TokenNodeRegistrationID is the registration id of the fpush/Monal token-node registration of a
// device in environment ("production" or "sandbox"). It is never part of a node handed to a
// client, so no client can unregister it.
func (k *Keys) TokenNodeRegistrationID(deviceID, environment string) string {
	return k.derivedRegistrationID("token-node", environment, deviceID)
}

func (k *Keys) derivedRegistrationID(kind, qualifier, deviceID string) string {
	m := hmac.New(sha256.New, k.regIDs)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(qualifier))
	m.Write([]byte{0})
	m.Write([]byte(deviceID))
	return hex.EncodeToString(m.Sum(nil)[:RegistrationIDLen/2])
}

// Register returns a new registration of the device of (app, platform, token): a random
// registration id, its node (signed with the current key) and secret. The token must be
// normalized. Every call returns a different registration.
func (k *Keys) Register(app, platform, token string) Registration {
	return k.RegistrationOf(k.DeviceID(app, platform, token), NewRegistrationID(), app)
}

// RegistrationOf returns the node (signed with the current key) and secret of the registration
// registrationID (which must be valid) of device deviceID.
func (k *Keys) RegistrationOf(deviceID, registrationID, app string) Registration {
	node := Node{KeyID: k.current.ID, DeviceID: deviceID, RegistrationID: registrationID, App: app}.String()
	return Registration{DeviceID: deviceID, RegistrationID: registrationID, Node: node, Secret: secret(k.current.Key, node)}
}

// Secret returns the secret of a node signed with key kid (ErrUnknownKey if kid is not
// configured).
func (k *Keys) Secret(node Node) (string, error) {
	key, ok := k.byID[node.KeyID]
	if !ok {
		return "", ErrUnknownKey
	}
	return secret(key, node.String()), nil
}

func hmacSum(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func secret(key []byte, node string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(node))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:SecretLen]
}

// Verify parses node and checks secret against it in constant time. It returns the parsed node,
// or ErrMalformedNode, ErrUnknownKey or ErrBadSecret.
func (k *Keys) Verify(node, sec string) (Node, error) {
	n, err := ParseNode(node)
	if err != nil {
		return Node{}, err
	}
	macs, ok := k.macs[n.KeyID]
	if !ok {
		return Node{}, ErrUnknownKey
	}
	// secret(key, node), compared in constant time, with a pooled keyed HMAC.
	m := macs.Get().(*nodeMAC)
	m.h.Reset()
	m.in = append(m.in[:0], node...)
	m.h.Write(m.in)
	m.h.Sum(m.sum[:0])
	base64.RawURLEncoding.Encode(m.enc[:], m.sum[:])
	good := subtle.ConstantTimeCompare(m.enc[:SecretLen], []byte(sec)) == 1
	if cap(m.in) <= 1024 {
		macs.Put(m)
	}
	if !good {
		return Node{}, ErrBadSecret
	}
	return n, nil
}

// Token validation errors.
var ErrBadToken = errors.New("identity: invalid provider token")

// NormalizeToken validates a provider token for platform ("apns" or "fcm") and returns its
// canonical form: APNs tokens are hex and compared case-insensitively (lowercased); FCM tokens are
// kept verbatim. Every registration convention normalizes before DeviceID.
func NormalizeToken(platform, token string) (string, error) {
	token = strings.TrimSpace(token)
	switch platform {
	case "apns":
		// Device tokens are 32 bytes today; Apple says their length may change, so accept 8–255.
		if len(token) < 16 || len(token) > 510 || len(token)%2 != 0 {
			return "", fmt.Errorf("%w: an APNs token is an even number of hex digits (usually 64)", ErrBadToken)
		}
		token = strings.ToLower(token)
		for i := 0; i < len(token); i++ {
			c := token[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", fmt.Errorf("%w: an APNs token is hex digits only", ErrBadToken)
			}
		}
		return token, nil
	case "fcm":
		if len(token) < 16 || len(token) > 4096 {
			return "", fmt.Errorf("%w: an FCM token is 16 to 4096 characters", ErrBadToken)
		}
		for i := 0; i < len(token); i++ {
			if c := token[i]; c <= ' ' || c >= 0x7f {
				return "", fmt.Errorf("%w: an FCM token is printable ASCII without spaces", ErrBadToken)
			}
		}
		return token, nil
	}
	return "", fmt.Errorf("%w: unknown platform %q", ErrBadToken, platform)
}
