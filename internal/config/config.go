// Package config reads service settings from flags and environment
// variables: every setting is both (docs/contract.md §4). A flag given on the
// command line wins over the environment, which wins over the default.
package config

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Set registers settings on a flag.FlagSet, each bound to an environment
// variable.
type Set struct {
	fs  *flag.FlagSet
	env map[string]string // flag name -> env var
}

// New returns a Set for the named command.
func New(name string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &Set{fs: fs, env: map[string]string{}}
}

// FlagSet exposes the underlying flags (for usage output).
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// String registers a string setting.
func (s *Set) String(p *string, name, env, def, usage string) {
	s.fs.StringVar(p, name, def, usage+" (env "+env+")")
	s.env[name] = env
}

// Int registers an int setting.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	s.fs.IntVar(p, name, def, usage+" (env "+env+")")
	s.env[name] = env
}

// Duration registers a duration setting ("250ms", "2m").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	s.fs.DurationVar(p, name, def, usage+" (env "+env+")")
	s.env[name] = env
}

// Bool registers a boolean setting.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	s.fs.BoolVar(p, name, def, usage+" (env "+env+")")
	s.env[name] = env
}

// Parse applies environment variables, then the command-line args. An
// environment value that does not parse is an error naming the variable.
func (s *Set) Parse(args []string) error {
	var err error
	s.fs.VisitAll(func(f *flag.Flag) {
		env := s.env[f.Name]
		if v, ok := os.LookupEnv(env); ok && v != "" && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return s.fs.Parse(args)
}

// Getenv returns the environment variable or def.
func Getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// GetenvInt returns the environment variable as an int, or def.
func GetenvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
