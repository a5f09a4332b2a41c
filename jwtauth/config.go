package jwtauth

// Checking a Config: what New refuses before it reads a key, and the
// defaults it fills in.

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Check reports what New would refuse in cfg before it reads a key file or
// fetches the JWKS: the algorithm allowlist, the durations, the types and
// that some key is configured.
func (cfg Config) Check() error {
	v := &Verifier{leeway: cfg.Leeway, maxLifetime: cfg.MaxLifetime, names: cfg.Claims}
	if err := v.configure(&cfg); err != nil {
		return err
	}
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyFiles) == 0 && cfg.JWKSURL == "" && len(cfg.testKeys) == 0 {
		return errNoKeyConfigured
	}
	return nil
}

var errNoKeyConfigured = errors.New("jwt: no key configured (secret, public_key or jwks)")

// configure checks and normalises everything but the keys.
func (v *Verifier) configure(cfg *Config) error {
	if len(cfg.Algorithms) == 0 {
		return errors.New("jwt: alg: an explicit algorithm allowlist is required")
	}
	for _, name := range cfg.Algorithms {
		if isNone(strings.TrimSpace(name)) {
			return errors.New(`jwt: alg: "none" is never accepted`)
		}
		a, ok := parseAlg(name)
		if !ok {
			return fmt.Errorf("jwt: alg: unsupported algorithm %q (want %s or %s)", name,
				strings.Join(algNames[algHS256:algEdDSA], ", "), algNames[algEdDSA])
		}
		v.allow |= setOf(a)
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	case v.leeway > MaxLeeway:
		return fmt.Errorf("jwt: leeway %v is over the maximum of %v", v.leeway, MaxLeeway)
	}
	if v.maxLifetime < 0 {
		return errors.New("jwt: max_lifetime must not be negative")
	}
	if !cfg.TypeOff {
		types := cfg.Types
		if len(types) == 0 {
			types = DefaultTypes
		}
		for _, t := range types {
			if strings.TrimSpace(t) == "" {
				return errors.New("jwt: typ: empty type")
			}
			v.types = append(v.types, strings.TrimSpace(t))
		}
	}
	n := &v.names
	for _, c := range []struct {
		name *string
		def  string
	}{{&n.Subject, "sub"}, {&n.Workspace, "workspace"}, {&n.Project, "project"}, {&n.Scopes, "scope"}} {
		if *c.name == "" {
			*c.name = c.def
		}
	}
	v.claimSlots = claimSlots(v.names)
	if cfg.CacheMaxEntries > 1<<40 {
		return errors.New("jwt: cache max entries too large")
	}
	floor := minJWKSInterval
	if cfg.testNoFloor {
		floor = time.Nanosecond
	}
	for _, d := range []struct {
		name string
		val  *time.Duration
		def  time.Duration
	}{{"jwks refresh", &cfg.JWKSRefresh, DefaultJWKSRefresh}, {"jwks minimum refetch interval", &cfg.JWKSMinRefetch, DefaultJWKSMinRefetch}} {
		switch {
		case *d.val == 0:
			*d.val = d.def
		case *d.val < floor:
			return fmt.Errorf("jwt: %s must be at least %v", d.name, floor)
		}
	}
	return nil
}
