package clickhouse

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Analyst queries: queries/<name>.sql, each starting with a comment that says what it answers
// and which ClickHouse query parameters ({name:Type}) it takes. They name tables without a
// database: run them with the wakepush database as the session's database
// (clickhouse client --database wakepush --param_from=… --queries-file queries/x.sql).
//
// The header declares every parameter on a line of its own, with its default:
//
//	-- Parameters (any note):
//	--   {from:DateTime64(3)} = now-1h   meaning …
//	--     (more indented lines continue the meaning)
//	--   {app:String} = ''               only this app; '' for all
//
// Defaults: a number, a pair of apostrophes (the empty string), any other literal, or for DateTime64 parameters
// "now", "now-<duration>" or "now+<duration>" (Go durations: 90s, 15m, 1h). ParseQuery checks
// that the declared parameters are exactly the ones the text uses, with the same types; the
// package's tests hold every shipped query to that, so every query runs with no parameters.
//
//go:embed queries/*.sql
var queryFS embed.FS

// Queries returns the names of the analyst queries (file names without .sql), sorted.
func Queries() []string {
	entries, err := fs.ReadDir(queryFS, "queries")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".sql"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Query returns the text of the analyst query name ("latency_quantiles" or
// "latency_quantiles.sql").
func Query(name string) (string, error) {
	name = strings.TrimSuffix(name, ".sql")
	if name == "" || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("no query %q (have %s)", name, strings.Join(Queries(), ", "))
	}
	b, err := queryFS.ReadFile("queries/" + name + ".sql")
	if err != nil {
		return "", fmt.Errorf("no query %q (have %s)", name, strings.Join(Queries(), ", "))
	}
	return string(b), nil
}

// Param is a query parameter as its query's header declares it.
type Param struct {
	Name    string // as in {name:Type}
	Type    string // ClickHouse type: DateTime64(3), UInt32, String, …
	Default string // as written in the header: "now-1h", "3600", "''"
	Doc     string // what it means
}

// QueryDoc is an analyst query with what its header says.
type QueryDoc struct {
	Name    string
	Summary string // the first comment line, without "-- name: "
	Params  []Param
	Text    string
}

// Param returns the parameter name, or false.
func (q QueryDoc) Param(name string) (Param, bool) {
	for _, p := range q.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// ParamNames lists the parameter names in declaration order.
func (q QueryDoc) ParamNames() []string {
	out := make([]string, len(q.Params))
	for i, p := range q.Params {
		out[i] = p.Name
	}
	return out
}

// ErrParam reports a parameter value that is missing, unknown or not of its type.
var ErrParam = errors.New("bad query parameter")

// LoadQuery returns the shipped analyst query name with its parsed header.
func LoadQuery(name string) (QueryDoc, error) {
	text, err := Query(name)
	if err != nil {
		return QueryDoc{}, err
	}
	return ParseQuery(strings.TrimSuffix(name, ".sql"), text)
}

var (
	usedParamRE = regexp.MustCompile(`\{(\w+):([^}]+)\}`)
	declRE      = regexp.MustCompile(`^--\s+\{(\w+):([^}]+)\}\s*=\s*(''|\S+)\s*(.*)$`)
)

// ParseQuery parses the header of an analyst query text (see the package comment) and checks
// that its declared parameters are exactly those the text uses, with the same types, each with a
// default that binds.
func ParseQuery(name, text string) (QueryDoc, error) {
	q := QueryDoc{Name: name, Text: text}
	lines := strings.Split(text, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "-- "+name+":") {
		return q, fmt.Errorf("%w: query %s must start with %q", ErrInvalid, name, "-- "+name+": …")
	}
	q.Summary = strings.TrimSpace(strings.TrimPrefix(lines[0], "-- "+name+":"))
	in := false
	for _, line := range lines[1:] {
		if !strings.HasPrefix(line, "--") {
			break // the header ends at the first line of code
		}
		body := strings.TrimPrefix(line, "--")
		if h := strings.TrimSpace(body); strings.HasPrefix(h, "Parameters") && strings.HasSuffix(h, ":") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if m := declRE.FindStringSubmatch(line); m != nil {
			q.Params = append(q.Params, Param{Name: m[1], Type: m[2], Default: m[3], Doc: strings.TrimSpace(m[4])})
			continue
		}
		// Deeper-indented lines continue the previous parameter's meaning; anything else
		// ("-- Columns: …") ends the list.
		if len(q.Params) > 0 && strings.HasPrefix(body, "     ") && strings.TrimSpace(body) != "" {
			p := &q.Params[len(q.Params)-1]
			p.Doc = strings.TrimSpace(p.Doc + " " + strings.TrimSpace(body))
			continue
		}
		in = false
	}
	var errs []error
	declared := map[string]Param{}
	for _, p := range q.Params {
		if _, dup := declared[p.Name]; dup {
			errs = append(errs, fmt.Errorf("parameter %s declared twice", p.Name))
		}
		declared[p.Name] = p
		if _, err := BindParam(p, p.Default, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("default of %s: %w", p.Name, err))
		}
		if p.Doc == "" {
			errs = append(errs, fmt.Errorf("parameter %s has no description", p.Name))
		}
	}
	used := map[string]bool{}
	for _, m := range usedParamRE.FindAllStringSubmatch(codeOnly(text), -1) {
		used[m[1]] = true
		p, ok := declared[m[1]]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("parameter {%s:%s} is used but not declared in the header", m[1], m[2]))
		case p.Type != m[2]:
			errs = append(errs, fmt.Errorf("parameter %s is declared %s but used as %s", m[1], p.Type, m[2]))
		}
	}
	for _, p := range q.Params {
		if !used[p.Name] {
			errs = append(errs, fmt.Errorf("parameter %s is declared but not used", p.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return q, fmt.Errorf("%w: query %s: %w", ErrInvalid, name, err)
	}
	return q, nil
}

// codeOnly drops "--" comment lines.
func codeOnly(text string) string {
	var sb strings.Builder
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			sb.WriteString(line)
		}
	}
	return sb.String()
}

