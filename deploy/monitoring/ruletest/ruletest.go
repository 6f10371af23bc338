// Package ruletest runs Prometheus alert rule unit tests written in the `promtool test rules`
// file format with Prometheus's own rules engine (github.com/prometheus/prometheus/rules) and
// series loader (promql/promqltest), in-process: no promtool binary to build (~the whole
// Prometheus server's dependency tree) and nothing to install.
//
// Supported from the promtool format: rule_files (relative to the test file), evaluation_interval,
// group_eval_order, and per test interval, input_series, alert_rule_test (eval_time,
// alertname, exp_alerts with exp_labels and exp_annotations) and promql_expr_test. As with
// promtool, an expected alert lists all its labels (besides alertname) and all its
// annotations, and alerts are compared at the evaluation at or just before eval_time.
package ruletest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"gopkg.in/yaml.v3"
)

// File is a promtool rule test file.
type File struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []Test         `yaml:"tests"`
}

// Test is one test group: input series and expectations.
type Test struct {
	Name           string          `yaml:"name"`
	Interval       model.Duration  `yaml:"interval"`
	InputSeries    []Series        `yaml:"input_series"`
	AlertRuleTests []AlertRuleTest `yaml:"alert_rule_test"`
	PromQLTests    []PromQLTest    `yaml:"promql_expr_test"`
	ExternalLabels labels.Labels   `yaml:"external_labels"`
	ExternalURL    string          `yaml:"external_url"`
}

// Series is an input series in promqltest's expanding notation ("0+10x20").
type Series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// AlertRuleTest expects the firing alerts of one alert at one time.
type AlertRuleTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []Alert        `yaml:"exp_alerts"`
}

// Alert is an expected firing alert.
type Alert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// PromQLTest expects the result of an expression at one time.
type PromQLTest struct {
	Expr       string         `yaml:"expr"`
	EvalTime   model.Duration `yaml:"eval_time"`
	ExpSamples []struct {
		Labels string  `yaml:"labels"`
		Value  float64 `yaml:"value"`
	} `yaml:"exp_samples"`
}

// Load reads and strictly decodes a test file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	for i, rf := range f.RuleFiles {
		if !filepath.IsAbs(rf) {
			f.RuleFiles[i] = filepath.Join(filepath.Dir(path), rf)
		}
	}
	return &f, nil
}

