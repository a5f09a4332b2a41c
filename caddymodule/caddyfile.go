package caddymodule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/deplo-sh/deplo-auth/policy"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("deplo_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("deplo_auth", httpcaddyfile.After, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from a deplo_auth block. The
// directive's grammar, options and defaults are documented once, in
// docs/reference.md ("The `deplo_auth` directive"); each option's JSON twin is
// the Handler field of the same name.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var routeLines []string
	for d.NextBlock(0) {
		if err := h.parseOption(d, "deplo_auth", &routeLines); err != nil {
			return err
		}
	}
	return h.checkRoutes(routeLines)
}

// The options of each block, as an unknown one's error lists them; a test
// parses each, so a list that misses an option (or names a gone one) fails.
var (
	handlerOptions = []string{"keys", "cache", "route", "default", "jwt", "realm", "header_prefix",
		"forward_authorization", "checksum", "preflight", "signed_identity", "throttle"}
	postgresOptions       = []string{"lookup_query", "max_conns", "listen_dsn", "query_timeout", "poll", "record_last_used", "migrate"}
	cacheOptions          = []string{"ttl", "negative_ttl", "max_entries", "stale_if_error"}
	jwtOptions            = []string{"issuer", "audience", "alg", "secret", "public_key", "jwks", "leeway", "max_lifetime", "typ", "claims"}
	signedIdentityOptions = []string{"key"}
)

// unrecognized is the error for an unknown option of what (a block's name),
// listing the valid ones.
func unrecognized(d *caddyfile.Dispenser, what, name string, valid []string) error {
	return d.Errf("unrecognized %s subdirective %q (want one of: %s)", what, name, strings.Join(valid, ", "))
}

// parseOption reads the option at d (one line or block of a deplo_auth or
// deplo_auth_sidecar block, named block in errors); routeLines collects
// where each route was written.
func (h *Handler) parseOption(d *caddyfile.Dispenser, block string, routeLines *[]string) error {
	switch d.Val() {
	case "keys":
		if err := h.parseKeys(d); err != nil {
			return err
		}
	case "cache":
		if err := h.parseCache(d); err != nil {
			return err
		}
	case "realm":
		if !d.AllArgs(&h.Realm) {
			return d.ArgErr()
		}
	case "header_prefix":
		if !d.AllArgs(&h.HeaderPrefix) {
			return d.ArgErr()
		}
	case "forward_authorization":
		if d.NextArg() {
			return d.ArgErr()
		}
		h.ForwardAuthorization = true
	case "checksum":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		switch v {
		case "off":
			h.DisableChecksum = true
		case "on":
			h.DisableChecksum = false
		default:
			return d.Errf("checksum: want on or off, got %q", v)
		}
	case "preflight":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		switch v {
		case "public":
			h.PreflightPublic = true
		case "authenticated":
			h.PreflightPublic = false
		default:
			return d.Errf("preflight: want public or authenticated, got %q", v)
		}
	case "jwt":
		if err := h.parseJWT(d); err != nil {
			return err
		}
	case "signed_identity":
		if d.NextArg() {
			return d.ArgErr()
		}
		si := &SignedIdentityConfig{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "key":
				var id, secret string
				if !d.AllArgs(&id, &secret) {
					return d.Err("signed_identity key: want <id> <secret>")
				}
				si.Keys = append(si.Keys, SigningKey{ID: id, Secret: secret})
			default:
				return unrecognized(d, "signed_identity", d.Val(), signedIdentityOptions)
			}
		}
		h.SignedIdentity = si
	case "throttle":
		args := d.RemainingArgs()
		switch {
		case len(args) == 1 && args[0] == "off":
			h.Throttle = &ThrottleConfig{Off: true}
		case len(args) == 2:
			n, err := setInt(d, "throttle failures", args[0], strconv.IntSize)
			if err != nil {
				return err
			}
			win, err := setDuration(d, "throttle window", args[1])
			if err != nil {
				return err
			}
			h.Throttle = &ThrottleConfig{Failures: int(n), Window: win}
		default:
			return d.Err("throttle: want <failures> <window> or off")
		}
	case "verify":
		return d.Err("verify: the in-site verify form is gone; answer other proxies with the deplo_auth_sidecar global option (docs/reference.md)")
	case "route":
		where := d.File() + ":" + strconv.Itoa(d.Line())
		rc, err := parseRoute(d)
		if err != nil {
			return err
		}
		h.Routes = append(h.Routes, rc)
		*routeLines = append(*routeLines, where)
	case "default":
		if !d.AllArgs(&h.Default) {
			return d.ArgErr()
		}
	default:
		valid := handlerOptions
		if block == "deplo_auth_sidecar" {
			valid = append(slices.Clone(sidecarOptions), handlerOptions...)
		}
		return unrecognized(d, block, d.Val(), valid)
	}
	return nil
}

