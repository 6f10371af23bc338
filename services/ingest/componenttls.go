package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// componentTLS is the TLS of one component connection entry: the options after ';' in a
// WAKEPUSH_COMPONENTS entry or WAKEPUSH_COMPONENT_ADDR, `;tls[;ca=FILE][;server-name=NAME]`.
type componentTLS struct {
	Enabled    bool
	CAFile     string // PEM CAs to trust (default: system roots)
	ServerName string // the name the server's certificate must carry (default: the host)
}

// splitComponentOptions splits `spec;opt;…` into spec and its TLS options.
func splitComponentOptions(item string) (string, componentTLS, error) {
	spec, rest, _ := strings.Cut(item, ";")
	var t componentTLS
	if rest == "" {
		return spec, t, nil
	}
	for _, opt := range strings.Split(rest, ";") {
		key, value, hasValue := strings.Cut(strings.TrimSpace(opt), "=")
		switch key {
		case "tls":
			t.Enabled = true
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return "", t, fmt.Errorf("%q: tls=%q is not a boolean", item, value)
				}
				t.Enabled = b
			}
		case "ca":
			t.CAFile = value
		case "server-name":
			t.ServerName = value
		default:
			return "", t, fmt.Errorf("%q: unknown option %q (want tls, ca=FILE, server-name=NAME)", item, opt)
		}
		if key != "tls" && value == "" {
			return "", t, fmt.Errorf("%q: %s= needs a value", item, key)
		}
	}
	if !t.Enabled && (t.CAFile != "" || t.ServerName != "") {
		return "", t, fmt.Errorf("%q: ca= and server-name= need tls", item)
	}
	return spec, t, nil
}

// config is the connection's TLS configuration, or nil for plain TCP.
func (t componentTLS) config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificates", t.CAFile)
		}
	}
	return tc, nil
}
