// Package xep0357 is the App Server side of XEP-0357 (Push Notifications): it parses the pubsub
// publish IQs XMPP servers send (leniently: Prosody's mod_cloud_notify and ejabberd's mod_push
// differ), turns them into events for the core, and maps the outcome to the IQ answer that makes
// each server do the right thing (see README.md "IQ answers").
//
// Privacy (DESIGN §4): the summary's last-message-body and last-message-sender are read only to
// learn whether a body was present; Publish has no field that could hold them, and nothing here
// logs stanza content.
package xep0357

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// Form types.
const (
	FormTypeSummary        = "urn:xmpp:push:summary"
	FormTypePublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
)

// Limits on the publish-options kept in Publish.Options.
const (
	maxOptions        = 32
	maxOptionValueLen = 1024
)

// ErrMalformed means the IQ is not a usable publish; the message says why (no content).
var ErrMalformed = errors.New("malformed publish")

type malformedError struct{ reason string }

func (e *malformedError) Error() string { return "malformed publish: " + e.reason }
func (e *malformedError) Is(target error) bool {
	return target == ErrMalformed
}

func malformed(reason string) error { return &malformedError{reason: reason} }

// Publish is what ingest keeps of a publish IQ. It deliberately has no field for the message
// body or the sender.
type Publish struct {
	// Node is the pubsub node (the registration).
	Node string
	// Secret is the publish-options field "secret" (the client's, echoed by its server).
	Secret string
	// Urgent is the custom field "urgent" (true/1) in the publish-options or the summary form.
	Urgent bool
	// Summary is what the notification's summary form said.
	Summary Summary
	// Options are the other publish-options fields (first value each; FORM_TYPE and secret
	// excluded), at most 32 of at most 1024 bytes, for registration conventions that select the
	// app there (e.g. fpush's pushModule).
	Options map[string]string
}

// Summary is the urn:xmpp:push:summary form, without content.
type Summary struct {
	// Present: the notification carried a summary form.
	Present bool
	// FormType is the form's type attribute: "form" (Prosody), "submit" (ejabberd) or "".
	FormType string
	// Important: last-message-body was present and not empty (Prosody sends a dummy text for
	// important stanzas: messages with a body, encrypted messages, call proposals).
	Important bool
	// MessageCount and PendingSubscriptionCount are 0 when absent or not numbers.
	MessageCount             uint32
	PendingSubscriptionCount uint32
}

// ParsePublish parses the payload of an IQ set: <pubsub xmlns='http://jabber.org/protocol/pubsub'>.
func ParsePublish(pubsub *xmpp.Element) (*Publish, error) {
	if pubsub == nil || pubsub.Name.Local != "pubsub" {
		return nil, malformed("payload is not <pubsub/>")
	}
	pub := pubsub.Child("", "publish")
	if pub == nil {
		return nil, malformed("no <publish/> element")
	}
	p := &Publish{Node: strings.TrimSpace(pub.AttrValue("node"))}
	if p.Node == "" {
		return nil, malformed("<publish/> has no node")
	}
	if len(p.Node) > 1024 {
		return nil, malformed("node is too long")
	}
	// The summary: publish/item/notification/x. Servers may send no item, an empty
	// notification, or a notification without a form.
	for _, item := range pub.Children {
		if item.Name.Local != "item" {
			continue
		}
		n := item.Child(xmpp.NSPush, "notification")
		if n == nil {
			n = item.Child("", "notification")
		}
		if n == nil {
			continue
		}
		if x := findForm(n, FormTypeSummary); x != nil {
			p.Summary = parseSummary(x)
			if v, ok := fieldValue(x, "urgent"); ok && truthy(v) {
				p.Urgent = true
			}
		}
		break
	}
	if po := pubsub.Child("", "publish-options"); po != nil {
		if x := findForm(po, FormTypePublishOptions); x != nil {
			p.readOptions(x)
		}
	}
	return p, nil
}

// findForm returns the first data form child of parent whose FORM_TYPE is formType, else the
// first data form without a FORM_TYPE, else the first data form, else nil (lenient: clients and
// servers get FORM_TYPE wrong).
func findForm(parent *xmpp.Element, formType string) *xmpp.Element {
	var untyped, first *xmpp.Element
	for _, x := range parent.Children {
		if x.Name.Local != "x" {
			continue
		}
		if x.Name.Space != xmpp.NSData && x.Name.Space != "" {
			continue
		}
		ft, ok := fieldValue(x, "FORM_TYPE")
		if ok && ft == formType {
			return x
		}
		if !ok && untyped == nil {
			untyped = x
		}
		if first == nil {
			first = x
		}
	}
	if untyped != nil {
		return untyped
	}
	return first
}

// fieldValue returns the first value of field var (trimmed) and whether the field exists.
func fieldValue(x *xmpp.Element, name string) (string, bool) {
	for _, f := range x.Children {
		if f.Name.Local != "field" || f.AttrValue("var") != name {
			continue
		}
		return f.Child("", "value").TrimmedText(), true
	}
	return "", false
}

func parseSummary(x *xmpp.Element) Summary {
	s := Summary{Present: true, FormType: x.AttrValue("type")}
	for _, f := range x.Children {
		if f.Name.Local != "field" {
			continue
		}
		switch f.AttrValue("var") {
		case "message-count":
			s.MessageCount = parseCount(f.Child("", "value").TrimmedText())
		case "pending-subscription-count":
			s.PendingSubscriptionCount = parseCount(f.Child("", "value").TrimmedText())
		case "last-message-body":
			// Only whether it is non-empty; the text is not kept.
			if f.Child("", "value").TrimmedText() != "" {
				s.Important = true
			}
			// last-message-sender is not read at all.
		}
	}
	return s
}

// parseCount reads a non-negative count leniently: anything unparsable is 0, overflow clamps.
func parseCount(v string) uint32 {
	if v == "" || v[0] < '0' || v[0] > '9' {
		return 0 // not a number (ParseUint would say so with an allocated error)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return math.MaxUint32
		}
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes":
		return true
	}
	return false
}

func (p *Publish) readOptions(x *xmpp.Element) {
	for _, f := range x.Children {
		if f.Name.Local != "field" {
			continue
		}
		name := f.AttrValue("var")
		v := f.Child("", "value").TrimmedText()
		switch name {
		case "", "FORM_TYPE":
		case "secret":
			if p.Secret == "" {
				p.Secret = v
			}
		case "urgent":
			if truthy(v) {
				p.Urgent = true
			}
		default:
			if len(p.Options) >= maxOptions || len(v) > maxOptionValueLen || len(name) > 256 {
				continue
			}
			if p.Options == nil {
				p.Options = map[string]string{}
			}
			if _, dup := p.Options[name]; !dup {
				p.Options[name] = v
			}
		}
	}
}
