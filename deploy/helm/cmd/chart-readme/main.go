// Command chart-readme rewrites the values table of the Helm chart's README.md (between
// <!-- values:begin --> and <!-- values:end -->) from values.yaml's `# --` comments and
// values.schema.json. Run it from deploy/helm after changing either:
//
//	GOWORK=off go run ./cmd/chart-readme           # rewrite wakepush/README.md
//	GOWORK=off go run ./cmd/chart-readme -check    # exit 1 when it is stale
//
// It refuses to write when a value has no description or values.yaml and the schema disagree.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wakepush/wakepush/deploy/helm/valuesdoc"
)

func main() {
	dir := flag.String("chart", "wakepush", "chart directory")
	check := flag.Bool("check", false, "do not write: exit 1 when README.md is not up to date")
	flag.Parse()
	if err := run(*dir, *check); err != nil {
		fmt.Fprintln(os.Stderr, "chart-readme:", err)
		os.Exit(1)
	}
}

func run(dir string, check bool) error {
	c, err := valuesdoc.Load(dir)
	if err != nil {
		return err
	}
	out, err := c.Render()
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "README.md")
	if bytes.Equal(out, c.README()) {
		fmt.Println(path, "is up to date")
		return nil
	}
	if check {
		return fmt.Errorf("%s is not up to date with values.yaml; run: %s", path, valuesdoc.RegenerateCommand)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return nil
}
