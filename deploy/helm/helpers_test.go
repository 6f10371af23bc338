package helm_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/wakepush/wakepush/deploy/helm/chartrender"
	"github.com/wakepush/wakepush/deploy/helm/crdvalidate"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	release "helm.sh/helm/v4/pkg/release/v1"
)

// TestMain silences the Helm SDK's default logger below errors: lint logs every `required`
// value it skips as a warning.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	os.Exit(m.Run())
}

// The chart under test; WAKEPUSH_CHART_DIR points the tests at another copy.
func chartDir() string {
	if d := os.Getenv("WAKEPUSH_CHART_DIR"); d != "" {
		return d
	}
	return "wakepush"
}

const crdDir = "crds"

// API groups the vendored CRDs serve, announced to the render as .Capabilities.APIVersions so
// that a chart which gates a kind on the capability renders it.
var extraAPIVersions = []string{
	"keda.sh/v1alpha1", "keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication",
	"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule",
	"gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1/HTTPRoute",
}

// valuesCase is one values file the chart must install with.
type valuesCase struct {
	Name string         // "default" or the file name without -values.yaml
	Path string         // "" for the chart's own values
	Vals map[string]any // user-supplied values (nil: none)
}

func (c valuesCase) isDefault() bool { return c.Path == "" && c.Vals == nil }

// defaultsRequire reports whether err is the chart refusing its bare defaults because site
// values (Kafka brokers, Secrets, the apps file) are required: expected, not a failure.
func defaultsRequire(c valuesCase, err error) bool {
	return c.isDefault() && err != nil && strings.Contains(err.Error(), "required")
}

// valuesCases are the chart's default values plus every ci/*-values.yaml (globbed: a new file
// is picked up without a test change).
func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s/ci/*-values.yaml: the chart ships one values file per supported configuration", chartDir())
	}
	sort.Strings(files)
	cases := []valuesCase{{Name: "default"}}
	for _, f := range files {
		v, err := chartrender.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, valuesCase{Name: strings.TrimSuffix(filepath.Base(f), "-values.yaml"), Path: f, Vals: v})
	}
	return append(cases, readmeCase(t))
}

// readmeValues is the values file of the chart README's install walkthrough.
var readmeValues = regexp.MustCompile("(?s)`my-values\\.yaml`:\n\n```yaml\n(.*?)```")

// readmeCase is the walkthrough's my-values.yaml, taken from the chart README, so the values
// it tells an operator to install with are rendered, linted and installed like the ci files.
func readmeCase(t *testing.T) valuesCase {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(chartDir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := readmeValues.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("%s/README.md: no `my-values.yaml` block (```yaml) in the install walkthrough", chartDir())
	}
	f := filepath.Join(t.TempDir(), "readme-values.yaml")
	if err := os.WriteFile(f, m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := chartrender.ReadValuesFile(f)
	if err != nil {
		t.Fatalf("README my-values.yaml: %v", err)
	}
	return valuesCase{Name: "readme", Path: f, Vals: v}
}

var (
	loadOnce  sync.Once
	loadedCh  *chart.Chart
	loadedCRD *crdvalidate.Set
	loadErr   error
)

func loadChart(t testing.TB) (*chart.Chart, *crdvalidate.Set) {
	t.Helper()
	loadOnce.Do(func() {
		loadedCh, loadErr = chartrender.Load(chartDir())
		if loadErr == nil {
			loadedCRD, loadErr = crdvalidate.LoadDir(crdDir)
		}
	})
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return loadedCh, loadedCRD
}

const testNamespace = "wakepush"

func renderOpts(name string) chartrender.Options {
	return chartrender.Options{ReleaseName: releaseName(name), Namespace: testNamespace, APIVersions: extraAPIVersions}
}

// releaseName is a DNS label from a case name ("full-production" → "wp-full-production").
func releaseName(name string) string {
	n := "wp-" + regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(name), "-")
	if len(n) > 30 {
		n = strings.TrimRight(n[:30], "-")
	}
	return n
}

// render renders and strictly decodes one case; it fails t on any error.
func render(t *testing.T, c valuesCase) (*release.Release, []chartrender.Object) {
	t.Helper()
	ch, crds := loadChart(t)
	rel, err := chartrender.Render(ch, c.Vals, renderOpts(c.Name))
	if defaultsRequire(c, err) {
		t.Skipf("the defaults alone do not render, as intended: %v", err)
	}
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs, err := chartrender.NewDecoder(crds).DecodeAll(context.Background(), rel)
	if err != nil {
		t.Fatalf("strict decode:\n%v", err)
	}
	if len(objs) == 0 {
		t.Fatal("the chart rendered no objects")
	}
	return rel, objs
}

// funcPostRenderer is a postrenderer.PostRenderer from a function.
type funcPostRenderer func(string) string

func (f funcPostRenderer) Run(in *bytes.Buffer) (*bytes.Buffer, error) {
	return bytes.NewBufferString(f(in.String())), nil
}
