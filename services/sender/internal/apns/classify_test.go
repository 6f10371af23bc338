package apns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// Every status/reason APNs documents, one row each, with the action the sender must take
// (domain doc apns-fcm.md, "APNs responses").
var wantActions = []struct {
	status int
	reason string
	want   provider.Action
}{
	{200, "", provider.Accepted},
	{400, "BadCollapseId", provider.Drop},
	{400, "BadDeviceToken", provider.Permanent},
	{400, "BadExpirationDate", provider.Drop},
	{400, "BadMessageId", provider.Drop},
	{400, "BadPriority", provider.Configuration},
	{400, "BadTopic", provider.Configuration},
	{400, "DeviceTokenNotForTopic", provider.Permanent},
	{400, "DuplicateHeaders", provider.Drop},
	{400, "IdleTimeout", provider.Retry},
	{400, "InvalidPushType", provider.Configuration},
	{400, "MissingDeviceToken", provider.Drop},
	{400, "MissingTopic", provider.Configuration},
	{400, "PayloadEmpty", provider.Drop},
	{400, "TopicDisallowed", provider.Configuration},
	{400, "BadPayload", provider.Drop},
	{403, "BadCertificate", provider.Configuration},
	{403, "BadCertificateEnvironment", provider.Configuration},
	{403, "ExpiredProviderToken", provider.Retry},
	{403, "Forbidden", provider.Drop},
	{403, "InvalidProviderToken", provider.Configuration},
	{403, "MissingProviderToken", provider.Configuration},
	{403, "UnrelatedKeyIdInToken", provider.Configuration},
	{403, "BadEnvironmentKeyIdInToken", provider.Configuration},
	{404, "BadPath", provider.Configuration},
	{405, "MethodNotAllowed", provider.Configuration},
	{410, "ExpiredToken", provider.Permanent},
	{410, "Unregistered", provider.Permanent},
	{413, "PayloadTooLarge", provider.Drop},
	{429, "TooManyProviderTokenUpdates", provider.Retry},
	{429, "TooManyRequests", provider.Retry},
	{500, "InternalServerError", provider.Retry},
	{503, "ServiceUnavailable", provider.Retry},
	{503, "Shutdown", provider.Retry},
	// Reasons APNs may add later fall back on the status.
	{400, "SomethingNew", provider.Drop},
	{403, "SomethingNew", provider.Configuration},
	{410, "SomethingNew", provider.Permanent},
	{413, "", provider.Drop},
	{429, "", provider.Retry},
	{502, "", provider.Retry},
	{418, "", provider.Retry},
}

func TestClassify(t *testing.T) {
	for _, tc := range wantActions {
		t.Run(fmt.Sprintf("%d_%s", tc.status, tc.reason), func(t *testing.T) {
			t.Parallel()
			if got := Classify(tc.status, tc.reason); got != tc.want {
				t.Errorf("Classify(%d, %q) = %v, want %v", tc.status, tc.reason, got, tc.want)
			}
		})
	}
}

// The table above covers every rule the classifier knows, so a rule added without a test row
// fails here.
func TestClassifyRulesAllTested(t *testing.T) {
	tested := map[[2]string]bool{}
	for _, tc := range wantActions {
		tested[[2]string{fmt.Sprint(tc.status), tc.reason}] = true
	}
	for _, r := range Rules {
		if !tested[[2]string{fmt.Sprint(r.Status), r.Reason}] {
			t.Errorf("rule %d %q has no row in wantActions", r.Status, r.Reason)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassifyError(t *testing.T) {
	live := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		parent context.Context
		err    error
		want   string
	}{
		{"deadline", live, fmt.Errorf("post: %w", context.DeadlineExceeded), ReasonTimeout},
		{"net timeout", live, &net.OpError{Op: "dial", Err: timeoutErr{}}, ReasonTimeout},
		{"refused", live, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", errors.New("connection refused"))}, ReasonNetwork},
		{"shutdown", canceled, context.Canceled, ReasonCanceled},
		{"not json", live, fmt.Errorf("decode: %w", &jsonSyntaxError), ReasonBadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyError(tc.parent, tc.err); got != tc.want {
				t.Errorf("ClassifyError(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
