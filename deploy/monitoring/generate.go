package monitoring

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/wakepush/wakepush/deploy/monitoring/dashboards"
)

// Chart paths, relative to the repository root.
const (
	ChartDir        = "deploy/helm/wakepush"
	ChartDashboards = ChartDir + "/dashboards" // one JSON file per dashboard (templates/grafana-dashboards.yaml)
	ChartRules      = ChartDir + "/rules/wakepush.rules.yaml"
	RulesFile       = "deploy/monitoring/rules/wakepush.rules.yaml" // the source of the chart's copy
	RuleTestsDir    = "deploy/monitoring/rules/tests"
)

// Generated returns every file the generator writes, by path relative to the repository root:
// the dashboards' JSON and the chart's copy of the rule file.
func Generated(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, d := range dashboards.All() {
		b, err := d.JSON()
		if err != nil {
			return nil, err
		}
		out[ChartDashboards+"/"+d.File] = b
	}
	rules, err := os.ReadFile(filepath.Join(root, RulesFile))
	if err != nil {
		return nil, err
	}
	out[ChartRules] = rules
	return out, nil
}

// Root finds the repository root (the directory with go.work) from dir upwards.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s", dir)
		}
	}
}