// Bind returns the ClickHouse parameter values of q: args (name → value as a user types it)
// where given, each parameter's default otherwise, all relative to now. A name that is not a
// parameter is an error, except that NAME=<duration> sets NAME_ms or NAME_s
// (slack=5s sets slack_ms=5000).
func (q QueryDoc) Bind(args map[string]string, now time.Time) (map[string]string, error) {
	given := map[string]string{}
	var errs []error
	for k, v := range args {
		name := k
		if _, ok := q.Param(k); !ok {
			switch {
			case hasParam(q, k+"_ms"):
				name = k + "_ms"
			case hasParam(q, k+"_s"):
				name = k + "_s"
			default:
				errs = append(errs, fmt.Errorf("%w: query %s has no parameter %q (it takes %s)", ErrParam, q.Name, k, strings.Join(q.ParamNames(), ", ")))
				continue
			}
		}
		if _, dup := given[name]; dup {
			errs = append(errs, fmt.Errorf("%w: %s given twice", ErrParam, name))
		}
		given[name] = v
	}
	out := make(map[string]string, len(q.Params))
	for _, p := range q.Params {
		v, ok := given[p.Name]
		if !ok {
			v = p.Default
		}
		b, err := BindParam(p, v, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s=%s: %w", ErrParam, p.Name, v, err))
			continue
		}
		out[p.Name] = b
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func hasParam(q QueryDoc, name string) bool { _, ok := q.Param(name); return ok }

// TimeLayout is how DateTime64(3) parameter values are passed to ClickHouse (UTC).
const TimeLayout = "2006-01-02 15:04:05.000"

// BindParam turns value, as a user or a header default writes it, into the ClickHouse
// parameter value of p:
//   - DateTime…: now, now-1h, now+5m, a duration (1h = an hour before now), RFC 3339
//     (2026-01-02T15:04:05Z, with any offset), or "2006-01-02 15:04:05[.000]" / "2006-01-02" in UTC;
//   - UInt…/Int…: an integer; for names ending in _ms or _s also a duration (5s);
//   - String: the value as is; a pair of apostrophes is the empty string;
//   - other types: the value as is (ClickHouse checks it).
func BindParam(p Param, value string, now time.Time) (string, error) {
	typ := p.Type
	switch {
	case strings.HasPrefix(typ, "DateTime"):
		t, err := ParseTime(value, now)
		if err != nil {
			return "", err
		}
		return t.UTC().Format(TimeLayout), nil
	case strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Int"):
		if unit, ok := durationUnit(p.Name); ok {
			if d, err := time.ParseDuration(value); err == nil {
				if d < 0 && strings.HasPrefix(typ, "UInt") {
					return "", fmt.Errorf("negative duration")
				}
				if d%unit != 0 {
					return "", fmt.Errorf("%s is not a whole number of %s", d, unit)
				}
				return strconv.FormatInt(int64(d/unit), 10), nil
			}
		}
		bits := 64
		if n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(typ, "U"), "Int")); err == nil {
			bits = n
		}
		if strings.HasPrefix(typ, "UInt") {
			n, err := strconv.ParseUint(value, 10, bits)
			if err != nil {
				return "", fmt.Errorf("not a %s", typ)
			}
			return strconv.FormatUint(n, 10), nil
		}
		n, err := strconv.ParseInt(value, 10, bits)
		if err != nil {
			return "", fmt.Errorf("not an %s", typ)
		}
		return strconv.FormatInt(n, 10), nil
	case typ == "String":
		if value == "''" {
			return "", nil
		}
		return value, nil
	}
	return value, nil
}

func durationUnit(name string) (time.Duration, bool) {
	switch {
	case strings.HasSuffix(name, "_ms"):
		return time.Millisecond, true
	case strings.HasSuffix(name, "_s"):
		return time.Second, true
	}
	return 0, false
}

// ParseTime parses a time as BindParam accepts it for DateTime parameters.
func ParseTime(value string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(value)
	if v == "now" {
		return now, nil
	}
	if rest, ok := strings.CutPrefix(v, "now"); ok && (strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+")) {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want now, now-<duration> or now+<duration>", value)
		}
		return now.Add(d), nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration means that long before now; give it without a sign", value)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{TimeLayout, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration before now (1h), now, now-1h, RFC 3339 (2026-01-02T15:04:05Z) or 2026-01-02 15:04:05 (UTC)", value)
}
