package ceiling

import (
	"fmt"
	"strings"
	"time"
)

// Format renders res as a Markdown table; pipeline > 0 adds the pipeline's publishes/s as a
// fraction of the end-to-end ceiling.
func Format(res *Result, pipeline float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kfake ceiling: %d records per hop, %d partitions\n\n", res.Records, res.Partitions)
	fmt.Fprintf(&b, "| hop | value bytes | elapsed | records/s |\n|---|---|---|---|\n")
	for _, h := range res.Hops {
		fmt.Fprintf(&b, "| %s (produce+consume) | %d | %s | %.0f |\n", h.Topic, h.ValueBytes, h.Elapsed.Round(time.Millisecond), h.PerSecond)
	}
	if res.EndToEnd > 0 {
		fmt.Fprintf(&b, "| end to end (3 hops chained) | | %s | %.0f |\n", res.EndToEnd.Round(time.Millisecond), res.EndToEndPerSecond)
		if pipeline > 0 {
			fmt.Fprintf(&b, "\npipeline %.0f publishes/s = %.1f %% of the end-to-end ceiling\n", pipeline, 100*pipeline/res.EndToEndPerSecond)
		}
	}
	return b.String()
}
