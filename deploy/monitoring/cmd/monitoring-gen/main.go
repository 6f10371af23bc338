// Command monitoring-gen writes wakepush's Grafana dashboards (deploy/monitoring/dashboards)
// as JSON into the Helm chart and copies the Prometheus rule file next to them, where the
// chart's templates read them. Run it after changing either (`make monitoring`); the test
// TestGeneratedFilesAreFresh fails while the committed files are stale.
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/wakepush/wakepush/deploy/monitoring"
)

func main() {
	root := flag.String("root", "", "repository root (default: the directory with go.work above the working directory)")
	flag.Parse()
	if *root == "" {
		r, err := monitoring.Root(".")
		if err != nil {
			fail(err)
		}
		*root = r
	}
	files, err := monitoring.Generated(*root)
	if err != nil {
		fail(err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(*root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			fail(err)
		}
		fmt.Println("wrote", name)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "monitoring-gen:", err)
	os.Exit(1)
}
