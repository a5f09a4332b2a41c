package caddymodule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/internal/httptoken"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/throttle"
)

// checkConfig is the one validation of a Handler's configuration, whether
// it came from the Caddyfile or from JSON: every rule that needs no I/O,
// each error naming the field. The rules are their owners': the route
// table policy's (with scopes and credential kinds from grant and methods
// from httptoken), algorithms and JWT options jwtauth's, the throttle
// throttle's, the header prefix identity's. Provision runs it first; the
// Caddyfile parser only parses.
func (h *Handler) checkConfig() error {
	if _, err := h.compilePolicy(); err != nil {
		return err
	}
	if h.Verify != nil {
		return errVerifyGone
	}
	if strings.ContainsAny(h.Realm, "\"\\\r\n") {
		return errors.New("realm: must not contain quotes, backslashes or line breaks")
	}
	if _, err := identity.NewHeaders(h.HeaderPrefix, nil); err != nil {
		return fmt.Errorf("header_prefix: %w", err)
	}
	if err := h.Keys.check(); err != nil {
		return err
	}
	if c := h.Cache; c != nil {
		for _, f := range []struct {
			name string
			neg  bool
		}{{"ttl", c.TTL < 0}, {"negative_ttl", c.NegativeTTL < 0}, {"stale_if_error", c.StaleIfError < 0}, {"max_entries", c.MaxEntries < 0}} {
			if f.neg {
				return fmt.Errorf("cache: %s: must not be negative", f.name)
			}
		}
	}
	if h.JWT != nil {
		if l := h.JWT.Leeway; l != nil && *l < 0 {
			return errors.New("jwt: leeway must not be negative (0 allows no clock skew)")
		}
		if err := h.jwtOptions().Check(); err != nil {
			return err // "jwt: …"
		}
	}
	if t := h.Throttle; t != nil && !t.Off {
		cfg := throttle.Config{Failures: t.Failures, Window: time.Duration(t.Window), MaxClients: t.MaxClients}
		if err := cfg.Check(); err != nil {
			return err // "throttle: …"
		}
	}
	if si := h.SignedIdentity; si != nil && len(si.Keys) == 0 {
		return errors.New("signed_identity: at least one key is required")
	}
	return nil
}

// check checks the keys block: exactly one store, its numbers not negative.
func (k *KeysConfig) check() error {
	switch {
	case k == nil || (k.File == "" && k.Postgres == nil):
		return errors.New("keys: a key store is required (keys file <path> or keys postgres <dsn>)")
	case k.File != "" && k.Postgres != nil:
		return errors.New("keys: configure one key store, file or postgres")
	}
	if pg := k.Postgres; pg != nil {
		switch {
		case pg.MaxConns < 0:
			return errors.New("keys: postgres: max_conns: must not be negative")
		case pg.QueryTimeout < 0:
			return errors.New("keys: postgres: query_timeout: must not be negative")
		case pg.Poll < 0:
			return errors.New("keys: postgres: poll: must not be negative")
		}
	}
	return nil
}

// routeConfigError is a mistake in routes[index] found before the route
// table is compiled.
type routeConfigError struct {
	index int
	err   error
}

func (e *routeConfigError) Error() string { return e.err.Error() }
func (e *routeConfigError) Unwrap() error { return e.err }

// compilePolicy compiles the routes and default into the route table.
func (h *Handler) compilePolicy() (*policy.Policy, error) {
	routes, def, err := h.policySpec()
	if err != nil {
		return nil, err
	}
	p, err := policy.New(routes, def)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return p, nil
}

// policySpec translates the JSON routes into policy specs, naming the route
// and field of any mistake.
func (h *Handler) policySpec() ([]policy.RouteSpec, policy.Default, error) {
	var def policy.Default
	switch h.Default {
	case "", "deny":
		def = policy.DefaultDeny
	case "authenticated":
		def = policy.DefaultAuthenticated
	default:
		return nil, 0, fmt.Errorf("default: %q is not deny or authenticated", h.Default)
	}
	specs := make([]policy.RouteSpec, 0, len(h.Routes))
	for i, rc := range h.Routes {
		where := fmt.Sprintf("routes[%d] (%s %s)", i, rc.Method, rc.Path)
		fail := func(format string, args ...any) ([]policy.RouteSpec, policy.Default, error) {
			return nil, 0, &routeConfigError{i, fmt.Errorf("%s: "+format, append([]any{where}, args...)...)}
		}
		spec := policy.RouteSpec{Method: rc.Method, Path: rc.Path, ProjectTokens: rc.ProjectTokens}
		switch {
		case rc.Public && rc.Authenticated:
			return fail("public and authenticated are exclusive")
		case rc.Public:
			spec.Access = policy.AccessPublic
		case rc.Authenticated:
			spec.Access = policy.AccessAuthenticated
		default:
			spec.Access = policy.AccessScopes
		}
		for _, s := range rc.Scopes {
			bit, ok := grant.ParseScope(s)
			if !ok {
				return fail("unknown scope %q (want read, deploy, delete or admin)", s)
			}
			spec.Scopes |= bit
		}
		for _, v := range rc.Via {
			k, ok := grant.ParseKind(v)
			if !ok {
				return fail("via: unknown credential kind %q (want api_key or jwt)", v)
			}
			spec.Via = spec.Via.With(k)
		}
		if rc.Method != "" && rc.Method != "*" && !httptoken.Valid(rc.Method) {
			return fail("method %q is not an HTTP method token", rc.Method)
		}
		specs = append(specs, spec)
	}
	return specs, def, nil
}
