package httpapi

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // the prefixes, comma-separated
		wantErr []string
	}{
		{in: "", want: ""},
		{in: " 10.0.0.0/8 ,192.0.2.7", want: "10.0.0.0/8,192.0.2.7/32"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"}, // host bits dropped, as net.ParseCIDR does
		{in: "2001:db8::/32, ::1", want: "2001:db8::/32,::1/128"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "10.0.0.0/33", wantErr: []string{`"10.0.0.0/33"`}},
		{in: "nope, 10.0.0.0/8, fe80::1%eth0", wantErr: []string{`"nope"`, `"fe80::1%eth0"`}},
		{in: "::ffff:0:0/90", wantErr: []string{"at least 96 bits"}},
	} {
		got, err := ParseTrustedProxies(tc.in)
		if len(tc.wantErr) > 0 {
			if err == nil {
				t.Errorf("ParseTrustedProxies(%q) accepted", tc.in)
				continue
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseTrustedProxies(%q) = %v, want it to name %s", tc.in, err, w)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTrustedProxies(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range got.nets {
			s = append(s, p.String())
		}
		if strings.Join(s, ",") != tc.want || got.Len() != len(s) {
			t.Errorf("ParseTrustedProxies(%q) = %v, want %s", tc.in, s, tc.want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		proxies *TrustedProxies
		remote  string
		xff     []string
		want    string // "" when RemoteAddr is not an address
	}{
		{"direct client", trusted, "203.0.113.5:4711", nil, "203.0.113.5"},
		{"untrusted peer spoofs a client", trusted, "203.0.113.5:4711", []string{"198.51.100.1"}, "203.0.113.5"},
		{"untrusted peer spoofs a proxy chain", trusted, "203.0.113.5:4711", []string{"198.51.100.1, 10.0.0.1"}, "203.0.113.5"},
		{"no trusted proxies: header ignored", nil, "10.0.0.2:80", []string{"198.51.100.1"}, "10.0.0.2"},
		{"one proxy", trusted, "10.0.0.2:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client prepends a fake address", trusted, "10.0.0.2:80", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"client prepends a trusted address", trusted, "10.0.0.2:80", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"two proxies", trusted, "10.0.0.2:80", []string{"198.51.100.1, 10.0.0.1"}, "198.51.100.1"},
		{"several header lines", trusted, "10.0.0.2:80", []string{"6.6.6.6", "198.51.100.1, 10.0.0.1"}, "198.51.100.1"},
		{"client is in the next header line to the left", trusted, "10.0.0.2:80", []string{"6.6.6.6, 198.51.100.1", "10.0.0.1"}, "198.51.100.1"},
		{"only trusted hops: the leftmost", trusted, "10.0.0.2:80", []string{"10.0.0.3, 10.0.0.1"}, "10.0.0.3"},
		{"trusted peer without header", trusted, "10.0.0.2:80", nil, "10.0.0.2"},
		{"garbage appended by a proxy: that proxy", trusted, "10.0.0.2:80", []string{"198.51.100.1, 10.0.0.1, unknown"}, "10.0.0.2"},
		{"garbage deeper: the proxy that wrote it", trusted, "10.0.0.2:80", []string{"198.51.100.1, bogus, 10.0.0.1"}, "10.0.0.1"},
		{"garbage left of the client is never read", trusted, "10.0.0.2:80", []string{"<script>, 198.51.100.1"}, "198.51.100.1"},
		{"empty element", trusted, "10.0.0.2:80", []string{"198.51.100.1,,10.0.0.1"}, "10.0.0.1"},
		{"empty header line", trusted, "10.0.0.2:80", []string{""}, "10.0.0.2"},
		{"spaces", trusted, "10.0.0.2:80", []string{"  198.51.100.1 ,\t10.0.0.1 "}, "198.51.100.1"},
		{"element with a port", trusted, "10.0.0.2:80", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"bracketed IPv6 with a port", trusted, "10.0.0.2:80", []string{"[2001:db8:1:2::3]:443"}, "2001:db8:1:2::3"},
		{"bracketed IPv6", trusted, "10.0.0.2:80", []string{"[2001:db8:1:2::3]"}, "2001:db8:1:2::3"},
		{"bracketed IPv4 is malformed", trusted, "10.0.0.2:80", []string{"[198.51.100.1]"}, "10.0.0.2"},
		{"IPv4-mapped trusted peer", trusted, "[::ffff:10.0.0.2]:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped client", trusted, "10.0.0.2:80", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped trusted hop", trusted, "10.0.0.2:80", []string{"198.51.100.1, ::ffff:10.0.0.1"}, "198.51.100.1"},
		{"IPv6 proxy", trusted, "[2001:db8:ffff::1]:80", []string{"2001:db8:1:2::3"}, "2001:db8:1:2::3"},
		{"single trusted address", trusted, "192.0.2.7:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"its neighbour is not trusted", trusted, "192.0.2.8:80", []string{"198.51.100.1"}, "192.0.2.8"},
		{"zone dropped", trusted, "[fe80::1%eth0]:80", nil, "fe80::1"},
		{"RemoteAddr without port", trusted, "203.0.113.5", nil, "203.0.113.5"},
		{"RemoteAddr not an address", trusted, "@", []string{"198.51.100.1"}, ""},
	} {
		got, ok := tc.proxies.clientAddr(tc.remote, tc.xff)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: %v, want no address", tc.name, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: clientAddr(%q, %q) = %v, %v; want %s", tc.name, tc.remote, tc.xff, got, ok, tc.want)
		}
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.5", "203.0.113.5"},
		{"2001:db8:1:2::3", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"}, // same /64: same bucket
		{"2001:db8:1:3::3", "2001:db8:1:3::/64"},
		{"::1", "::/64"},
	} {
		if got := clientKey(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("clientKey(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}
