// Package adhoc is the p2/Conversations/Openfire registration convention: XEP-0050 ad-hoc
// commands sent by a client to the App Server JID (Prosody and ejabberd route them to the
// component):
//
//   - register-push-apns / register-push-fcm with a submit form of token, android-id or
//     device-id, optional muc → status='completed' with a result form of jid, node and secret;
//   - unregister-push-apns / unregister-push-fcm.
//
// Registrations go through the same core as the HTTP API (source ADHOC): the same token gives
// the same device_id whichever convention registered it. Each account (the bare JID the command
// comes from, as authenticated by its server) has its own registration of the device, with its
// own node and secret: registering again returns the account's registration, never another
// account's, and unregister-push-* ends only the account's own registration. The app each
// service registers for is configured (WAKEPUSH_ADHOC_APPS); the client does not name it.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wakepush/wakepush/services/internal/config"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/ratelimit"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// NSCommands is the XEP-0050 namespace (also the disco node listing the commands).
const NSCommands = "http://jabber.org/protocol/commands"

// Registrar is the part of the core the commands need (core.Ingester).
type Registrar interface {
	Register(ctx context.Context, req core.RegisterRequest) (core.Registered, error)
	UnregisterAccount(ctx context.Context, app, token, account, reason string, source wakepushv1.RegistrationSource) (string, error)
}

// Services maps a push service name ("apns", "fcm") to the app its commands register for.
type Services map[string]string

// ParseServices parses "service=app[,…]" (WAKEPUSH_ADHOC_APPS).
func ParseServices(s string) (Services, error) {
	out := Services{}
	var errs []error
	for _, item := range config.SplitList(s) {
		svc, app, ok := strings.Cut(item, "=")
		svc, app = strings.ToLower(strings.TrimSpace(svc)), strings.TrimSpace(app)
		switch {
		case !ok || app == "":
			errs = append(errs, fmt.Errorf("entry %q: want service=app", item))
		case svc != "apns" && svc != "fcm":
			errs = append(errs, fmt.Errorf("entry %q: service must be apns or fcm", item))
		case out[svc] != "":
			errs = append(errs, fmt.Errorf("service %q is listed twice", svc))
		default:
			out[svc] = app
		}
	}
	return out, errors.Join(errs...)
}

// Commands answers the ad-hoc commands and lists them in disco#items.
type Commands struct {
	core     Registrar
	jid      string
	services Services
	limit    *ratelimit.Limiter
	now      func() time.Time
}

// New returns the commands for services, announced as items of jid. perAccount limits the
// commands each account (bare JID) may execute (a zero Rate: unlimited); over the limit they
// are answered wait/resource-constraint.
func New(c Registrar, jid string, services Services, perAccount core.Rate) *Commands {
	return &Commands{core: c, jid: jid, services: services, limit: ratelimit.New(perAccount, ratelimit.Options{Name: "adhoc_account", MaxKeys: 1 << 16}), now: time.Now}
}

func (c *Commands) nodes() []string {
	var out []string
	for svc := range c.services {
		out = append(out, "register-push-"+svc, "unregister-push-"+svc)
	}
	sort.Strings(out)
	return out
}

// HandleDiscoItems answers disco#items: the commands for node http://jabber.org/protocol/commands,
// nothing for the root or other nodes.
func (c *Commands) HandleDiscoItems(_ context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
	node := iq.Payload.AttrValue("node")
	var b strings.Builder
	b.WriteString("<query xmlns='" + xmpp.NSDiscoItem + "'")
	if node != "" {
		b.WriteString(" node='" + xmpp.Escape(node) + "'")
	}
	b.WriteString(">")
	if node == NSCommands {
		for _, n := range c.nodes() {
			b.WriteString("<item jid='" + xmpp.Escape(c.jid) + "' node='" + n + "' name='" + n + "'/>")
		}
	}
	b.WriteString("</query>")
	return b.String(), nil
}

// formValues returns the first value of each field of the command's data form, and whether
// there was a form.
func formValues(cmd *xmpp.Element) (map[string]string, bool) {
	for _, x := range cmd.ChildrenNamed("", "x") {
		if x.Name.Space != xmpp.NSData {
			continue
		}
		vals := map[string]string{}
		for _, f := range x.ChildrenNamed("", "field") {
			name := f.AttrValue("var")
			if name == "" || len(vals) >= 32 {
				continue
			}
			if _, dup := vals[name]; !dup {
				vals[name] = f.Child("", "value").TrimmedText()
			}
		}
		return vals, true
	}
	return nil, false
}

