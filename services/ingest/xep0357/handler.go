package xep0357

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// Publisher is the part of the core a publish needs (core.Ingester).
type Publisher interface {
	Publish(ctx context.Context, ev core.Event) (string, error)
	// IsTokenNode and PublishToken are the fpush/Monal convention (node = provider token,
	// publish-options pushModule names the app).
	IsTokenNode(node, module string) bool
	PublishToken(ctx context.Context, ev core.TokenEvent) (string, error)
	Metrics() *core.Metrics
}

// PushModuleField is the publish-options field of the fpush/Monal convention that names the app.
const PushModuleField = "pushModule"

// Handler answers publish IQs.
type Handler struct {
	core   Publisher
	tracer trace.Tracer
}

// NewHandler returns a publish handler over the core.
func NewHandler(c Publisher) *Handler {
	return &Handler{core: c, tracer: otel.Tracer("github.com/wakepush/wakepush/services/ingest/xep0357")}
}

// ErrorFor maps a core outcome to the IQ error servers need (README.md "IQ answers"):
// transient failures are type wait (Prosody does not count them, ejabberd keeps the
// registration); only a dead registration is cancel/item-not-found.
func ErrorFor(err error) *xmpp.StanzaError {
	if err == nil {
		return nil
	}
	detail := core.DetailOf(err)
	switch core.CodeOf(err) {
	case core.CodeMalformed:
		return xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, detail)
	case core.CodeNotAuthorized:
		return xmpp.NewError(xmpp.ErrorAuth, xmpp.NotAuthorized, detail)
	case core.CodeUnknownNode, core.CodeUnknownApp, core.CodeGone:
		return xmpp.NewError(xmpp.ErrorCancel, xmpp.ItemNotFound, detail)
	case core.CodeForbidden:
		return xmpp.NewError(xmpp.ErrorAuth, xmpp.Forbidden, detail)
	case core.CodeOverloaded, core.CodeShuttingDown, core.CodeRateLimited:
		return xmpp.NewError(xmpp.ErrorWait, xmpp.ResourceConstraint, detail)
	default: // CodeUnavailable and anything unexpected: ours, transient
		return xmpp.NewError(xmpp.ErrorWait, xmpp.InternalServerError, "the event store is unavailable, retry later")
	}
}

// serverSpan is the publish span's start option, made once: the variadic slice of a call
// through the Tracer interface is allocated on every call otherwise.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// HandlePublish is a component.Handler for <iq type='set'><pubsub xmlns='…pubsub'><publish/>…
// It records the event (acks=all) before answering.
func (h *Handler) HandlePublish(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
	sender := xmpp.Domain(iq.From)
	// Attributes only on a recorded span: for an unsampled one (the default without an
	// exporter) building them costs more than the span (the standard samplers decide on the
	// parent and the trace id, not on attributes).
	ctx, span := h.tracer.Start(ctx, "xep0357 publish", serverSpan...)
	defer span.End()
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.String("xmpp.from_domain", sender), attribute.String("xmpp.to_domain", xmpp.Domain(iq.To)))
	}

	p, err := ParsePublish(iq.Payload)
	if err != nil {
		h.core.Metrics().Publish(ctx, core.SourceName(wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT), core.CodeMalformed)
		span.SetAttributes(attribute.String("wakepush.outcome", string(core.CodeMalformed)))
		return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, err.Error())
	}
	if recording {
		span.SetAttributes(attribute.Bool("wakepush.important", p.Summary.Important), attribute.Bool("wakepush.urgent", p.Urgent))
	}
	if module := p.Options[PushModuleField]; h.core.IsTokenNode(p.Node, module) {
		span.SetAttributes(attribute.String("wakepush.convention", "token_node"))
		_, err = h.core.PublishToken(ctx, core.TokenEvent{
			Token:                    p.Node,
			Module:                   module,
			Sender:                   sender,
			Urgent:                   p.Urgent,
			Important:                p.Summary.Important,
			MessageCount:             p.Summary.MessageCount,
			PendingSubscriptionCount: p.Summary.PendingSubscriptionCount,
		})
	} else {
		_, err = h.core.Publish(ctx, core.Event{
			Node:                     p.Node,
			Secret:                   p.Secret,
			Source:                   wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT,
			Sender:                   sender,
			Urgent:                   p.Urgent,
			Important:                p.Summary.Important,
			MessageCount:             p.Summary.MessageCount,
			PendingSubscriptionCount: p.Summary.PendingSubscriptionCount,
		})
	}
	if serr := ErrorFor(err); serr != nil {
		if serr.Type == xmpp.ErrorWait {
			span.RecordError(redact.Error(err))
			span.SetStatus(codes.Error, serr.Condition)
		}
		span.SetAttributes(attribute.String("xmpp.error.type", serr.Type), attribute.String("xmpp.error.condition", serr.Condition))
		return "", serr
	}
	return "", nil
}
