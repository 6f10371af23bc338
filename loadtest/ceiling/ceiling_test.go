package ceiling

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Options{Records: 2000, Producers: 32, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hops) != 3 || res.EndToEndPerSecond <= 0 {
		t.Fatalf("result %+v", res)
	}
	for _, h := range res.Hops {
		if h.PerSecond <= 0 || h.Records != 2000 {
			t.Fatalf("hop %+v", h)
		}
	}
	out := Format(res, 100)
	for _, want := range []string{"events", "wakes", "deliveries", "end to end", "of the end-to-end ceiling"} {
		if !strings.Contains(out, want) {
			t.Errorf("Format lacks %q:\n%s", want, out)
		}
	}
}

// BenchmarkCeiling reports records/s through the three chained hops (b.N records per hop).
func BenchmarkCeiling(b *testing.B) {
	n := b.N
	if n < 1000 {
		n = 1000
	}
	res, err := Run(context.Background(), Options{Records: n, SkipPerHop: true})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.EndToEndPerSecond, "records/s")
}
