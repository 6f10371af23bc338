package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/wakepush/wakepush/services/internal/config"
)

// TrustedProxies are the reverse proxies (load balancers) in front of the API whose
// X-Forwarded-For header is believed. A nil or empty set trusts nobody: the client is the
// connection's peer and the header is ignored.
type TrustedProxies struct {
	nets []netip.Prefix
}

// ParseTrustedProxies parses a comma-separated list of CIDR prefixes or single addresses, e.g.
// "10.0.0.0/8, 192.0.2.7, 2001:db8:100::/48" (empty: none).
func ParseTrustedProxies(s string) (*TrustedProxies, error) {
	t := &TrustedProxies{}
	var errs []error
	for _, item := range config.SplitList(s) {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil || a.Zone() != "" {
				errs = append(errs, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", item))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: peers are matched unmapped.
			if p.Bits() < 96 {
				errs = append(errs, fmt.Errorf("%q: an IPv4-mapped prefix needs at least 96 bits", item))
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.nets = append(t.nets, p.Masked())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Len is the number of trusted prefixes.
func (t *TrustedProxies) Len() int {
	if t == nil {
		return 0
	}
	return len(t.nets)
}

func (t *TrustedProxies) trusts(a netip.Addr) bool {
	if t == nil {
		return false
	}
	for _, p := range t.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address of the client that sent a request arriving from the peer
// remoteAddr (http.Request.RemoteAddr) with the X-Forwarded-For values xff (all header lines, in
// order). ok is false when remoteAddr is not an IP address (then nothing better is known).
//
// Only a trusted peer's header is read, from the right (each proxy appends the address it got
// the request from): every trusted address is skipped and the first untrusted one is the
// client; whatever is to the left of it was written by the client or by proxies nobody trusts,
// and is ignored. A value that is not an address ends the walk at the trusted proxy that
// appended it; a chain of trusted addresses only ends at its leftmost one.
func (t *TrustedProxies) clientAddr(remoteAddr string, xff []string) (addr netip.Addr, ok bool) {
	cur, ok := parseHost(remoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for {
			if !t.trusts(cur) {
				return cur, true
			}
			elem := line
			comma := strings.LastIndexByte(line, ',')
			if comma >= 0 {
				elem, line = line[comma+1:], line[:comma]
			}
			a, valid := parseHost(elem)
			if !valid {
				return cur, true
			}
			cur = a
			if comma < 0 {
				break
			}
		}
	}
	return cur, true
}

// parseHost parses an address as found in RemoteAddr or an X-Forwarded-For element: "ip",
// "ip:port", "[ipv6]" or "[ipv6]:port", surrounded by optional spaces. The result is unmapped
// (::ffff:192.0.2.1 is 192.0.2.1) and has no zone.
func parseHost(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a = ap.Addr()
	} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		v6, err := netip.ParseAddr(inner[:len(inner)-1])
		if err != nil || !v6.Is6() {
			return netip.Addr{}, false
		}
		a = v6
	} else if a, err = netip.ParseAddr(s); err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// clientKey is the rate-limit key of a client address: the address itself for IPv4, its /64
// for IPv6 (one host usually holds a whole /64, so per-address buckets would give it 2^64).
func clientKey(a netip.Addr) string {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// clientKeyOf is the rate-limit key of r's client (see clientAddr); RemoteAddr itself when it
// is not an IP address.
func (t *TrustedProxies) clientKeyOf(r *http.Request) string {
	a, ok := t.clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	if !ok {
		return r.RemoteAddr
	}
	return clientKey(a)
}
