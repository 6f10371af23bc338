// Package provider is the contract between the sender's delivery engine and a push provider
// (APNs, FCM): what to send to whom, and the provider's answer already classified into
// the action the engine takes. Classification is the provider's job because only it knows its
// status codes and reasons; the engine only knows the actions.
package provider

import (
	"context"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
)

// Action is what the engine does with a provider's answer.
type Action int

const (
	// Accepted: the provider took the push (it is not delivered yet). Done.
	Accepted Action = iota + 1
	// Permanent: the device's token is dead (APNs 410, BadDeviceToken, ...). The device is
	// unregistered unless it registered again after Result.InvalidAt. Never retried.
	Permanent
	// Drop: the provider rejected this request for good, but the token is not known dead
	// (e.g. PayloadTooLarge, Forbidden). Never retried; the device stays registered.
	Drop
	// Configuration: our side is misconfigured (key, team, topic, push type, endpoint). The
	// engine alerts, pauses the app's client for a while and retries the wake afterwards: the wake
	// is not lost and the provider is not hammered.
	Configuration
	// Retry: a transient failure (rate limit, provider 5xx, network error, timeout). Retried with
	// exponential backoff and jitter, at most the configured number of attempts, then dead-lettered.
	Retry
)

var actionNames = [...]string{
	Accepted:      "accepted",
	Permanent:     "permanent",
	Drop:          "drop",
	Configuration: "configuration",
	Retry:         "retry",
}

func (a Action) String() string {
	if a > 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Target is the device a wake goes to, resolved from its registration.
type Target struct {
	App         *apps.App
	DeviceID    string
	Token       string
	Environment wakepushv1.Environment
}

// Result is one provider call's classified outcome.
type Result struct {
	Action Action
	// StatusCode is the provider's HTTP status, 0 when no answer was received.
	StatusCode int
	// Reason is the provider's reason (APNs "reason") or, with no answer, a small fixed set of
	// transport error classes ("timeout", "network", "canceled", ...). Never content. It is
	// used as a metric attribute, so it must stay low-cardinality.
	Reason string
	// MessageID is what the provider calls the message (apns-id).
	MessageID string
	// Latency is the time from sending the request to the answer (or error).
	Latency time.Duration
	// InvalidAt is, for Permanent, since when the provider considers the token invalid (APNs
	// 410 "timestamp"; the request time when the provider gives none).
	InvalidAt time.Time
	// DeviceRateLimited marks a Retry caused by too many pushes to this one device: the engine
	// backs off the device, not just the wake.
	DeviceRateLimited bool
	// RetryAfter is, for Retry, the provider's Retry-After: the engine waits at least this
	// long before the next attempt (0: none given).
	RetryAfter time.Duration
	// Err is the transport error behind a Retry without an answer, for logs only.
	Err error
}

// Provider sends one wake to one device. It must be safe for concurrent use; it honours ctx
// (cancellation and deadline) and never retries by itself.
type Provider interface {
	Send(ctx context.Context, t Target, w *wakepushv1.Wake) Result
	// Close releases connections.
	Close()
}