// Run runs test t of f and returns every mismatch (nil: passed). fired reports the alerts
// that fired at each checked time, for callers that check coverage.
func (f *File) Run(t Test, fired func(alertname string, n int)) []error {
	interval := t.Interval
	if interval == 0 {
		interval = f.EvaluationInterval
	}
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", time.Duration(interval))
	for _, s := range t.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	p := parser.NewParser(parser.Options{})
	ll, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: p,
	})
	if err != nil {
		return []error{fmt.Errorf("input series: %w", err)}
	}
	defer ll.Close()
	evalInterval := time.Duration(f.EvaluationInterval)
	ll.SubqueryInterval = evalInterval

	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(ll.QueryEngine(), ll.Storage()),
		AppendableV2: ll.Storage(),
		Queryable:    ll.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Logger:       slog.New(slog.DiscardHandler),
		Parser:       p,
	})
	groupsByName, errs := m.LoadGroups(evalInterval, t.ExternalLabels, t.ExternalURL, nil, false, f.RuleFiles...)
	if errs != nil {
		return errs
	}
	order := map[string]int{}
	for i, g := range f.GroupEvalOrder {
		order[g] = i
	}
	groups := make([]*rules.Group, 0, len(groupsByName))
	for _, g := range groupsByName {
		groups = append(groups, g)
	}
	sort.SliceStable(groups, func(i, j int) bool {
		oi, iok := order[groups[i].Name()]
		oj, jok := order[groups[j].Name()]
		if iok && jok {
			return oi < oj
		}
		if iok != jok {
			return iok
		}
		return groups[i].Name() < groups[j].Name()
	})
	known := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				ar.SetRestored(true) // as promtool: the ALERTS series exist from the first evaluation
				known[ar.Name()] = true
			}
		}
	}

	checks := map[time.Duration][]AlertRuleTest{}
	var last time.Duration
	for _, a := range t.AlertRuleTests {
		if a.Alertname == "" || !known[a.Alertname] {
			return []error{fmt.Errorf("alert_rule_test at %s: no alert named %q in the rule files", a.EvalTime, a.Alertname)}
		}
		checks[time.Duration(a.EvalTime)] = append(checks[time.Duration(a.EvalTime)], a)
		last = max(last, time.Duration(a.EvalTime))
	}
	for _, q := range t.PromQLTests {
		last = max(last, time.Duration(q.EvalTime))
	}
	times := slices.Sorted(func(yield func(time.Duration) bool) {
		for d := range checks {
			if !yield(d) {
				return
			}
		}
	})

	start := time.Unix(0, 0).UTC()
	var failures []error
	next := 0
	for ts := start; !ts.After(start.Add(last)); ts = ts.Add(evalInterval) {
		var evalErrs []error
		ll.WithSamplesTill(ts, func(err error) {
			if err != nil {
				evalErrs = append(evalErrs, err)
				return
			}
			for _, g := range groups {
				g.Eval(ll.Context(), ts)
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						evalErrs = append(evalErrs, fmt.Errorf("rule %s at %s: %w", r.Name(), ts.Sub(start), err))
					}
				}
			}
		})
		if len(evalErrs) > 0 {
			return append(failures, evalErrs...)
		}
		// The checks whose eval_time falls in [ts, ts+interval).
		for next < len(times) && times[next] < ts.Add(evalInterval).Sub(start) {
			at := times[next]
			next++
			for _, c := range checks[at] {
				got := firing(groups, c.Alertname)
				if fired != nil {
					fired(c.Alertname, len(got))
				}
				want := make([]string, 0, len(c.ExpAlerts))
				for _, a := range c.ExpAlerts {
					lb := labels.NewBuilder(labels.FromMap(a.ExpLabels))
					lb.Set(labels.AlertName, c.Alertname)
					want = append(want, describe(lb.Labels(), labels.FromMap(a.ExpAnnotations)))
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					failures = append(failures, fmt.Errorf("%s at %s:\n  want %d alert(s):\n    %s\n  got %d:\n    %s",
						c.Alertname, at, len(want), strings.Join(want, "\n    "), len(got), strings.Join(got, "\n    ")))
				}
			}
		}
	}
	for _, q := range t.PromQLTests {
		if err := f.checkExpr(ll, start, q); err != nil {
			failures = append(failures, err)
		}
	}
	return failures
}

// firing describes the firing alerts of alertname, sorted.
func firing(groups []*rules.Group, alertname string) []string {
	var out []string
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*rules.AlertingRule)
			if !ok || ar.Name() != alertname {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, describe(a.Labels, a.Annotations))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func describe(lbls, annotations labels.Labels) string {
	return lbls.String() + " " + annotations.String()
}

func (f *File) checkExpr(ll *promqltest.LazyLoader, start time.Time, q PromQLTest) error {
	ts := start.Add(time.Duration(q.EvalTime))
	var res promql.Vector
	var qerr error
	ll.WithSamplesTill(ts, func(err error) {
		if err != nil {
			qerr = err
			return
		}
		qry, err := ll.QueryEngine().NewInstantQuery(ll.Context(), ll.Queryable(), nil, q.Expr, ts)
		if err != nil {
			qerr = err
			return
		}
		defer qry.Close()
		r := qry.Exec(ll.Context())
		if r.Err != nil {
			qerr = r.Err
			return
		}
		switch v := r.Value.(type) {
		case promql.Vector:
			res = v
		case promql.Scalar:
			res = promql.Vector{{T: v.T, F: v.V}}
		default:
			qerr = fmt.Errorf("result of type %s", r.Value.Type())
		}
	})
	if qerr != nil {
		return fmt.Errorf("expr %q at %s: %w", q.Expr, q.EvalTime, qerr)
	}
	var got, want []string
	for _, s := range res {
		got = append(got, fmt.Sprintf("%s %g", s.Metric, s.F))
	}
	p := parser.NewParser(parser.Options{})
	for _, s := range q.ExpSamples {
		lb := labels.EmptyLabels()
		if s.Labels != "" {
			m, err := p.ParseMetric(s.Labels)
			if err != nil {
				return fmt.Errorf("expr %q: exp_samples labels %q: %w", q.Expr, s.Labels, err)
			}
			lb = m
		}
		want = append(want, fmt.Sprintf("%s %g", lb, s.Value))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || slices.ContainsFunc(res, func(s promql.Sample) bool { return math.IsNaN(s.F) }) {
		return fmt.Errorf("expr %q at %s:\n  want %v\n  got  %v", q.Expr, q.EvalTime, want, got)
	}
	return nil
}