// checkRoutes reports a mistake in a route with its Caddyfile line.
// Provision validates; the routes are checked by the same code now as well,
// only so that the line can be named. Every other mistake is left to
// Provision.
func (h *Handler) checkRoutes(routeLines []string) error {
	_, err := h.compilePolicy()
	var re *policy.RouteError
	var rc *routeConfigError
	switch {
	case errors.As(err, &re) && re.Index < len(routeLines):
		return fmt.Errorf("%s: deplo_auth %w", routeLines[re.Index], re)
	case errors.As(err, &rc) && rc.index < len(routeLines):
		return fmt.Errorf("%s: deplo_auth %w", routeLines[rc.index], rc)
	}
	return nil
}

func (h *Handler) parseKeys(d *caddyfile.Dispenser) error {
	if h.Keys != nil {
		return d.Err("keys: only one key store may be configured")
	}
	var kind, arg string
	if !d.Args(&kind, &arg) || d.CountRemainingArgs() > 0 {
		return d.ArgErr()
	}
	switch kind {
	case "file":
		h.Keys = &KeysConfig{File: arg}
		if d.NextBlock(d.Nesting()) {
			return d.Errf("keys file takes no block (got %q)", d.Val())
		}
	case "postgres":
		pg := &PostgresConfig{DSN: arg}
		h.Keys = &KeysConfig{Postgres: pg}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch sub := d.Val(); sub {
			case "lookup_query":
				if !d.AllArgs(&pg.LookupQuery) {
					return d.ArgErr()
				}
			case "max_conns":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				n, err := setInt(d, "keys postgres max_conns", v, 32)
				if err != nil {
					return err
				}
				pg.MaxConns = int32(n)
			case "listen_dsn":
				if !d.AllArgs(&pg.ListenDSN) {
					return d.ArgErr()
				}
			case "query_timeout", "poll":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				dur, err := setDuration(d, "keys postgres "+sub, v)
				if err != nil {
					return err
				}
				if sub == "poll" {
					pg.Poll = dur
				} else {
					pg.QueryTimeout = dur
				}
			case "record_last_used", "migrate":
				if d.NextArg() {
					return d.ArgErr()
				}
				if sub == "migrate" {
					pg.Migrate = true
				} else {
					pg.RecordLastUsed = true
				}
			default:
				return unrecognized(d, "keys postgres", sub, postgresOptions)
			}
		}
	default:
		return d.Errf("keys: unknown key store %q (want file or postgres)", kind)
	}
	return nil
}

func (h *Handler) parseCache(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.Cache == nil {
		h.Cache = new(CacheConfig)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		switch sub {
		case "ttl", "negative_ttl", "stale_if_error":
			dur, err := setDuration(d, "cache "+sub, v)
			if err != nil {
				return err
			}
			switch sub {
			case "ttl":
				h.Cache.TTL = dur
			case "negative_ttl":
				h.Cache.NegativeTTL = dur
			default:
				h.Cache.StaleIfError = dur
			}
		case "max_entries":
			n, err := setInt(d, "cache max_entries", v, 64)
			if err != nil {
				return err
			}
			h.Cache.MaxEntries = n
		default:
			return unrecognized(d, "cache", sub, cacheOptions)
		}
	}
	return nil
}

