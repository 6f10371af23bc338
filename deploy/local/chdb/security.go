package chdb

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// libchdb runs ClickHouse as clickhouse-local, which starts only plain listeners: asked for the
// secure native port it answers
//
//	Code: 1. DB::Exception: SYSTEM START/STOP LISTEN in clickhouse-local supports only TCP and
//	HTTP listeners (or QUERIES ALL / QUERIES DEFAULT covering them); got 'TCP SECURE'.
//	(UNSUPPORTED_METHOD)
//
// and with tcp_port_secure and openSSL.server.* in its configuration, SYSTEM START LISTEN
// QUERIES ALL still opens only tcp_port and http_port (libchdb 26.7.3). So StartOptions.TLS is
// served by a TLS terminator (package tlsproxy) in the calling process in front of the native
// port: clients' TLS settings (CA, server name, client certificate) meet a real TLS handshake
// and the real ClickHouse protocol behind it. A production ClickHouse serves TLS itself
// (tcp_port_secure, 9440).
//
// libchdb 26.7 also ends the whole server after it refuses a native-protocol login (wrong
// password, unknown user): the AUTHENTICATION_FAILED exception reaches clickhouse-local's
// KillingErrorHandler ("Terminate called for uncaught exception", SIGABRT, exit status 134),
// ClickHouse issue #115666, fixed upstream by #115715. The client still gets the
// AUTHENTICATION_FAILED answer first. The HTTP interface refuses a login without ending. So
// a test that checks a wrong password over the native protocol does so last, on a server of
// its own, never on the shared stacktest server.

// User is a ClickHouse account of a local server (StartOptions.Users).
type User struct {
	// Name: letters, digits and '_'.
	Name string
	// Password is required; the server's users file holds only its SHA-256.
	Password string
}

var userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// writeUsersConfig writes a ClickHouse configuration that loads a users file with the passwordless
// default user (as without a configuration) and users, into dir, and returns the configuration's
// path.
func writeUsersConfig(dir string, users []User) (string, error) {
	var b strings.Builder
	b.WriteString("<clickhouse>\n  <profiles><default/></profiles>\n  <quotas><default/></quotas>\n  <users>\n")
	b.WriteString("    <default>\n      <no_password/>\n      <networks><ip>::/0</ip></networks>\n" +
		"      <profile>default</profile><quota>default</quota>\n    </default>\n")
	seen := map[string]bool{"default": true}
	for _, u := range users {
		if !userName.MatchString(u.Name) {
			return "", fmt.Errorf("chdb: user name %q: want letters, digits and _", u.Name)
		}
		if seen[u.Name] {
			return "", fmt.Errorf("chdb: user %q is listed twice (or is the built-in default user)", u.Name)
		}
		seen[u.Name] = true
		if u.Password == "" {
			return "", errors.New("chdb: user " + u.Name + " needs a password")
		}
		sum := sha256.Sum256([]byte(u.Password))
		fmt.Fprintf(&b, "    <%s>\n      <password_sha256_hex>%s</password_sha256_hex>\n      <networks><ip>::/0</ip></networks>\n"+
			"      <profile>default</profile><quota>default</quota>\n    </%s>\n", u.Name, hex.EncodeToString(sum[:]), u.Name)
	}
	b.WriteString("  </users>\n</clickhouse>\n")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("chdb: create %s: %w", dir, err)
	}
	usersFile := filepath.Join(dir, "users.xml")
	if err := os.WriteFile(usersFile, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("chdb: write users file: %w", err)
	}
	var esc strings.Builder
	if err := xmlEscape(&esc, usersFile); err != nil {
		return "", err
	}
	configFile := filepath.Join(dir, "config.xml")
	cfg := "<clickhouse>\n  <users_config>" + esc.String() + "</users_config>\n</clickhouse>\n"
	if err := os.WriteFile(configFile, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("chdb: write config file: %w", err)
	}
	return configFile, nil
}

func xmlEscape(b *strings.Builder, s string) error {
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			if r < 0x20 {
				return fmt.Errorf("chdb: control character in path %q", s)
			}
			b.WriteRune(r)
		}
	}
	return nil
}
