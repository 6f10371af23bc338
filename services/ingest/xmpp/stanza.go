package xmpp

import (
	"fmt"
	"strings"
)

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrorAuth     = "auth"
	ErrorCancel   = "cancel"
	ErrorContinue = "continue"
	ErrorModify   = "modify"
	ErrorWait     = "wait"
)

// Stanza error conditions ingest uses (RFC 6120 §8.3.3).
const (
	BadRequest          = "bad-request"
	FeatureNotImpl      = "feature-not-implemented"
	Forbidden           = "forbidden"
	InternalServerError = "internal-server-error"
	ItemNotFound        = "item-not-found"
	NotAuthorized       = "not-authorized"
	PolicyViolation     = "policy-violation"
	ResourceConstraint  = "resource-constraint"
	ServiceUnavailable  = "service-unavailable"
)

// StanzaError is an IQ error answer.
type StanzaError struct {
	Type      string // auth, cancel, continue, modify or wait
	Condition string // a defined condition of urn:ietf:params:xml:ns:xmpp-stanzas
	Text      string // optional human-readable text; never include message content or secrets
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("%s/%s: %s", e.Type, e.Condition, e.Text)
	}
	return e.Type + "/" + e.Condition
}

// NewError returns a stanza error.
func NewError(typ, condition, text string) *StanzaError {
	return &StanzaError{Type: typ, Condition: condition, Text: text}
}

// IQ is an IQ stanza's addressing and its payload (the first child, if any).
type IQ struct {
	ID, Type, From, To string
	Payload            *Element
}

// ParseIQ reads the addressing of an <iq/> element.
func ParseIQ(el *Element) IQ {
	return IQ{
		ID:      el.AttrValue("id"),
		Type:    el.AttrValue("type"),
		From:    el.AttrValue("from"),
		To:      el.AttrValue("to"),
		Payload: el.FirstChild(),
	}
}

// ResultXML returns the result answer to iq with an optional payload (already serialized XML).
func ResultXML(iq IQ, payload string) string {
	var b strings.Builder
	b.Grow(len("<iq type='result' id='' from='' to=''>") + len(iq.ID) + len(iq.To) + len(iq.From) + len(payload) + len("</iq>") + 16)
	b.WriteString("<iq type='result'")
	writeAddr(&b, iq)
	if payload == "" {
		b.WriteString("/>")
		return b.String()
	}
	b.WriteString(">")
	b.WriteString(payload)
	b.WriteString("</iq>")
	return b.String()
}

// AppendResultXML appends ResultXML(iq, payload) to dst.
func AppendResultXML(dst []byte, iq IQ, payload string) []byte {
	dst = append(dst, "<iq type='result' id='"...)
	dst = appendEscaped(dst, iq.ID)
	dst = append(dst, '\'')
	if iq.To != "" {
		dst = append(dst, " from='"...)
		dst = appendEscaped(dst, iq.To)
		dst = append(dst, '\'')
	}
	if iq.From != "" {
		dst = append(dst, " to='"...)
		dst = appendEscaped(dst, iq.From)
		dst = append(dst, '\'')
	}
	if payload == "" {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = append(dst, payload...)
	return append(dst, "</iq>"...)
}

// appendEscaped appends Escape(s).
func appendEscaped(dst []byte, s string) []byte {
	if !needsEscape(s) {
		return append(dst, s...)
	}
	return append(dst, Escape(s)...)
}

// ErrorXML returns the error answer to iq. The original payload is not echoed: it may carry
// message content (the notification summary) that must not travel further.
func ErrorXML(iq IQ, e *StanzaError) string {
	var b strings.Builder
	b.WriteString("<iq type='error'")
	writeAddr(&b, iq)
	b.WriteString("><error type='")
	b.WriteString(Escape(e.Type))
	b.WriteString("'><")
	b.WriteString(e.Condition)
	b.WriteString(" xmlns='" + NSStanzas + "'/>")
	if e.Text != "" {
		b.WriteString("<text xmlns='" + NSStanzas + "'>")
		b.WriteString(Escape(e.Text))
		b.WriteString("</text>")
	}
	b.WriteString("</error></iq>")
	return b.String()
}

// writeAddr writes the answer's addressing: swapped from/to and the same id.
func writeAddr(b *strings.Builder, iq IQ) {
	b.WriteString(" id='")
	b.WriteString(Escape(iq.ID))
	b.WriteString("'")
	if iq.To != "" {
		b.WriteString(" from='")
		b.WriteString(Escape(iq.To))
		b.WriteString("'")
	}
	if iq.From != "" {
		b.WriteString(" to='")
		b.WriteString(Escape(iq.From))
		b.WriteString("'")
	}
}

// ReadStanzaError reads the error of an <iq type='error'/> or the condition of a
// <stream:error/> (conditionNS is NSStanzas or NSStreams).
func ReadStanzaError(el *Element, conditionNS string) *StanzaError {
	e := &StanzaError{Type: el.AttrValue("type")}
	for _, c := range el.Children {
		if c.Name.Space != conditionNS {
			continue
		}
		if c.Name.Local == "text" {
			e.Text = c.TrimmedText()
		} else if e.Condition == "" {
			e.Condition = c.Name.Local
		}
	}
	if e.Condition == "" {
		e.Condition = "undefined-condition"
	}
	return e
}

// Domain returns the domainpart of a JID (localpart@domainpart/resourcepart), lowercased. It does
// not apply full PRECIS/IDNA normalization: it is for labelling and comparison of server JIDs.
func Domain(jid string) string {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		jid = jid[:i]
	}
	if i := strings.LastIndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return strings.TrimSuffix(strings.ToLower(jid), ".")
}
