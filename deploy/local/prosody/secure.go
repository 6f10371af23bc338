package prosody

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// CertFiles are a PEM certificate chain and its private key.
type CertFiles struct {
	CertFile, KeyFile string
}

// Prosody 0.12 has no TLS port of mod_component's own (component_ports are plain), but
// mod_net_multiplex serves every multiplex-capable protocol over direct TLS on its ssl_ports,
// and XEP-0114 is one of them (mod_component registers the jabber:component:accept stream
// pattern). Options.ComponentTLS uses that: the port also accepts c2s over direct TLS, so in
// production it belongs on a private interface (ssl_interfaces) like component_ports.

// secureConfig is the global configuration of the direct TLS port at s.SecureComponentAddr.
func (s *Server) secureConfig(opts Options, q func(string) string) string {
	if opts.ComponentTLS == nil {
		return ""
	}
	_, port, _ := net.SplitHostPort(s.SecureComponentAddr)
	var b strings.Builder
	fmt.Fprintf(&b, "\n-- XEP-0114 over direct TLS: mod_net_multiplex's ssl_ports.\n")
	fmt.Fprintf(&b, "ssl_ports = { %s }\nssl_interfaces = { \"127.0.0.1\" }\n", port)
	fmt.Fprintf(&b, "ssl_ssl = { certificate = %s; key = %s; } -- the TLS settings of ssl_ports only\n", q(opts.ComponentTLS.CertFile), q(opts.ComponentTLS.KeyFile))
	return b.String()
}

// secureReady reports whether Prosody logged that it listens on the direct TLS port (true
// when there is none).
func (s *Server) secureReady(log string) bool {
	if s.SecureComponentAddr == "" {
		return true
	}
	_, port, _ := net.SplitHostPort(s.SecureComponentAddr)
	p, _ := strconv.Atoi(port)
	return strings.Contains(log, fmt.Sprintf("Activated service 'multiplex_ssl' on [127.0.0.1]:%d", p)) && dialable(s.SecureComponentAddr)
}
