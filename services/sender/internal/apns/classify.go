package apns

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sideshow/apns2"

	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// rule is one row of the classification table: an APNs status and reason and what the sender
// does about them.
type rule struct {
	Status int
	Reason string
	Action provider.Action
}

// Rules lists every status/reason APNs documents ("Handling notification responses from APNs")
// with the sender's action (README.md, "Classification", says why). Classify falls back to the
// status for reasons not listed here.
var Rules = []rule{
	{http.StatusOK, "", provider.Accepted},

	{http.StatusBadRequest, apns2.ReasonBadCollapseID, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonBadDeviceToken, provider.Permanent},
	{http.StatusBadRequest, apns2.ReasonBadExpirationDate, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonBadMessageID, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonBadPriority, provider.Configuration},
	{http.StatusBadRequest, apns2.ReasonBadTopic, provider.Configuration},
	{http.StatusBadRequest, apns2.ReasonDeviceTokenNotForTopic, provider.Permanent},
	{http.StatusBadRequest, apns2.ReasonDuplicateHeaders, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonIdleTimeout, provider.Retry},
	{http.StatusBadRequest, apns2.ReasonInvalidPushType, provider.Configuration},
	{http.StatusBadRequest, apns2.ReasonMissingDeviceToken, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonMissingTopic, provider.Configuration},
	{http.StatusBadRequest, apns2.ReasonPayloadEmpty, provider.Drop},
	{http.StatusBadRequest, apns2.ReasonTopicDisallowed, provider.Configuration},
	{http.StatusBadRequest, "BadPayload", provider.Drop},

	{http.StatusForbidden, apns2.ReasonBadCertificate, provider.Configuration},
	{http.StatusForbidden, apns2.ReasonBadCertificateEnvironment, provider.Configuration},
	{http.StatusForbidden, apns2.ReasonExpiredProviderToken, provider.Retry},
	{http.StatusForbidden, apns2.ReasonForbidden, provider.Drop},
	{http.StatusForbidden, apns2.ReasonInvalidProviderToken, provider.Configuration},
	{http.StatusForbidden, apns2.ReasonMissingProviderToken, provider.Configuration},
	{http.StatusForbidden, "UnrelatedKeyIdInToken", provider.Configuration},
	{http.StatusForbidden, "BadEnvironmentKeyIdInToken", provider.Configuration},

	{http.StatusNotFound, apns2.ReasonBadPath, provider.Configuration},
	{http.StatusMethodNotAllowed, apns2.ReasonMethodNotAllowed, provider.Configuration},

	{http.StatusGone, apns2.ReasonExpiredToken, provider.Permanent},
	{http.StatusGone, apns2.ReasonUnregistered, provider.Permanent},

	{http.StatusRequestEntityTooLarge, apns2.ReasonPayloadTooLarge, provider.Drop},

	{http.StatusTooManyRequests, apns2.ReasonTooManyProviderTokenUpdates, provider.Retry},
	{http.StatusTooManyRequests, apns2.ReasonTooManyRequests, provider.Retry},

	{http.StatusInternalServerError, apns2.ReasonInternalServerError, provider.Retry},
	{http.StatusServiceUnavailable, apns2.ReasonServiceUnavailable, provider.Retry},
	{http.StatusServiceUnavailable, apns2.ReasonShutdown, provider.Retry},
}

type ruleKey struct {
	status int
	reason string
}

var ruleIndex = func() map[ruleKey]provider.Action {
	m := make(map[ruleKey]provider.Action, len(Rules))
	for _, r := range Rules {
		m[ruleKey{r.Status, r.Reason}] = r.Action
	}
	return m
}()

// Classify maps an APNs answer to an action. A reason APNs adds later falls back on its status:
// 400 and 413 drop, 403/404/405 are configuration, 410 is permanent, anything else (429, 5xx,
// unknown) is retried, bounded by the attempt limit.
func Classify(status int, reason string) provider.Action {
	if a, ok := ruleIndex[ruleKey{status, reason}]; ok {
		return a
	}
	switch status {
	case http.StatusOK:
		return provider.Accepted
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return provider.Drop
	case http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return provider.Configuration
	case http.StatusGone:
		return provider.Permanent
	}
	return provider.Retry
}

// Transport error classes (Result.Reason when APNs gave no answer).
const (
	ReasonTimeout     = provider.ReasonTimeout
	ReasonCanceled    = provider.ReasonCanceled
	ReasonNetwork     = provider.ReasonNetwork
	ReasonBadResponse = "bad_response" // an answer that is not APNs JSON
)

// ClassifyError maps a transport error (no APNs answer) to a reason; the action is always
// Retry. parent is the caller's context: its cancellation is "canceled", while the per-request
// deadline is "timeout".
func ClassifyError(parent context.Context, err error) string {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	if parent.Err() == nil && (errors.As(err, &syntaxErr) || errors.As(err, &typeErr)) {
		return ReasonBadResponse
	}
	return provider.TransportReason(parent, err)
}
