// Package config reads a service's settings from flags and environment variables (12-factor),
// so `FOO=1 svc` and `svc -foo=1` mean the same and flags win.
//
// Secrets are a kind of their own (Secret): read only from an environment variable or from the
// file another variable names (VAR_FILE, the Kubernetes-secret convention), never from a flag
// (flags show in `ps`), and never shown. `-h` shows only built-in defaults, never a value taken
// from the environment, so it cannot echo a secret however a setting is classified.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set collects settings for one service.
type Set struct {
	fs      *flag.FlagSet
	errs    []error
	secrets []secret
}

// secret is a registered secret setting, for the usage text.
type secret struct {
	p               *string
	env, def, usage string
	set             bool // from the environment or a file, not the default
}

// New returns an empty Set for the named program.
func New(program string) *Set {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	s := &Set{fs: fs}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s (every flag can also be set by the environment variable shown; flags win;\n"+
			"defaults shown are the built-in ones, values from the environment are never shown):\n", program)
		fs.PrintDefaults()
		s.printSecrets(fs.Output())
	}
	return s
}

func (s *Set) env(env string) (string, bool) {
	v, ok := os.LookupEnv(env)
	return v, ok && v != ""
}

func usage(u, env string) string { return fmt.Sprintf("%s (env %s)", u, env) }

// String registers a string setting.
func (s *Set) String(p *string, name, env, def, u string) {
	s.fs.StringVar(p, name, def, usage(u, env))
	if v, ok := s.env(env); ok {
		*p = v
	}
}

// Strings registers a comma-separated list setting.
func (s *Set) Strings(p *[]string, name, env, def, u string) {
	*p = SplitList(def)
	if v, ok := s.env(env); ok {
		*p = SplitList(v)
	}
	s.fs.Func(name, usage(u, env)+fmt.Sprintf(" (default %q)", def), func(v string) error {
		*p = SplitList(v)
		return nil
	})
}

// Int registers an integer setting.
func (s *Set) Int(p *int, name, env string, def int, u string) {
	s.fs.IntVar(p, name, def, usage(u, env))
	if v, ok := s.env(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not an integer", env, v))
		} else {
			*p = n
		}
	}
}

// Bool registers a boolean setting.
func (s *Set) Bool(p *bool, name, env string, def bool, u string) {
	s.fs.BoolVar(p, name, def, usage(u, env))
	if v, ok := s.env(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a boolean", env, v))
		} else {
			*p = b
		}
	}
}

// Duration registers a duration setting ("250ms", "5s").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, u string) {
	s.fs.DurationVar(p, name, def, usage(u, env))
	if v, ok := s.env(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a duration (e.g. 250ms, 5s)", env, v))
		} else {
			*p = d
		}
	}
}

// FileSuffix names the variable that points at a file holding a secret: WAKEPUSH_X_FILE for
// WAKEPUSH_X.
const FileSuffix = "_FILE"

// Secret registers a secret setting: its value comes from the environment variable env or from
// the file named by env+"_FILE" (one trailing newline removed), else def (a built-in default,
// which is not secret). It has no flag, `-h` shows where it comes from but never its value, and
// errors about it never contain the value.
func (s *Set) Secret(p *string, env, def, u string) {
	*p = def
	sec := secret{p: p, env: env, def: def, usage: u}
	v, fromEnv := s.env(env)
	path, fromFile := s.env(env + FileSuffix)
	switch {
	case fromEnv && fromFile:
		s.errs = append(s.errs, fmt.Errorf("set %s or %s%s, not both", env, env, FileSuffix))
	case fromEnv:
		*p, sec.set = v, true
	case fromFile:
		b, err := os.ReadFile(path)
		if err != nil {
			// os errors name the path, never the content.
			s.errs = append(s.errs, fmt.Errorf("%s%s: %w", env, FileSuffix, err))
			break
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		*p, sec.set = v, true
	}
	s.secrets = append(s.secrets, sec)
}

// SecretValues returns the values of the secrets set from the environment or a file, and the
// parts of list-shaped ones (`name=secret,…`, `name:secret,…`): the logger redacts them
// wherever they would appear. Call it after Parse.
func (s *Set) SecretValues() []string {
	var out []string
	for _, sec := range s.secrets {
		if !sec.set || *sec.p == "" {
			continue
		}
		out = append(out, *sec.p)
		for _, item := range SplitList(*sec.p) {
			out = append(out, item)
			if i := strings.IndexAny(item, "=:"); i >= 0 && i+1 < len(item) {
				out = append(out, item[i+1:])
			}
		}
	}
	return out
}

func (s *Set) printSecrets(w io.Writer) {
	if len(s.secrets) == 0 {
		return
	}
	fmt.Fprintln(w, "Secrets (environment or file only, never flags; values are never shown):")
	for _, sec := range s.secrets {
		fmt.Fprintf(w, "  %s\n    \t%s (secret: set via %s or %s%s)", sec.env, sec.usage, sec.env, sec.env, FileSuffix)
		if sec.def != "" {
			fmt.Fprintf(w, " (default %q)", sec.def)
		}
		fmt.Fprintln(w)
	}
}

// Parse parses args (without the program name) and reports every malformed environment variable
// and flag at once.
func (s *Set) Parse(args []string) error {
	if err := s.fs.Parse(args); err != nil {
		s.errs = append(s.errs, err)
	}
	if s.fs.NArg() > 0 {
		s.errs = append(s.errs, fmt.Errorf("unexpected arguments: %q", s.fs.Args()))
	}
	return errors.Join(s.errs...)
}

// SplitList splits a comma-separated list, trimming spaces and dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Check collects validation failures: `c.Require(cond, "msg")` for each rule, then `c.Err()`.
type Check struct{ errs []error }

// Require records msg (formatted) as an error when ok is false.
func (c *Check) Require(ok bool, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

// Add records err when it is not nil.
func (c *Check) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// Err returns all recorded failures joined, or nil.
func (c *Check) Err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(c.errs...))
}
