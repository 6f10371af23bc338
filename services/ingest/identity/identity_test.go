package identity_test

import (
	"bytes"
	"encoding/base64"
	"errors"
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
	if a != b {
		t.Fatalf("registering the same token twice differs: %+v vs %+v", a, b)
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
		if !strings.HasPrefix(r.Node, "v1.k1."+r.DeviceID+".") {
			t.Fatalf("node %q", r.Node)
		}
		n, err := k.Verify(r.Node, r.Secret)
		if err != nil {
			t.Fatalf("verify %q: %v", r.Node, err)
		}
		if n.App != app || n.DeviceID != r.DeviceID || n.KeyID != "k1" || n.String() != r.Node {
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
	if oldReg.Node == newReg.Node || !strings.HasPrefix(newReg.Node, "v1.2025.") {
		t.Fatalf("rotated registration did not use the current key: %q", newReg.Node)
	}

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
		{"other version", before, "v2" + oldReg.Node[2:], oldReg.Secret, identity.ErrMalformedNode},
		{"no app", before, "v1.2024." + oldReg.DeviceID + ".", oldReg.Secret, identity.ErrMalformedNode},
		{"uppercase device id", before, "v1.2024." + strings.ToUpper(oldReg.DeviceID) + ".app.example", oldReg.Secret, identity.ErrMalformedNode},
		{"short device id", before, "v1.2024.abc.app.example", oldReg.Secret, identity.ErrMalformedNode},
		{"bad kid", before, "v1.k/1." + oldReg.DeviceID + ".app", oldReg.Secret, identity.ErrMalformedNode},
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
