// Package caddymodule is the Caddy adapter of deplo-auth: the
// http.handlers.deplo_auth and deplo_auth_tokens modules, their Caddyfile
// directives, provisioning, metrics and admin API. A request is decided by
// package decide (route table from policy, credentials checked by bearer,
// apikey, jwtauth and tokencache against a keystore, rate limits by
// throttle); this package strips and writes the identity headers (package
// identity) and turns a refusal into a response. The "caddy deplo-auth"
// command is package cli, imported here so that it comes with the module.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	_ "github.com/deplo-sh/deplo-auth/cli" // registers "caddy deplo-auth"
	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/throttle"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler authenticates every request with a deplo API token (Authorization:
// Bearer sk_live_…), authorizes it against a route policy, and forwards the
// verified identity to the next handler as X-Deplo-* headers. Identity
// headers sent by the client are always removed first.
type Handler struct {
	// Keys is where API tokens are looked up. Required.
	Keys *KeysConfig `json:"keys,omitempty"`

	// Cache bounds the token cache. Defaults: ttl 5m, negative_ttl 30s,
	// max_entries 100000.
	Cache *CacheConfig `json:"cache,omitempty"`

	// Realm is the realm of WWW-Authenticate challenges. Default "deplo".
	Realm string `json:"realm,omitempty"`

	// HeaderPrefix is the prefix of the identity headers: inbound headers
	// starting with it (in any case, with "_" or "." for "-") are removed,
	// and the verified identity is set under it. Default "X-Deplo-".
	HeaderPrefix string `json:"header_prefix,omitempty"`

	// ForwardAuthorization keeps the Authorization header for the upstream.
	// Default false: it is removed once the credential is verified.
	ForwardAuthorization bool `json:"forward_authorization,omitempty"`

	// DisableChecksum accepts sk_live_ tokens whose last six characters are
	// not the CRC-32 checksum (tokens minted before the checksum existed).
	// Length and alphabet are still checked. Default false.
	DisableChecksum bool `json:"disable_checksum,omitempty"`

	// JWT accepts dashboard session JWTs beside API tokens. Without it, a
	// JWT-shaped credential is refused (401 invalid_token).
	JWT *JWTConfig `json:"jwt,omitempty"`

	// Throttle is the brute-force guard: failed authentications per client
	// IP (as Caddy determines it, honouring trusted_proxies) past which the
	// client gets 429 with Retry-After before any hashing, cache or store
	// work. Default 60 per 1m.
	Throttle *ThrottleConfig `json:"throttle,omitempty"`

	// SignedIdentity signs the identity headers of every allowed request
	// (X-Deplo-Signature, HMAC-SHA256 over the identity, method, path and a
	// timestamp), so an upstream can verify they came from deplo_auth for
	// this very request (package identity). Off when absent.
	SignedIdentity *SignedIdentityConfig `json:"signed_identity,omitempty"`

	// Routes is the route policy; the most specific pattern wins.
	Routes []RouteConfig `json:"routes,omitempty"`

	// Default is what happens to requests matching no route: "deny"
	// (default) or "authenticated" (any valid credential, one without a workspace too; not a project-scoped one).
	Default string `json:"default,omitempty"`

	// PreflightPublic lets CORS preflights (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a credential and
	// without identity; client identity headers are still removed. Default
	// false: they need a credential like any request.
	PreflightPublic bool `json:"preflight_public,omitempty"`

	// Verify is the in-site verify form, which is gone: a config that
	// still has it fails to load, pointing at the deplo_auth_sidecar app.
	Verify json.RawMessage `json:"verify,omitempty"`

	// engine decides every request; its stores, caches, JWT verifier and
	// guard are set at provision.
	engine decide.Engine
	tokens *tokencache.Cache
	// tokenManager manages the store's tokens, for deplo_auth_tokens.
	tokenManager keystore.TokenManager
	// publicStore carries tokenManager to handlers after a public route.
	publicStore *publicStore
	jwt         *jwtauth.Verifier
	storeKey    string // the usage pool key; holds the DSN: never shown
	storeName   string // for status output: the key file's path, or host:port/db
	cacheKey    string
	realm       string
	challenge   challenges
	headers     *identity.Headers
	logger      *zap.Logger
	// storeErrLog rate-limits store failure logs to one a second.
	storeErrLog *logLimiter
	// unknownScopeLog rate-limits warnings about unknown JWT scopes.
	unknownScopeLog *logLimiter
}

