// Package decide is where a request is decided. Engine.Decide takes the
// facts of one HTTP request (method, path, Authorization values, client
// address, time) and returns the decision: the verified principal and the
// matched route, or a refusal with its reason, status and challenge. It does
// everything in between — path canonicality, route match, the brute-force
// guard, Bearer parsing, telling a session JWT from an API token, checksum,
// hash, cache, store, revocation and expiry, JWT verification, the session
// denylist, and authorization — and imports nothing from Caddy, so every
// front door (the Caddy handler, the verify sidecar, tests and fuzzers)
// shares the exact same decision.
package decide

import (
	"context"
	"net/http"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/bearer"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/throttle"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// TokenLookup resolves an API token's hash: the token cache in front of a key
// store (tokencache.Cache).
type TokenLookup interface {
	Lookup(ctx context.Context, h keystore.Hash) (*tokencache.Entry, tokencache.Result, error)
	// Cached answers from the cache alone: the entry of a known, current
	// token, or nil (no store lookup).
	Cached(h keystore.Hash) *tokencache.Entry
}

// SessionVerifier verifies a dashboard session JWT (jwtauth.Verifier). Its
// errors wrap the jwtauth sentinels.
type SessionVerifier interface {
	Verify(token string, now time.Time) (*jwtauth.Session, error)
	// Cached answers from the verification cache alone: the session of a
	// token already verified and still valid at now, or nil (no parsing or
	// signature check).
	Cached(token string, now time.Time) *jwtauth.Session
}

// UsageRecorder records that a token was used (PostgreSQL last_used_at); it
// must not block.
type UsageRecorder interface{ Touch(keystore.Hash) }

// Engine decides requests. Its fields are set once, before the first
// Decide; an Engine is then safe for concurrent use.
type Engine struct {
	// Policy is the route table. Required.
	Policy *policy.Policy
	// Tokens resolves API tokens. Required.
	Tokens TokenLookup
	// Sessions verifies session JWTs; nil refuses them (401 invalid_token).
	Sessions SessionVerifier
	// Throttle is the brute-force guard; nil turns it off.
	Throttle *throttle.Limiter
	// SkipChecksum accepts sk_live_ tokens without the CRC-32 tail; length
	// and alphabet are still checked.
	SkipChecksum bool
	// Usage, when set, is told of every allowed API token.
	Usage UsageRecorder
	// PreflightPublic lets a CORS preflight (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a credential.
	PreflightPublic bool
	// ClientOf, when set, returns the client address of the request of ctx
	// for a Request whose Client is "": a front door that fills Client only
	// for the brute-force guard lets a token with allowed_ips ask for it,
	// so a token without them costs nothing. Nil: Client is the address.
	ClientOf func(ctx context.Context) string
}

// Request is what a decision needs of an HTTP request.
type Request struct {
	// Method as sent (case-sensitive).
	Method string
	// Path is the unescaped path (url.URL.Path) and RawPath its escaped form
	// when it differs (url.URL.RawPath, "" otherwise).
	Path, RawPath string
	// Authorization holds every Authorization header value, as received.
	Authorization []string
	// Client is the client's IP address as the front door determined it;
	// the brute-force guard counts failures per client, and a token with
	// allowed_ips is refused from any address outside them (see
	// Engine.ClientOf for a front door that leaves it empty).
	Client string
	// Preflight: the request carries both Origin and
	// Access-Control-Request-Method (a CORS preflight when Method is OPTIONS).
	Preflight bool
	// Now is the decision's clock reading (time.Now(): its monotonic reading
	// keeps the guard immune to wall clock steps).
	Now time.Time
}

// Outcome is a decision. Exactly one of Refusal (refused), Public (allowed
// without a credential) and Principal (allowed with one) is set.
type Outcome struct {
	// Refusal is the reason for refusing, nil when allowed.
	Refusal *Refusal
	// Public: the route (or a CORS preflight) needs no credential.
	Public bool
	// Principal is the verified credential of an allowed request.
	Principal *grant.Principal
	// Match is the route matched (Match.Route nil: none).
	Match policy.Match
	// Kind and Subject describe the credential as far as it was read (for
	// logs and metrics); Subject is the token id or the sub claim.
	Kind    grant.Kind
	Subject string
	// Scope is the route's scopes when the refusal is insufficient_scope:
	// the challenge's scope= attribute.
	Scope grant.ScopeSet
	// RetryAfter is set with RefuseThrottled.
	RetryAfter time.Duration
	// CacheResult is where an API token's record came from; CacheUsed says
	// whether the cache was asked at all.
	CacheResult tokencache.Result
	CacheUsed   bool
	// Session is a session JWT's session id (sid, else jti; "" for none
	// or for an API token): the token API records it as the creator.
	Session string
	// Err is the store's error with RefuseStoreError, for the log.
	Err error
	// UnknownScopes are scope names a session token carries that are none
	// of the four: ignored, for the log. Shared; do not modify.
	UnknownScopes []string
}

// Allowed reports whether the request may pass.
func (o *Outcome) Allowed() bool { return o.Refusal == nil }

// Decide decides req. Authentication comes before authorization: a request
// without a credential gets 401 wherever one is needed, and only a verified
// credential learns (403) what a route needs.
func (e *Engine) Decide(ctx context.Context, req *Request) (out Outcome) {
	if policy.ValidatePath(req.Path, req.RawPath) != nil {
		out.Refusal = RefuseBadPath
		return out
	}
	out.Match = e.Policy.Match(req.Method, req.Path)
	if out.Match.Public() || (e.PreflightPublic && req.Preflight && req.Method == "OPTIONS") {
		out.Public = true
		return out
	}

	// The brute-force guard answers before any store lookup or signature
	// check: past its budget, a client passes only with a credential the
	// caches already hold as valid (colleagues behind one NAT are not
	// locked out by one scanning machine); anything else gets 429.
	var client string
	throttled := false
	if e.Throttle != nil {
		client = throttle.ClientKey(req.Client)
		if ok, retry := e.Throttle.Allow(client, req.Now); !ok {
			if !e.knownValid(ctx, req, &out) {
				out = Outcome{Match: out.Match, Refusal: RefuseThrottled, RetryAfter: retry}
				return out
			}
			throttled = true
		}
	}

	if !throttled {
		token, status, description := bearer.Parse(req.Authorization)
		switch status {
		case bearer.Missing:
			out.Refusal = RefuseNoCredential
			return out
		case bearer.Malformed:
			e.failed(client, req.Now)
			out.Refusal = refuseMalformedRequest(description)
			return out
		}
		if !e.authenticate(ctx, token, req, &out) {
			if out.Refusal.Status == http.StatusUnauthorized {
				e.failed(client, req.Now)
			}
			return out
		}
	}

	if d := out.Match.Authorize(out.Principal); !d.Allow {
		out.Refusal, out.Scope = refusalForPolicy(d, out.Kind), d.Scope
		out.Principal = nil
		return out
	}
	return out
}

// knownValid authenticates a throttled request from the caches alone
// (hash and cache, or the JWT verification cache): it reports whether the
// credential is one they already hold as valid, and fills out as
// authenticate would. Nothing else is looked up or verified.
func (e *Engine) knownValid(ctx context.Context, req *Request, out *Outcome) bool {
	token, status, _ := bearer.Parse(req.Authorization)
	if status != bearer.OK {
		return false
	}
	if !apikey.HasPrefix(token) {
		if e.Sessions == nil || !jwtauth.LooksLikeJWT(token) {
			return false
		}
		s := e.Sessions.Cached(token, req.Now)
		if s == nil {
			return false
		}
		out.Kind, out.Subject, out.UnknownScopes = grant.KindJWT, s.Principal.Subject, s.UnknownScopes
		out.Principal = &s.Principal
		return true
	}
	if apikey.Check(token, !e.SkipChecksum) != nil {
		return false
	}
	hash := keystore.Hash(apikey.Sum(token))
	entry := e.Tokens.Cached(hash)
	if entry == nil || entry.Token.Status(req.Now) != keystore.TokenActive {
		return false
	}
	// A pinned token from elsewhere is no known-valid credential here.
	if len(entry.Token.AllowedIPs) > 0 && !entry.Token.AllowedFrom(e.client(ctx, req)) {
		return false
	}
	out.Kind, out.Subject = grant.KindAPIKey, entry.Token.ID
	out.CacheResult, out.CacheUsed = tokencache.Hit, true
	if e.Usage != nil {
		e.Usage.Touch(hash)
	}
	out.Principal = &entry.Principal
	return true
}

// client returns the client address of req (see Request.Client).
func (e *Engine) client(ctx context.Context, req *Request) string {
	if req.Client == "" && e.ClientOf != nil {
		return e.ClientOf(ctx)
	}
	return req.Client
}

// failed counts a failed authentication of client against its budget.
func (e *Engine) failed(client string, now time.Time) {
	if e.Throttle != nil {
		e.Throttle.Fail(client, now)
	}
}

// authenticate verifies token into out.Principal, or sets out.Refusal: 401
// when it is not a valid credential, 503 when the store cannot answer.
func (e *Engine) authenticate(ctx context.Context, token string, req *Request, out *Outcome) bool {
	now := req.Now
	if !apikey.HasPrefix(token) {
		if e.Sessions != nil && jwtauth.LooksLikeJWT(token) {
			return e.authenticateSession(token, now, out)
		}
		out.Refusal = RefuseNotAToken
		return false
	}
	out.Kind = grant.KindAPIKey
	if apikey.Check(token, !e.SkipChecksum) != nil {
		out.Refusal = RefuseMalformedToken
		return false
	}
	hash := keystore.Hash(apikey.Sum(token))
	entry, result, err := e.Tokens.Lookup(ctx, hash)
	out.CacheResult, out.CacheUsed = result, true
	switch {
	case err != nil:
		out.Refusal, out.Err = RefuseStoreError, err
		return false
	case entry == nil:
		out.Refusal = RefuseUnknownToken
		return false
	}
	out.Subject = entry.Token.ID
	switch entry.Token.Status(now) {
	case keystore.TokenRevoked:
		out.Refusal = RefuseRevokedToken
		return false
	case keystore.TokenExpired:
		out.Refusal = RefuseExpiredToken
		return false
	}
	// Conditions: a valid token used from an address it is not allowed
	// from learns nothing of what it could do (403 before the policy). A
	// token without allowed_ips pays one length check.
	if len(entry.Token.AllowedIPs) > 0 && !entry.Token.AllowedFrom(e.client(ctx, req)) {
		out.Refusal = RefuseIPNotAllowed
		return false
	}
	if e.Usage != nil {
		e.Usage.Touch(hash) // queued; written behind the request
	}
	out.Principal = &entry.Principal
	return true
}

// authenticateSession verifies a dashboard session token.
func (e *Engine) authenticateSession(token string, now time.Time, out *Outcome) bool {
	out.Kind = grant.KindJWT
	s, err := e.Sessions.Verify(token, now)
	if err != nil {
		out.Refusal = refusalForJWT(err)
		return false
	}
	out.Subject, out.UnknownScopes = s.Principal.Subject, s.UnknownScopes
	out.Principal, out.Session = &s.Principal, s.SessionID
	return true
}
