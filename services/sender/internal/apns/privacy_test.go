package apns

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// A transport error names the request URL, which ends in the device token: Result.Err (logged
// by the engine) must not carry it, yet still unwrap to the cause.
func TestTransportErrorsCarryNoToken(t *testing.T) {
	const token = "deadbeef5ec4e7000000000000000000000000000000000000000000deadbeef"
	tests := []struct {
		name   string
		faults apnsmock.Faults
	}{
		{"timeout", apnsmock.Faults{RateStall: 1}},
		{"connection reset", apnsmock.Faults{RateReset: 1}},
		{"connection dropped", apnsmock.Faults{RateDrop: 1}},
	}
	opts := DefaultOptions
	opts.Timeout = 300 * time.Millisecond
	f := newMockFixture(t, apnsmock.Config{}, opts)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mock.SetFaults(tt.faults)
			res := f.pool.Send(context.Background(), f.target(token), wake("w-"+tt.name))
			if res.Action != provider.Retry || res.Err == nil {
				t.Fatalf("%+v, want a Retry with an error", res)
			}
			if strings.Contains(res.Err.Error(), "5ec4e7") {
				t.Errorf("Result.Err carries the token: %v", res.Err)
			}
			var ue *url.Error
			if !errors.As(res.Err, &ue) {
				t.Errorf("Result.Err %v no longer unwraps to the *url.Error", res.Err)
			}
		})
	}
}