// KeysConfig selects the key store: exactly one of File and Postgres.
type KeysConfig struct {
	// File is the path of the JSON key file. It is re-read when it changes;
	// a file that fails to parse keeps the last good contents in force.
	File string `json:"file,omitempty"`
	// Postgres is a PostgreSQL key store shared by every instance, with
	// revocation pushed by LISTEN/NOTIFY.
	Postgres *PostgresConfig `json:"postgres,omitempty"`
}

// PostgresConfig configures the PostgreSQL key store.
type PostgresConfig struct {
	// DSN is the connection string. Placeholders are replaced at provision
	// ({env.DEPLO_AUTH_POSTGRES}), which keeps a password out of the config.
	DSN string `json:"dsn"`
	// LookupQuery replaces the query on the shipped schema: $1 is the
	// 32-byte SHA-256 (bytea); it returns id, name, workspace, project,
	// scopes (text[]), created_at, expires_at, revoked_at.
	LookupQuery string `json:"lookup_query,omitempty"`
	// ListenDSN is the connection string of the change listener (LISTEN
	// needs a session: a direct connection, or pgbouncer in session mode),
	// so that DSN may point at pgbouncer in transaction mode. Default: DSN.
	// Placeholders are replaced at provision, as in DSN.
	ListenDSN string `json:"listen_dsn,omitempty"`
	// MaxConns caps the lookup pool. Default 4 (plus one listener
	// connection); pool connections idle for a minute are closed.
	MaxConns int32 `json:"max_conns,omitempty"`
	// Poll is how often the change log is read without a notification:
	// the bound on how long a change takes to reach this instance when
	// notifications are lost. Default 1s.
	Poll caddy.Duration `json:"poll,omitempty"`
	// QueryTimeout bounds each lookup. Default 2s.
	QueryTimeout caddy.Duration `json:"query_timeout,omitempty"`
	// RecordLastUsed writes last_used_at in the background, batched, at
	// most once a minute per token.
	RecordLastUsed bool `json:"record_last_used,omitempty"`
	// Migrate applies the shipped schema at provision.
	Migrate bool `json:"migrate,omitempty"`
}

// JWTConfig configures dashboard session JWT verification. The algorithm
// of a token never chooses the key: each key is pinned to one algorithm.
type JWTConfig struct {
	// Issuer, when set, must equal the iss claim.
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, must be the aud claim or one of its values.
	Audience string `json:"audience,omitempty"`
	// Algorithms is the allowlist: HS256 HS384 HS512 RS256 RS384 RS512
	// ES256 ES384 EdDSA. Required.
	Algorithms []string `json:"algorithms,omitempty"`
	// Secret is the HS* key: the bytes of the value as written, at least 32.
	// Placeholders are replaced at provision, so {env.DEPLO_JWT_SECRET}
	// keeps the secret out of the config.
	Secret string `json:"secret,omitempty"`
	// PublicKeys are PEM files of RSA, EC (P-256, P-384) or Ed25519 public
	// keys.
	PublicKeys []string `json:"public_keys,omitempty"`
	// JWKS is a URL of a JSON Web Key Set, fetched at provision, refreshed
	// every 5m, and refetched (at most every 30s) for an unknown kid.
	JWKS string `json:"jwks,omitempty"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s
	// when absent; 0 allows none; at most 5m.
	Leeway *caddy.Duration `json:"leeway,omitempty"`
	// MaxLifetime refuses tokens whose exp - iat exceeds it (iat is then
	// required). Default: off; 15m suits the dashboard.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`
	// Types are the accepted JOSE typ values, compared case-insensitively.
	// Default at+jwt and application/at+jwt (RFC 9068), which is how a
	// refresh token (typ refresh+jwt or JWT) is told from an access token.
	Types []string `json:"types,omitempty"`
	// TypeOff turns the typ check off.
	TypeOff bool `json:"type_off,omitempty"`
	// Claims names the claims of the identity.
	Claims *ClaimsConfig `json:"claims,omitempty"`
}

// ClaimsConfig names the claims that carry the identity.
type ClaimsConfig struct {
	// Subject claim. Default "sub".
	Subject string `json:"subject,omitempty"`
	// Workspace claim. Default "workspace".
	Workspace string `json:"workspace,omitempty"`
	// Project claim. Default "project".
	Project string `json:"project,omitempty"`
	// Scopes claim: a space-delimited string or a JSON array; when absent,
	// "scp" and "scopes" arrays are read. Default "scope".
	Scopes string `json:"scopes,omitempty"`
}

