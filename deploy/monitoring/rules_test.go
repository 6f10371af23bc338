package monitoring_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/wakepush/wakepush/deploy/monitoring"
	"github.com/wakepush/wakepush/deploy/monitoring/ruletest"
)

// TestAlertRules runs the promtool-format unit tests of rules/tests with Prometheus's rules
// engine, and checks that every alert has a test in which it fires and one in which it is
// checked and does not fire.
func TestAlertRules(t *testing.T) {
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, monitoring.RuleTestsDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in %s (%v)", monitoring.RuleTestsDir, err)
	}
	firedIn := map[string]int{}
	quietIn := map[string]int{}
	for _, path := range files {
		f, err := ruletest.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range f.Tests {
			t.Run(filepath.Base(path)+"/"+tc.Name, func(t *testing.T) {
				errs := f.Run(tc, func(alert string, n int) {
					if n > 0 {
						firedIn[alert]++
					} else {
						quietIn[alert]++
					}
				})
				for _, err := range errs {
					t.Error(err)
				}
			})
		}
	}
	for _, alert := range alertNames(t, filepath.Join(root, monitoring.RulesFile)) {
		if firedIn[alert] == 0 || quietIn[alert] == 0 {
			t.Errorf("alert %s: checked firing %d times and quiet %d times; want a test of each", alert, firedIn[alert], quietIn[alert])
		}
	}
}

// TestRuleTestsFailOnWrongExpectations runs a rule test whose expectation is wrong on purpose,
// so the runner is known to report mismatches rather than pass everything.
func TestRuleTestsFailOnWrongExpectations(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join(root, monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	bad := `rule_files: [` + rules + `]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'wakepush_sender_configuration_errors_total{app="im.a", environment="production", reason="BadTopic"}'
        values: '0 1 1 1'
    alert_rule_test:
      - eval_time: 2m
        alertname: WakepushProviderConfigurationErrors
        exp_alerts:
          - exp_labels: {app: im.a, environment: production, reason: BadTopic, severity: warning}
`
	p := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := ruletest.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Run(f.Tests[0], nil)
	if len(errs) != 1 || !regexp.MustCompile(`severity="critical"`).MatchString(errs[0].Error()) {
		t.Fatalf("a wrong severity and missing annotations gave %v; want one mismatch showing the firing alert", errs)
	}
}

func alertNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s: no alerts", path)
	}
	slices.Sort(names)
	return names
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := monitoring.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
