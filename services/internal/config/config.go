// Package config reads a service's settings from flags whose defaults come from environment
// variables (12-factor), so `FOO=1 svc` and `svc -foo=1` mean the same and flags win.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set collects settings for one service.
type Set struct {
	fs   *flag.FlagSet
	errs []error
	envs []string
}

// New returns an empty Set for the named program.
func New(program string) *Set {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	s := &Set{fs: fs}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s (every flag can also be set by the environment variable shown):\n", program)
		fs.PrintDefaults()
	}
	return s
}

func (s *Set) env(name, env string) (string, bool) {
	s.envs = append(s.envs, env)
	v, ok := os.LookupEnv(env)
	return v, ok && v != ""
}

func usage(u, env string) string { return fmt.Sprintf("%s (env %s)", u, env) }

// String registers a string setting.
func (s *Set) String(p *string, name, env, def, u string) {
	if v, ok := s.env(name, env); ok {
		def = v
	}
	s.fs.StringVar(p, name, def, usage(u, env))
}

// Strings registers a comma-separated list setting.
func (s *Set) Strings(p *[]string, name, env, def, u string) {
	if v, ok := s.env(name, env); ok {
		def = v
	}
	*p = SplitList(def)
	s.fs.Func(name, usage(u, env)+fmt.Sprintf(" (default %q)", def), func(v string) error {
		*p = SplitList(v)
		return nil
	})
}

// Int registers an integer setting.
func (s *Set) Int(p *int, name, env string, def int, u string) {
	if v, ok := s.env(name, env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not an integer", env, v))
		} else {
			def = n
		}
	}
	s.fs.IntVar(p, name, def, usage(u, env))
}

// Bool registers a boolean setting.
func (s *Set) Bool(p *bool, name, env string, def bool, u string) {
	if v, ok := s.env(name, env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a boolean", env, v))
		} else {
			def = b
		}
	}
	s.fs.BoolVar(p, name, def, usage(u, env))
}

// Duration registers a duration setting ("250ms", "5s").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, u string) {
	if v, ok := s.env(name, env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a duration (e.g. 250ms, 5s)", env, v))
		} else {
			def = d
		}
	}
	s.fs.DurationVar(p, name, def, usage(u, env))
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