// SignedIdentityConfig lists the signing keys.
type SignedIdentityConfig struct {
	// Keys: the first signs; list the previous key after it while upstreams
	// still verify with it, so a rotation needs no flag day.
	Keys []SigningKey `json:"keys"`
}

// SigningKey is one HMAC key of the identity signature.
type SigningKey struct {
	// ID names the key in the signature header (A-Z a-z 0-9 . _ -).
	ID string `json:"id"`
	// Secret, at least 32 bytes; placeholders such as {env.DEPLO_IDENTITY_KEY}
	// are replaced at provision, so the secret stays out of the config.
	Secret string `json:"secret"`
}

// ThrottleConfig configures the brute-force guard.
type ThrottleConfig struct {
	// Off disables the guard.
	Off bool `json:"off,omitempty"`
	// Failures allowed per Window per client. Default 60.
	Failures int `json:"failures,omitempty"`
	// Window of the failure budget. Default 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// MaxClients bounds the clients tracked (memory). Default 100000.
	MaxClients int `json:"max_clients,omitempty"`
}

// CacheConfig bounds the token cache.
type CacheConfig struct {
	// TTL is how long a known token is cached. Default 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// NegativeTTL is how long an unknown token is cached. Default 30s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// MaxEntries bounds each of the positive and negative caches.
	// Default 100000.
	MaxEntries int64 `json:"max_entries,omitempty"`
	// StaleIfError serves a known token this long past TTL while the store
	// fails. Default off: a trade-off, since a token revoked during the
	// outage keeps working until then.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`
}

// RouteConfig is one route of the policy.
type RouteConfig struct {
	// Method is an HTTP method or "*" (default) for any. GET also matches
	// HEAD.
	Method string `json:"method,omitempty"`
	// Path is a net/http.ServeMux path pattern: {name} one segment,
	// {name...} the rest, trailing "/" a subtree, {$} the exact path.
	// Wildcards named workspace and project bind the credential.
	Path string `json:"path"`
	// Scopes the credential must all hold: read, deploy, delete, admin
	// (admin satisfies any).
	Scopes []string `json:"scopes,omitempty"`
	// Public routes need no credential.
	Public bool `json:"public,omitempty"`
	// Authenticated routes need any valid credential.
	Authenticated bool `json:"authenticated,omitempty"`
	// Via restricts the credential kinds accepted: "api_key", "jwt".
	// Default: any.
	Via []string `json:"via,omitempty"`
	// ProjectTokens lets project-scoped tokens use a route that does not
	// bind {project}; the upstream must confine its answer to
	// X-Deplo-Project.
	ProjectTokens bool `json:"project_tokens,omitempty"`
}

// errVerifyGone is the load error of the in-site verify form.
var errVerifyGone = errors.New("verify: the in-site verify form is gone; answer other proxies with the " +
	"deplo_auth_sidecar app (a global option, with listen addresses of its own: docs/reference.md)")

// Defaults.
const (
	defaultRealm        = "deplo"
	defaultHeaderPrefix = "X-Deplo-"
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.deplo_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the policy, opens the key store and builds the cache.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.storeErrLog = &logLimiter{interval: time.Second}
	h.unknownScopeLog = &logLimiter{interval: time.Minute}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	if err := h.checkConfig(); err != nil {
		return err
	}
	var err error
	if h.engine.Policy, err = h.compilePolicy(); err != nil {
		return err
	}
	for _, w := range h.engine.Policy.Warnings() {
		h.logger.Warn("route binds {project} without {workspace}", zap.Stringer("route", w))
	}

	h.realm = h.Realm
	if h.realm == "" {
		h.realm = defaultRealm
	}
	h.challenge = newChallenges(h.realm)

	prefix := h.HeaderPrefix
	if prefix == "" {
		prefix = defaultHeaderPrefix
	}
	var signer *identity.Signer
	if si := h.SignedIdentity; si != nil {
		if signer, err = newSigner(prefix, si); err != nil {
			return fmt.Errorf("signed_identity: %w", err)
		}
	}
	if h.headers, err = identity.NewHeaders(prefix, signer); err != nil {
		return fmt.Errorf("header_prefix: %w", err)
	}

	if t := h.Throttle; t == nil || !t.Off {
		cfg := throttle.DefaultConfig()
		if t != nil {
			cfg = throttle.Config{Failures: t.Failures, Window: time.Duration(t.Window), MaxClients: t.MaxClients}
		}
		if h.engine.Throttle, err = throttle.New(cfg); err != nil {
			return fmt.Errorf("throttle: %w", err)
		}
	}

	store, err := h.openKeys(ctx)
	if err != nil {
		return err
	}
	h.tokenManager = managerOf(store)
	h.publicStore = &publicStore{admin: h.tokenManager}
	if h.JWT != nil {
		if h.jwt, err = h.provisionJWT(ctx, store); err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
		h.engine.Sessions = h.jwt
	}
	h.engine.Tokens = h.tokens
	h.engine.SkipChecksum = h.DisableChecksum
	h.engine.PreflightPublic = h.PreflightPublic
	// Proxy mode fills the client address only for the guard; a token with
	// allowed_ips reads Caddy's client_ip itself (the verify front door
	// always names the client).
	h.engine.ClientOf = clientIPOf
	addLive(h)
	return nil
}

