package ratelimit_test

import (
	"testing"

	"github.com/wakepush/wakepush/services/ingest/ratelimit"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ratelimit.Rate
		wantErr bool
	}{
		{in: "", want: ratelimit.Rate{}},
		{in: " 0 ", want: ratelimit.Rate{}},
		{in: "10/s", want: ratelimit.Rate{PerSecond: 10, Burst: 10}},
		{in: "10/s:50", want: ratelimit.Rate{PerSecond: 10, Burst: 50}},
		{in: "30/m:5", want: ratelimit.Rate{PerSecond: 0.5, Burst: 5}},
		{in: "30/m", want: ratelimit.Rate{PerSecond: 0.5, Burst: 1}},
		{in: "3600/h", want: ratelimit.Rate{PerSecond: 1, Burst: 1}},
		{in: "0.5/s:2", want: ratelimit.Rate{PerSecond: 0.5, Burst: 2}},
		{in: "10", wantErr: true},
		{in: "10/d", wantErr: true},
		{in: "-1/s", wantErr: true},
		{in: "0/s", wantErr: true},
		{in: "NaN/s", wantErr: true},
		{in: "Inf/s", wantErr: true},
		{in: "2e9/s", wantErr: true},
		{in: "x/s", wantErr: true},
		{in: "10/s:0", wantErr: true},
		{in: "10/s:x", wantErr: true},
		{in: "10/s:-3", wantErr: true},
	} {
		got, err := ratelimit.ParseRate(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.Unlimited() != (tc.want.PerSecond == 0) {
			t.Errorf("ParseRate(%q).Unlimited() = %v", tc.in, got.Unlimited())
		}
	}
}
