// Package clickhousex holds the transport security and credentials of a ClickHouse connection
// beside its DSN: TLS with an explicit CA, server name and client certificate, and the user and
// password as settings of their own (the password a secret: environment or file, never a flag).
//
//	opts, _ := clickhouse.ParseDSN(dsn)
//	if err := cfg.Apply(opts); err != nil { … }
//	conn, err := clickhouse.Open(opts)
package clickhousex

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/services/internal/config"
)

// Config is how a connection authenticates and protects itself. The zero value changes
// nothing in the DSN's options.
type Config struct {
	// TLS connects over TLS (as does secure=true in the DSN).
	TLS bool
	// CAFile is a PEM bundle of the CAs trusted for the server's certificate (default: the
	// system roots).
	CAFile string
	// ServerName is the name the server's certificate must carry (default: the DSN's host).
	ServerName string
	// CertFile and KeyFile are a client certificate and its key (PEM), for servers that
	// require one.
	CertFile, KeyFile string
	// User and Password authenticate; the DSN may carry them instead, not both.
	User, Password string
}

// Register adds the settings to s.
func (c *Config) Register(s *config.Set) {
	s.Bool(&c.TLS, "clickhouse-tls", "WAKEPUSH_CLICKHOUSE_TLS", false, "connect to ClickHouse over TLS (as secure=true in the DSN does); the secure native port is usually 9440")
	s.String(&c.CAFile, "clickhouse-ca-file", "WAKEPUSH_CLICKHOUSE_CA_FILE", "", "PEM CA bundle to trust for ClickHouse TLS (default: system roots)")
	s.String(&c.ServerName, "clickhouse-tls-server-name", "WAKEPUSH_CLICKHOUSE_TLS_SERVER_NAME", "", "name ClickHouse's certificate must carry (default: the DSN's host)")
	s.String(&c.CertFile, "clickhouse-cert-file", "WAKEPUSH_CLICKHOUSE_CERT_FILE", "", "PEM client certificate for ClickHouse TLS (with -clickhouse-key-file)")
	s.String(&c.KeyFile, "clickhouse-key-file", "WAKEPUSH_CLICKHOUSE_KEY_FILE", "", "PEM private key of -clickhouse-cert-file")
	s.String(&c.User, "clickhouse-user", "WAKEPUSH_CLICKHOUSE_USER", "", "ClickHouse user (default: the DSN's, else default)")
	s.Secret(&c.Password, "WAKEPUSH_CLICKHOUSE_PASSWORD", "", "ClickHouse password (instead of one in the DSN)")
}

// Apply sets c's TLS and credentials on opts, parsed from a DSN. It fails when c and the DSN
// both set the user or the password, when a TLS file does not load, or when TLS settings are
// given without TLS. Errors never contain the password.
func (c *Config) Apply(opts *clickhouse.Options) error {
	var errs []error
	if c.User != "" {
		if opts.Auth.Username != "" && opts.Auth.Username != c.User {
			errs = append(errs, fmt.Errorf("WAKEPUSH_CLICKHOUSE_USER=%q and the DSN's user %q differ: set the user in one place", c.User, opts.Auth.Username))
		}
		opts.Auth.Username = c.User
	}
	if c.Password != "" {
		if opts.Auth.Password != "" {
			errs = append(errs, errors.New("WAKEPUSH_CLICKHOUSE_PASSWORD is set and the DSN has a password too: set it in one place"))
		}
		opts.Auth.Password = c.Password
	}
	secure := c.TLS || opts.TLS != nil
	if !secure {
		if c.CAFile != "" || c.ServerName != "" || c.CertFile != "" || c.KeyFile != "" {
			errs = append(errs, errors.New("WAKEPUSH_CLICKHOUSE_CA_FILE, _TLS_SERVER_NAME, _CERT_FILE and _KEY_FILE need TLS: "+
				"set WAKEPUSH_CLICKHOUSE_TLS=true (or secure=true in the DSN)"))
		}
		return errors.Join(errs...)
	}
	tc := &tls.Config{}
	if opts.TLS != nil {
		tc = opts.TLS.Clone() // keeps the DSN's tls_server_name and skip_verify
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pool, err := loadCA(c.CAFile)
		if err != nil {
			errs = append(errs, err)
		}
		tc.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("WAKEPUSH_CLICKHOUSE_CERT_FILE/_KEY_FILE: %w", err))
		}
		tc.Certificates = []tls.Certificate{cert}
	case c.CertFile != "" || c.KeyFile != "":
		errs = append(errs, errors.New("WAKEPUSH_CLICKHOUSE_CERT_FILE and WAKEPUSH_CLICKHOUSE_KEY_FILE go together"))
	}
	opts.TLS = tc
	return errors.Join(errs...)
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("WAKEPUSH_CLICKHOUSE_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("WAKEPUSH_CLICKHOUSE_CA_FILE %s: no PEM certificates", file)
	}
	return pool, nil
}