func (h *Handler) provisionJWT(ctx caddy.Context, store keystore.Store) (*jwtauth.Verifier, error) {
	cfg, err := h.jwtConfig(store)
	if err != nil {
		return nil, err
	}
	return jwtauth.New(ctx, cfg)
}

// resolveSecret replaces the placeholders of a secret given in the config
// ({env.NAME}, {file./run/secrets/name}) at provision, so that the adapted
// JSON and the admin API only ever show the placeholder. A placeholder that
// resolves to nothing (an unset variable, a missing or empty file) is a load
// error naming it, and so is an empty value: an empty DSN would make pgx
// connect with its PG* defaults.
func resolveSecret(raw string) (string, error) {
	v, err := caddy.NewReplacer().ReplaceOrErr(raw, true, true)
	if err == nil && v == "" {
		err = errors.New("must not be empty")
	}
	return v, err
}

func newSigner(prefix string, si *SignedIdentityConfig) (*identity.Signer, error) {
	keys := make([]identity.Key, 0, len(si.Keys))
	for i, k := range si.Keys {
		secret, err := resolveSecret(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("key %d (%s): secret: %w", i, k.ID, err)
		}
		keys = append(keys, identity.Key{ID: k.ID, Secret: []byte(secret)})
	}
	return identity.NewSigner(prefix, keys...)
}

// jwtConfig translates the jwt block into jwtauth.Verifier's configuration.
func (h *Handler) jwtConfig(store keystore.Store) (jwtauth.Config, error) {
	c := h.JWT
	cfg := h.jwtOptions()
	cfg.Logger = h.logger.Named("jwt")
	cfg.OnJWKSRefresh = observeJWKSRefresh
	cfg.OnCacheEvict = observeJWTCacheEviction
	cfg.Secret = nil
	if c.Secret != "" {
		secret, err := resolveSecret(c.Secret)
		if err != nil {
			return cfg, fmt.Errorf("secret: %w", err)
		}
		cfg.Secret = []byte(secret)
	}
	if d, ok := store.(jwtauth.SessionDenylist); ok {
		cfg.Sessions = d
	}
	return cfg, nil
}

// jwtOptions is the jwt block as jwtauth.Verifier's configuration, the secret
// as written (a placeholder is resolved by jwtConfig).
func (h *Handler) jwtOptions() jwtauth.Config {
	c := h.JWT
	var leeway time.Duration // absent: jwtauth's default
	if c.Leeway != nil {
		leeway = time.Duration(*c.Leeway)
		if leeway == 0 {
			leeway = -1 // jwtauth: negative is none
		}
	}
	cfg := jwtauth.Config{
		Issuer:         c.Issuer,
		Audience:       c.Audience,
		Algorithms:     c.Algorithms,
		PublicKeyFiles: c.PublicKeys,
		JWKSURL:        c.JWKS,
		Leeway:         leeway,
		MaxLifetime:    time.Duration(c.MaxLifetime),
		Types:          c.Types,
		TypeOff:        c.TypeOff,
		Secret:         []byte(c.Secret),
	}
	if cl := c.Claims; cl != nil {
		cfg.Claims = jwtauth.ClaimNames{Subject: cl.Subject, Workspace: cl.Workspace, Project: cl.Project, Scopes: cl.Scopes}
	}
	return cfg
}

// Validate checks the provisioned handler.
func (h *Handler) Validate() error {
	if h.engine.Policy == nil || h.engine.Tokens == nil {
		return errors.New("not provisioned")
	}
	return nil
}

// Cleanup releases the cache and this handler's reference to the key store.
func (h *Handler) Cleanup() error {
	removeLive(h)
	if h.jwt != nil {
		h.jwt.Close()
	}
	return h.releaseKeys()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
