package monitoring_test

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// The dashboard JSON as far as the tests read it.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Query    any    `json:"query"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []grafanaTarget `json:"targets"`
}

type grafanaTarget struct {
	RefID      string `json:"refId"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Expr      string `json:"expr"`   // Prometheus
	RawSQL    string `json:"rawSql"` // ClickHouse
	Format    *int   `json:"format"`
	QueryType string `json:"queryType"`
}

var variableRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// usedVariables lists the dashboard variables a query refers to (not Grafana's $__ builtins
// or the plugins' $__ macros).
func usedVariables(q string) []string {
	var out []string
	for _, m := range variableRef.FindAllStringSubmatch(q, -1) {
		name := m[1] + m[2]
		if !strings.HasPrefix(name, "__") {
			out = append(out, name)
		}
	}
	return out
}

// interpolate replaces dashboard variables the way Grafana's template service does before a
// query goes to its data source: $var and ${var} (multi-value: Prometheus regex alternation or
// the variable's custom all value) and ${var:singlequote} ('a','b', quotes escaped), and the
// interval builtins $__interval, $__rate_interval and $__range.
func interpolate(q string, vars map[string][]string, allValue map[string]string, builtins map[string]string) (string, error) {
	var err error
	out := regexp.MustCompile(`\$__(rate_interval|interval_ms|interval|range)\b`).ReplaceAllStringFunc(q, func(s string) string {
		if v, ok := builtins[s[1:]]; ok {
			return v
		}
		return s
	})
	out = variableRef.ReplaceAllStringFunc(out, func(s string) string {
		m := variableRef.FindStringSubmatch(s)
		name := m[1] + m[2]
		if strings.HasPrefix(name, "__") {
			return s // a data source macro, expanded by the plugin
		}
		values, ok := vars[name]
		if !ok {
			err = fmt.Errorf("undefined variable %s", s)
			return s
		}
		switch {
		case strings.HasSuffix(s, ":singlequote}"):
			quoted := make([]string, len(values))
			for i, v := range values {
				quoted[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
			}
			return strings.Join(quoted, ",")
		case allValue[name] != "":
			return allValue[name]
		case len(values) == 1:
			return values[0]
		default:
			escaped := make([]string, len(values))
			for i, v := range values {
				escaped[i] = regexp.QuoteMeta(v)
			}
			return "(" + strings.Join(escaped, "|") + ")"
		}
	})
	return out, err
}

// rateInterval is Grafana's $__rate_interval: max($__interval + scrape interval, 4 × scrape
// interval).
func rateInterval(interval, scrape time.Duration) time.Duration {
	return max(interval+scrape, 4*scrape)
}

// clickHouseMacros expands the grafana-clickhouse-datasource plugin's macros (its
// pkg/macros: $__timeFilter, $__timeFilter_ms, $__dateFilter, $__fromTime(_ms), $__toTime(_ms),
// $__timeInterval(_ms), $__interval_s) for the time range [from, to] and the panel interval, as
// its backend does before sending the SQL to ClickHouse. A macro it does not know is an error
// (ClickHouse would see "$__…" and fail).
func clickHouseMacros(sql string, from, to time.Time, interval time.Duration) (string, error) {
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	dt64 := func(t time.Time) string { return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	seconds := int(math.Max(interval.Seconds(), 1))
	ms := int(math.Max(float64(interval.Milliseconds()), 1))
	macros := map[string]func(args []string) (string, error){
		"timeFilter": func(a []string) (string, error) {
			return fmt.Sprintf("%s >= %s AND %s <= %s", a[0], dt(from), a[0], dt(to)), nil
		},
		"timeFilter_ms": func(a []string) (string, error) {
			return fmt.Sprintf("%s >= %s AND %s <= %s", a[0], dt64(from), a[0], dt64(to)), nil
		},
		"dateFilter": func(a []string) (string, error) {
			return fmt.Sprintf("%s >= %s AND %s <= %s", a[0], date(from), a[0], date(to)), nil
		},
		"timeInterval": func(a []string) (string, error) {
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", a[0], seconds), nil
		},
		"timeInterval_ms": func(a []string) (string, error) {
			return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", a[0], ms), nil
		},
		"fromTime":    func([]string) (string, error) { return dt(from), nil },
		"toTime":      func([]string) (string, error) { return dt(to), nil },
		"fromTime_ms": func([]string) (string, error) { return dt64(from), nil },
		"toTime_ms":   func([]string) (string, error) { return dt64(to), nil },
		"interval_s":  func([]string) (string, error) { return fmt.Sprint(seconds), nil },
	}
	oneArg := map[string]bool{"timeFilter": true, "timeFilter_ms": true, "dateFilter": true, "timeInterval": true, "timeInterval_ms": true}
	var err error
	re := regexp.MustCompile(`\$__([A-Za-z_]+)(\(([^()]*)\))?`)
	out := re.ReplaceAllStringFunc(sql, func(s string) string {
		m := re.FindStringSubmatch(s)
		name, hasArgs, rawArgs := m[1], m[2] != "", m[3]
		f, ok := macros[name]
		if !ok {
			err = fmt.Errorf("unknown macro $__%s", name)
			return s
		}
		var args []string
		if hasArgs && strings.TrimSpace(rawArgs) != "" {
			for _, a := range strings.Split(rawArgs, ",") {
				args = append(args, strings.TrimSpace(a))
			}
		}
		if oneArg[name] != (len(args) == 1) {
			err = fmt.Errorf("$__%s: %d arguments", name, len(args))
			return s
		}
		v, ferr := f(args)
		if ferr != nil {
			err = ferr
		}
		return v
	})
	return out, err
}