// HandleCommand answers <iq type='set'><command xmlns='http://jabber.org/protocol/commands'/>.
func (c *Commands) HandleCommand(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
	cmd := iq.Payload
	node := cmd.AttrValue("node")
	action := cmd.AttrValue("action")
	sid := cmd.AttrValue("sessionid")
	verb, svc, ok := strings.Cut(node, "-push-")
	app := c.services[svc]
	if !ok || (verb != "register" && verb != "unregister") || app == "" {
		return "", xmpp.NewError(xmpp.ErrorCancel, xmpp.ItemNotFound, "no such command")
	}
	switch action {
	case "", "execute", "complete", "next":
	case "cancel":
		return commandXML(node, sid, "canceled", ""), nil
	default:
		return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "unsupported action")
	}
	if ok, _ := c.limit.AllowAt(bareJID(iq.From), c.now()); !ok {
		return "", xmpp.NewError(xmpp.ErrorWait, xmpp.ResourceConstraint, "too many commands from this account, retry later")
	}
	vals, submitted := formValues(cmd)
	if !submitted {
		// Multi-stage clients execute first: send the form to fill in.
		if sid == "" {
			sid = newSessionID()
		}
		return commandXML(node, sid, "executing", formXML()), nil
	}
	if sid == "" {
		sid = newSessionID()
	}
	account := bareJID(iq.From)
	if account == "" {
		return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "the command needs a sender")
	}
	token := vals["token"]
	switch verb {
	case "register":
		if token == "" {
			return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "field token is required")
		}
		r, err := c.core.Register(ctx, core.RegisterRequest{App: app, Token: token, Account: account, Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC})
		if err != nil {
			return "", errorFor(err)
		}
		jid := r.JID
		if jid == "" {
			jid = c.jid
		}
		res := "<x xmlns='" + xmpp.NSData + "' type='result'>" + resultField("jid", jid) + resultField("node", r.Node) + resultField("secret", r.Secret) + "</x>"
		return commandXML(node, sid, "completed", res), nil
	default: // unregister
		if vals["muc"] != "" {
			// Conversations unregisters a MUC's push channel this way; the device keeps its
			// other registrations, so nothing is written (the room's server stops publishing
			// once the client disables push there).
			return commandXML(node, sid, "completed", ""), nil
		}
		if token == "" {
			return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "field token is required to unregister the device")
		}
		// Only this account's registration of the device: another account's, an app's and a
		// token node's stay (and keep the device's wakes).
		if _, err := c.core.UnregisterAccount(ctx, app, token, account, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC); err != nil {
			return "", errorFor(err)
		}
		return commandXML(node, sid, "completed", ""), nil
	}
}

// errorFor maps a core error to the command's IQ error.
func errorFor(err error) *xmpp.StanzaError {
	detail := core.DetailOf(err)
	switch core.CodeOf(err) {
	case core.CodeMalformed:
		return xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, detail)
	case core.CodeUnknownApp:
		return xmpp.NewError(xmpp.ErrorCancel, xmpp.ItemNotFound, detail)
	}
	return xmpp.NewError(xmpp.ErrorWait, xmpp.InternalServerError, "the registration store is unavailable, retry later")
}

// bareJID is the account of a full JID, lowercased.
func bareJID(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	return strings.ToLower(j)
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func commandXML(node, sid, status, inner string) string {
	s := "<command xmlns='" + NSCommands + "' node='" + xmpp.Escape(node) + "' sessionid='" + xmpp.Escape(sid) + "' status='" + status + "'"
	if inner == "" {
		return s + "/>"
	}
	return s + ">" + inner + "</command>"
}

func resultField(name, value string) string {
	return "<field var='" + name + "'><value>" + xmpp.Escape(value) + "</value></field>"
}

func formXML() string {
	s := "<actions execute='complete'><complete/></actions><x xmlns='" + xmpp.NSData + "' type='form'>" +
		"<field var='token' type='text-single' label='Push token'><required/></field>" +
		"<field var='android-id' type='text-single' label='Device id'/>" +
		"<field var='muc' type='text-single' label='Group chat'/>"
	return s + "</x>"
}
