package senderbench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMakeDevices(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a, b, c := MakeDevices(50, 1, now), MakeDevices(50, 1, now), MakeDevices(50, 2, now)
	tokens := map[string]bool{}
	for i := range a {
		d := a[i]
		if d.Token != b[i].Token || d.DeviceID != b[i].DeviceID || d.RegistrationID != b[i].RegistrationID {
			t.Fatalf("device %d differs between two calls with the same seed", i)
		}
		if d.Token == c[i].Token {
			t.Fatalf("device %d: the same token for another seed", i)
		}
		if len(d.Token) != 64 || len(d.DeviceID) != 32 || len(d.RegistrationID) != 32 || len(d.WakeID) != 36 {
			t.Fatalf("device %d: %+v", i, d)
		}
		tokens[d.Token] = true
	}
	if len(tokens) != len(a) {
		t.Fatalf("%d distinct tokens for %d devices", len(tokens), len(a))
	}
}

func TestDevicesFile(t *testing.T) {
	devs := MakeDevices(5, 3, time.Now())
	var buf bytes.Buffer
	if err := WriteDevices(&buf, devs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDevices(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(devs) {
		t.Fatalf("read %d devices, wrote %d", len(got), len(devs))
	}
	for i := range got {
		if got[i].Token != devs[i].Token || got[i].DeviceID != devs[i].DeviceID || got[i].WakeID != devs[i].WakeID {
			t.Errorf("device %d: read %+v, wrote %+v", i, got[i], devs[i])
		}
	}
	if _, err := ReadDevices(strings.NewReader("abcd dev\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a short line: err %v", err)
	}
}

func TestParseBareFlags(t *testing.T) {
	var stderr bytes.Buffer
	full := []string{"-url", "https://127.0.0.1:1", "-ca-file", "ca.pem", "-key-file", "k.p8", "-team-id", "T", "-key-id", "K",
		"-topic", "im.x", "-devices", "d.txt", "-concurrency", "8", "-conns", "2"}
	o, err := parseBareFlags(full, &stderr)
	if err != nil || o.concurrency != 8 || o.conns != 2 || o.timeout != 10*time.Second {
		t.Fatalf("%+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{full[2:], "missing -url"},
		{append(full[:14:14], "-concurrency", "0"), "at least 1"},
		{append(full[:16:16], "extra"), "unexpected arguments"},
	} {
		if _, err := parseBareFlags(tc.args, &stderr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.args, err, tc.want)
		}
	}
}
