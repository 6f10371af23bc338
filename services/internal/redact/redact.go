// Package redact removes what must never reach a log line or an error message from text: URL
// passwords and credential query parameters, device tokens (APNs URL paths, long hex and FCM
// tokens), bearer tokens, key=value credentials and the localpart and resource of JIDs (which
// name a user and their device). It works on text only, so it is a last line of defence: call
// sites should not put such values into logs and errors in the first place.
package redact

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Placeholders that replace what was removed.
const (
	Redacted = "[redacted]"
	Token    = "[token]"
)

var (
	// urlRE matches a URL up to the first character that cannot be part of it in prose or in
	// a quoted error ("Post \"https://…\": …").
	urlRE = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s"'<>\x60]+`)
	// userinfoRE is the password of scheme://user:password@ (greedy to the last @ of the URL:
	// an unescaped @ in the password must not leave its tail behind).
	userinfoRE = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@?#]*):.*@`)
	// credParamRE is a query parameter whose name says it carries a credential.
	credParamRE  = regexp.MustCompile(`(?i)([?&;][a-z0-9_.\-]*(?:token|secret|password|passwd|pwd|key|auth|signature|sig|credential)[a-z0-9_.\-]*=)[^&#\s"']*`)
	devicePathRE = regexp.MustCompile(`/3/device/[^\s"'/?#&]+`)
	bearerRE     = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+`)
	kvRE         = regexp.MustCompile(`(?i)\b([a-z_\-]*(?:password|passwd|secret|token)[a-z_\-]*)=[^\s&,;"']+`)
	hexTokenRE   = regexp.MustCompile(`\b[0-9a-fA-F]{64,}\b`)
	fcmTokenRE   = regexp.MustCompile(`[A-Za-z0-9_\-]{8,}:APA91[A-Za-z0-9_\-]{20,}`)
	opaqueRE     = regexp.MustCompile(`[A-Za-z0-9_\-]{120,}`)
	// jidRE is localpart@domain with an optional /resource. The localpart excludes what
	// separates words in logs and errors; a version ("module@v1.2.3/file.go" in stack traces)
	// is not a domain and is left alone.
	jidRE     = regexp.MustCompile(`[^\s@/"'<>:=,;()\[\]{}\x60]+@([A-Za-z0-9][A-Za-z0-9.\-]*)(/[^\s"'<>,;()\[\]{}\x60]*)?`)
	versionRE = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)*`)
)

// Text returns s with every sensitive value this package knows replaced by a placeholder.
func Text(s string) string {
	if !maybeSensitive(s) {
		return s
	}
	locs := urlRE.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return prose(s)
	}
	var b strings.Builder
	last := 0
	for _, l := range locs {
		b.WriteString(prose(s[last:l[0]]))
		b.WriteString(URL(s[l[0]:l[1]]))
		last = l[1]
	}
	b.WriteString(prose(s[last:]))
	return b.String()
}

// URL returns u without its password, credential query parameters and device tokens. It works
// on the text, so a URL that does not parse is redacted too.
func URL(u string) string {
	u = userinfoRE.ReplaceAllString(u, "${1}:"+Redacted+"@")
	u = credParamRE.ReplaceAllString(u, "${1}"+Redacted)
	return tokens(u)
}

// Error returns err with every literal secret replaced and Text applied to its message (the URL
// of a *url.Error in it redacted with URL), or err itself when nothing had to be removed.
// errors.Is and errors.As still see err.
func Error(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	text := msg
	// A *url.Error quotes its URL with %q, which may escape a password past recognition: put
	// the URL back redacted before quoting.
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		text = strings.ReplaceAll(text, ue.Error(), fmt.Sprintf("%s %q: %s", ue.Op, URL(ue.URL), ue.Err))
	}
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, Redacted)
		}
	}
	text = Text(text)
	if text == msg {
		return err
	}
	return &redactedError{err: err, text: text}
}

type redactedError struct {
	err  error
	text string
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// JIDDomain returns the domain of a JID (localpart@domain/resource), the only part of a user's
// address that may be logged.
func JIDDomain(jid string) string {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		jid = jid[:i]
	}
	if i := strings.LastIndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return jid
}

// prose redacts text outside URLs.
func prose(s string) string {
	s = bearerRE.ReplaceAllString(s, "${1} "+Redacted)
	s = kvRE.ReplaceAllString(s, "${1}="+Redacted)
	s = tokens(s)
	if strings.IndexByte(s, '@') < 0 {
		return s
	}
	return jidRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := jidRE.FindStringSubmatch(m)
		if versionRE.MatchString(sub[1]) {
			return m
		}
		return Redacted + "@" + sub[1]
	})
}

// tokens redacts device tokens: APNs device paths, long hex runs (APNs tokens are 64 hex
// digits or more; device ids and trace ids are 32), FCM tokens and other long opaque runs.
func tokens(s string) string {
	s = devicePathRE.ReplaceAllString(s, "/3/device/"+Token)
	s = fcmTokenRE.ReplaceAllString(s, Token)
	s = hexTokenRE.ReplaceAllString(s, Token)
	return opaqueRE.ReplaceAllString(s, Token)
}

// maybeSensitive is a cheap pre-check: text without any of these cannot match a pattern above
// except a long token run, which needs at least 64 characters.
func maybeSensitive(s string) bool {
	if len(s) >= 64 {
		return true
	}
	return strings.ContainsAny(s, "@=") || strings.Contains(s, "://") || strings.Contains(s, "/3/device/") ||
		strings.Contains(strings.ToLower(s), "bearer") || strings.Contains(strings.ToLower(s), "basic")
}
