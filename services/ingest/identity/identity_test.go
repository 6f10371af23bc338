package identity_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/identity"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func mustKeys(t *testing.T, nodeKeys ...identity.NodeKey) *identity.Keys {
	t.Helper()
	k, err := identity.New(key('d'), nodeKeys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestSameTokenSameDevice(t *testing.T) {
	k := mustKeys(t, identity.NodeKey{ID: "k1", Key: key(1)})
	a := k.Register("im.monal.app", "apns", token)
	b := k.Register("im.monal.app", "apns", token)
	if a.DeviceID != b.DeviceID {
		t.Fatalf("registering the same token twice gives two devices: %+v vs %+v", a, b)
	}
	// Knowing the token is not enough to get another registration's node or secret.
	if a.RegistrationID == b.RegistrationID || a.Node == b.Node || a.Secret == b.Secret {
		t.Fatalf("registering the same token twice returned the same registration: %+v vs %+v", a, b)
	}
	if !identity.ValidRegistrationID(a.RegistrationID) {
		t.Fatalf("registration id %q is not 32 lowercase hex characters", a.RegistrationID)
	}
	if len(a.DeviceID) != identity.DeviceIDLen || !identity.ValidDeviceID(a.DeviceID) {
		t.Fatalf("device id %q is not 32 lowercase hex characters", a.DeviceID)
	}
	if len(a.Secret) != identity.SecretLen {
		t.Fatalf("secret %q has %d characters, want %d", a.Secret, len(a.Secret), identity.SecretLen)
	}
	if strings.Contains(a.Node, token) {
		t.Fatalf("node %q contains the token", a.Node)
	}
	// Another key set with the same device key gives the same device id: the device key, not the
	// node keys, defines identity.
	k2 := mustKeys(t, identity.NodeKey{ID: "other", Key: key(9)})
	if got := k2.DeviceID("im.monal.app", "apns", token); got != a.DeviceID {
		t.Fatalf("device id depends on node keys: %s vs %s", got, a.DeviceID)
	}
	// Every component of the identity matters, and the separators prevent ambiguity.
	distinct := map[string]bool{a.DeviceID: true}
	for _, c := range [][3]string{
		{"im.monal.app2", "apns", token},
		{"im.monal.app", "fcm", token},
		{"im.monal.app", "apns", token[:62]},
		{"im.monal.ap", "papns", token},
	} {
		id := k.DeviceID(c[0], c[1], c[2])
		if distinct[id] {
			t.Fatalf("%v collides", c)
		}
		distinct[id] = true
	}
}

func TestNodeRoundTrip(t *testing.T) {
	k := mustKeys(t, identity.NodeKey{ID: "k1", Key: key(1)})
	for _, app := range []string{"im.monal.app", "x", "eu.siacs.conversations.push.fcm"} {
		r := k.Register(app, "fcm", "fcm-token-0123456789:abc")
		if r.Node != "v2.k1."+r.DeviceID+"."+r.RegistrationID+"."+app {
			t.Fatalf("node %q", r.Node)
		}
		n, err := k.Verify(r.Node, r.Secret)
		if err != nil {
			t.Fatalf("verify %q: %v", r.Node, err)
		}
		if n.App != app || n.DeviceID != r.DeviceID || n.RegistrationID != r.RegistrationID || n.KeyID != "k1" || n.String() != r.Node {
			t.Fatalf("parsed %+v from %q", n, r.Node)
		}
		s, err := k.Secret(n)
		if err != nil || s != r.Secret {
			t.Fatalf("Secret(%v) = %q, %v; want %q", n, s, err, r.Secret)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	old := identity.NodeKey{ID: "2024", Key: key(1)}
	cur := identity.NodeKey{ID: "2025", Key: key(2)}
	before := mustKeys(t, old)
	rotated := mustKeys(t, cur, old) // new current key, the old one still verifies
	retired := mustKeys(t, cur)      // the old key removed

	oldReg := before.Register("app.example", "apns", token)
	newReg := rotated.Register("app.example", "apns", token)
	if oldReg.DeviceID != newReg.DeviceID {
		t.Fatal("rotation changed the device id")
	}
	if oldReg.Node == newReg.Node || !strings.HasPrefix(newReg.Node, "v2.2025.") {
		t.Fatalf("rotated registration did not use the current key: %q", newReg.Node)
	}
	// The same registration under the rotated key: same registration id, new node and secret.
	renewed := rotated.RegistrationOf(oldReg.DeviceID, oldReg.RegistrationID, "app.example")
	if renewed.RegistrationID != oldReg.RegistrationID || renewed.Node == oldReg.Node || !strings.HasPrefix(renewed.Node, "v2.2025.") {
		t.Fatalf("RegistrationOf under the rotated key: %+v", renewed)
	}
	// A v1 node (one per device, handed out before registration ids) still verifies.
	v1 := identity.Node{KeyID: "2024", DeviceID: oldReg.DeviceID, App: "app.example"}
	v1Secret, err := before.Secret(v1)
	if err != nil {
		t.Fatal(err)
	}
	v1Node := v1.String()
	if v1Node != "v1.2024."+oldReg.DeviceID+".app.example" {
		t.Fatalf("v1 node %q", v1Node)
	}
	// The v2 node with its registration id cut out: same key, other message, so not verified.
	v2Cut := "v2.2024." + oldReg.DeviceID + ".app.example"

	flip := []byte(oldReg.Secret)
	flip[0] ^= 1
	tests := []struct {
		name         string
		keys         *identity.Keys
		node, secret string
		want         error
	}{
		{"ok", before, oldReg.Node, oldReg.Secret, nil},
		{"rotated key still verifies", rotated, oldReg.Node, oldReg.Secret, nil},
		{"new key verifies", rotated, newReg.Node, newReg.Secret, nil},
		{"wrong secret", before, oldReg.Node, string(flip), identity.ErrBadSecret},
		{"empty secret", before, oldReg.Node, "", identity.ErrBadSecret},
		{"secret of another node", rotated, oldReg.Node, newReg.Secret, identity.ErrBadSecret},
		{"truncated secret", before, oldReg.Node, oldReg.Secret[:31], identity.ErrBadSecret},
		{"unknown kid", retired, oldReg.Node, oldReg.Secret, identity.ErrUnknownKey},
		{"tampered app", before, oldReg.Node + "x", oldReg.Secret, identity.ErrBadSecret},
		{"token as node (fpush)", before, token, "", identity.ErrMalformedNode},
		{"v1 node", rotated, v1Node, v1Secret, nil},
		{"v1 node with the secret of a v2 node", rotated, v1Node, oldReg.Secret, identity.ErrBadSecret},
		{"v2 node with the secret of the v1 node", rotated, oldReg.Node, v1Secret, identity.ErrBadSecret},
		{"v2 node without registration id", before, v2Cut, oldReg.Secret, identity.ErrMalformedNode},
		{"v1 node with a registration id", before, "v1" + oldReg.Node[2:], oldReg.Secret, identity.ErrBadSecret},
		{"another registration of the device", before, strings.Replace(oldReg.Node, oldReg.RegistrationID, newReg.RegistrationID, 1), oldReg.Secret, identity.ErrBadSecret},
		{"uppercase registration id", before, strings.Replace(oldReg.Node, oldReg.RegistrationID, strings.ToUpper(oldReg.RegistrationID), 1), oldReg.Secret, identity.ErrMalformedNode},
		{"other version", before, "v3" + oldReg.Node[2:], oldReg.Secret, identity.ErrMalformedNode},
		{"no app", before, "v2.2024." + oldReg.DeviceID + "." + oldReg.RegistrationID + ".", oldReg.Secret, identity.ErrMalformedNode},
		{"v1 without app", before, "v1.2024." + oldReg.DeviceID + ".", oldReg.Secret, identity.ErrMalformedNode},
		{"uppercase device id", before, strings.Replace(oldReg.Node, oldReg.DeviceID, strings.ToUpper(oldReg.DeviceID), 1), oldReg.Secret, identity.ErrMalformedNode},
		{"short device id", before, "v2.2024.abc." + oldReg.RegistrationID + ".app.example", oldReg.Secret, identity.ErrMalformedNode},
		{"bad kid", before, "v2.k/1." + oldReg.DeviceID + "." + oldReg.RegistrationID + ".app", oldReg.Secret, identity.ErrMalformedNode},
		{"empty", before, "", "", identity.ErrMalformedNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.keys.Verify(tt.node, tt.secret)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// Derived registration ids: stable per (account or environment, device), distinct otherwise,
// independent of the node keys (a rotation keeps them) and never equal across kinds.
func TestDerivedRegistrationIDs(t *testing.T) {
	k := mustKeys(t, identity.NodeKey{ID: "k1", Key: key(1)})
	rotated := mustKeys(t, identity.NodeKey{ID: "k2", Key: key(2)}, identity.NodeKey{ID: "k1", Key: key(1)})
	dev := k.DeviceID("im.monal.app", "apns", token)
	other := k.DeviceID("im.monal.app", "apns", token[:62]+"00")
	alice := k.AccountRegistrationID(dev, "alice@example.org")
	seen := map[string]string{}
	for name, id := range map[string]string{
		"alice":                 alice,
		"bob":                   k.AccountRegistrationID(dev, "bob@example.org"),
		"alice, other device":   k.AccountRegistrationID(other, "alice@example.org"),
		"token node production": k.TokenNodeRegistrationID(dev, "production"),
		"token node sandbox":    k.TokenNodeRegistrationID(dev, "sandbox"),
		"account named sandbox": k.AccountRegistrationID(dev, "sandbox"),
	} {
		if !identity.ValidRegistrationID(id) {
			t.Errorf("%s: %q is not a registration id", name, id)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share registration id %s", name, prev, id)
		}
		seen[id] = name
	}
	if again := k.AccountRegistrationID(dev, "alice@example.org"); again != alice {
		t.Errorf("the same account and device gave %s, then %s", alice, again)
	}
	if r := rotated.AccountRegistrationID(dev, "alice@example.org"); r != alice {
		t.Errorf("a node key rotation changed the registration id: %s vs %s", r, alice)
	}
	k3, err := identity.New(key('e'), []identity.NodeKey{{ID: "k1", Key: key(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if k3.AccountRegistrationID(dev, "alice@example.org") == alice {
		t.Error("the registration id does not depend on the device key")
	}
}

func TestFromEnv(t *testing.T) {
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	raw := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	tests := []struct {
		name, device, nodes string
		wantErr             string // substring; "" = ok
		wantKid             string
	}{
		{"ok", b64(key(1)), "a:" + b64(key(2)) + ", b:" + raw(key(3)), "", "a"},
		{"short device key", b64(key(1)[:16]), "a:" + b64(key(2)), "WAKEPUSH_DEVICE_ID_KEY: key is 16 bytes, need at least 32", ""},
		{"device key not base64", "!!!", "a:" + b64(key(2)), "WAKEPUSH_DEVICE_ID_KEY: not valid base64", ""},
		{"missing device key", "", "a:" + b64(key(2)), "WAKEPUSH_DEVICE_ID_KEY: empty key", ""},
		{"missing node keys", b64(key(1)), "", "WAKEPUSH_NODE_KEYS: at least one", ""},
		{"no colon", b64(key(1)), "abcdefgh", "is not kid:base64key", ""},
		{"short node key", b64(key(1)), "a:" + b64(key(2)[:31]), `node key "a" is 31 bytes`, ""},
		{"duplicate kid", b64(key(1)), "a:" + b64(key(2)) + ",a:" + b64(key(3)), "listed twice", ""},
		{"dot in kid", b64(key(1)), "a.b:" + b64(key(2)), "only letters, digits", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := identity.FromEnv("WAKEPUSH_DEVICE_ID_KEY", tt.device, "WAKEPUSH_NODE_KEYS", tt.nodes)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if k.CurrentKeyID() != tt.wantKid {
					t.Fatalf("current key %q, want %q", k.CurrentKeyID(), tt.wantKid)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), b64(key(2))) {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
}

func TestNormalizeToken(t *testing.T) {
	tests := []struct {
		platform, token, want string
		ok                    bool
	}{
		{"apns", strings.ToUpper(token), token, true},
		{"apns", " " + token + "\n", token, true},
		{"apns", token[:63], "", false},
		{"apns", "zz" + token[2:], "", false},
		{"apns", "abcd", "", false},
		{"fcm", "dGVzdA:APA91bH-x_y", "dGVzdA:APA91bH-x_y", true},
		{"fcm", "short", "", false},
		{"fcm", "has a space in the token", "", false},
		{"webpush", token, "", false},
	}
	for _, tt := range tests {
		got, err := identity.NormalizeToken(tt.platform, tt.token)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("NormalizeToken(%s, %q) = %q, %v", tt.platform, tt.token, got, err)
		}
		if err != nil && !errors.Is(err, identity.ErrBadToken) {
			t.Errorf("error %v is not ErrBadToken", err)
		}
	}
}

func TestValidIDs(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"ffffffffffffffffffffffffffffffff", true},
		{"0123456789abcdef0123456789abcdeF", false}, // uppercase
		{"0123456789abcdef0123456789abcdeg", false},
		{"g123456789abcdef0123456789abcdef", false},
		{"0123456789abcdef0123456789abcde", false},   // 31
		{"0123456789abcdef0123456789abcdef0", false}, // 33
		{"0123456789abcdef0123456789abcd\xff\xfe", false},
		{"0123456789abcdef0123456789abcd/:", false}, // the bytes around '0'-'9'
		{"0123456789abcdef0123456789abcd`a", false}, // the byte before 'a'
		{"", false},
	} {
		if got := identity.ValidDeviceID(tc.id); got != tc.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", tc.id, got, tc.want)
		}
		if got := identity.ValidRegistrationID(tc.id); got != tc.want {
			t.Errorf("ValidRegistrationID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

var sinkValid bool

// BenchmarkValidRegistrationID: random ids, as the publish path sees them.
func BenchmarkValidRegistrationID(b *testing.B) {
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		sinkValid = identity.ValidRegistrationID(ids[i%len(ids)])
	}
}