func (h *Handler) parseJWT(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if h.JWT != nil {
		return d.Err("jwt: only one jwt block may be configured")
	}
	j := new(JWTConfig)
	h.JWT = j
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "issuer", "audience", "secret", "jwks":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch sub {
			case "issuer":
				j.Issuer = v
			case "audience":
				j.Audience = v
			case "secret":
				j.Secret = v
			case "jwks":
				j.JWKS = v
			}
		case "alg":
			algs := d.RemainingArgs()
			if len(algs) == 0 {
				return d.ArgErr()
			}
			j.Algorithms = append(j.Algorithms, algs...)
		case "public_key":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			j.PublicKeys = append(j.PublicKeys, v)
		case "leeway", "max_lifetime":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("jwt %s: want a duration, got %q", sub, v)
			}
			if sub == "leeway" {
				l := caddy.Duration(dur)
				j.Leeway = &l
			} else {
				j.MaxLifetime = caddy.Duration(dur)
			}
		case "typ":
			types := d.RemainingArgs()
			if len(types) == 0 {
				return d.ArgErr()
			}
			if len(types) == 1 && types[0] == "off" {
				j.TypeOff = true
			} else {
				j.Types = append(j.Types, types...)
			}
		case "claims":
			if d.NextArg() {
				return d.ArgErr()
			}
			if j.Claims == nil {
				j.Claims = new(ClaimsConfig)
			}
			for n2 := d.Nesting(); d.NextBlock(n2); {
				name := d.Val()
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				switch name {
				case "subject":
					j.Claims.Subject = v
				case "workspace":
					j.Claims.Workspace = v
				case "project":
					j.Claims.Project = v
				case "scopes":
					j.Claims.Scopes = v
				default:
					return d.Errf("unrecognized jwt claims subdirective %q (want subject, workspace, project, scopes)", name)
				}
			}
		default:
			return unrecognized(d, "jwt", sub, jwtOptions)
		}
	}
	return nil
}

func parseRoute(d *caddyfile.Dispenser) (RouteConfig, error) {
	var rc RouteConfig
	args := d.RemainingArgs()
	if len(args) < 3 {
		return rc, d.Err("route: want <METHOD|*> <path-pattern> <scope>...|public|authenticated")
	}
	rc.Method, rc.Path = args[0], args[1]
	if rc.Method == "*" {
		rc.Method = ""
	}
	for _, a := range args[2:] {
		switch a {
		case "public":
			rc.Public = true
		case "authenticated":
			rc.Authenticated = true
		default:
			rc.Scopes = append(rc.Scopes, a)
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "via":
			kinds := d.RemainingArgs()
			if len(kinds) == 0 {
				return rc, d.ArgErr()
			}
			rc.Via = append(rc.Via, kinds...)
		case "project_tokens":
			if d.NextArg() {
				return rc, d.ArgErr()
			}
			rc.ProjectTokens = true
		default:
			return rc, d.Errf("route %s %s: unrecognized option %q", args[0], args[1], d.Val())
		}
	}
	return rc, nil
}

// setDuration parses the duration of an option whose JSON field reads 0 as
// "the default": a 0 written in the Caddyfile would silently become the
// default, so it is refused here; every other rule on the value is
// Provision's.
func setDuration(d *caddyfile.Dispenser, option, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur == 0 {
		return 0, d.Errf("%s: want a non-zero duration, got %q", option, v)
	}
	return caddy.Duration(dur), nil
}

// setInt parses the integer of an option whose JSON field reads 0 as "the
// default", as setDuration does a duration.
func setInt(d *caddyfile.Dispenser, option, v string, bits int) (int64, error) {
	n, err := strconv.ParseInt(v, 10, bits)
	if err != nil || n == 0 {
		return 0, d.Errf("%s: want a non-zero integer, got %q", option, v)
	}
	return n, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
