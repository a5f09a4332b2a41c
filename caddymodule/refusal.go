package caddymodule

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/policy"
)

// Refusal reasons decided before policy (the policy's own reasons are
// policy.Reasons()). Together they are the fixed set of reason labels.
const (
	reasonBadPath          = "bad_path"
	reasonNoCredential     = "no_credential"
	reasonMalformedRequest = "malformed_request"
	reasonMalformedToken   = "malformed_token"
	reasonUnknownToken     = "unknown_token"
	reasonRevokedToken     = "revoked_token"
	reasonExpiredToken     = "expired_token"
	reasonStoreError       = "store_error"
	reasonThrottled        = "throttled"
)

// retryAfterStoreError is the Retry-After of a 503, in seconds.
var retryAfterStoreError = []string{"5"}

// refusalClass is one kind of refusal, built once, so that refusing a
// request (the path an attacker drives) allocates next to nothing: the
// handler error, the placeholders and the description are shared.
type refusalClass struct {
	status      int
	reason      string
	code        string // RFC 6750 error code, also "error" of the JSON body
	description string // fixed text, never request data or secrets
	err         error  // a caddyhttp.HandlerError
	repl        caddy.ReplacerFunc
	// requests holds the deplo_auth_requests_total child of each credential
	// kind, resolved on first use: a label lookup costs more than the rest
	// of a refusal, and resolving eagerly would export series never seen.
	requests [3]atomic.Pointer[prometheus.Counter]
}

func newRefusalClass(status int, reason, description string) *refusalClass {
	c := &refusalClass{status: status, reason: reason, description: description}
	switch {
	case status == http.StatusBadRequest:
		c.code = "invalid_request"
	case status == http.StatusUnauthorized && reason == reasonNoCredential:
		c.code = "unauthorized"
	case status == http.StatusUnauthorized:
		c.code = "invalid_token"
	case status == http.StatusForbidden:
		c.code = "insufficient_scope"
	case status == http.StatusTooManyRequests:
		c.code = "too_many_requests"
	default:
		c.code = "temporarily_unavailable"
	}
	c.err = caddyhttp.HandlerError{StatusCode: status, Err: refusalError{c}}
	c.repl = c.placeholder
	return c
}

// placeholder serves {http.auth.error} and {http.auth.error_description}
// for handle_errors.
func (c *refusalClass) placeholder(key string) (any, bool) {
	switch key {
	case "http.auth.error":
		return c.code, true
	case "http.auth.error_description":
		return c.description, true
	}
	return nil, false
}

// counter returns the deplo_auth_requests_total child of this class for
// kind. Two first uses at once resolve the same child, so the race is benign.
func (c *refusalClass) counter(kind policy.Kind) prometheus.Counter {
	if p := c.requests[kind].Load(); p != nil {
		return *p
	}
	outcome := outcomeDenied
	if c.status == http.StatusServiceUnavailable {
		outcome = outcomeError
	}
	ctr := metricRequests.WithLabelValues(kind.String(), outcome, c.reason)
	c.requests[kind].Store(&ctr)
	return ctr
}

type refusalError struct{ c *refusalClass }

func (e refusalError) Error() string { return e.c.code + ": " + e.c.description }

var (
	refuseBadPath        = newRefusalClass(http.StatusBadRequest, reasonBadPath, "non-canonical request path")
	refuseNoCredential   = newRefusalClass(http.StatusUnauthorized, reasonNoCredential, "a Bearer credential is required")
	refuseNotAToken      = newRefusalClass(http.StatusUnauthorized, reasonMalformedToken, "the credential is neither a deplo API token nor an accepted session token")
	refuseMalformedToken = newRefusalClass(http.StatusUnauthorized, reasonMalformedToken, "malformed API token")
	refuseUnknownToken   = newRefusalClass(http.StatusUnauthorized, reasonUnknownToken, "unknown API token")
	refuseRevokedToken   = newRefusalClass(http.StatusUnauthorized, reasonRevokedToken, "the API token has been revoked")
	refuseExpiredToken   = newRefusalClass(http.StatusUnauthorized, reasonExpiredToken, "the API token has expired")
	refuseStoreError     = newRefusalClass(http.StatusServiceUnavailable, reasonStoreError, "the key store is unavailable; retry later")
	refuseThrottled      = newRefusalClass(http.StatusTooManyRequests, reasonThrottled, "too many failed authentications from this client; retry later")
)

// refuseByPolicy holds the refusal of each policy reason and, for
// ReasonKindNotAllowed, each credential kind.
var refuseByPolicy = func() map[policy.Reason]*refusalClass {
	m := make(map[policy.Reason]*refusalClass)
	for _, r := range []policy.Reason{policy.ReasonNoRoute, policy.ReasonNoWorkspace, policy.ReasonWorkspaceMismatch,
		policy.ReasonProjectMismatch, policy.ReasonProjectTokenNotAllowed, policy.ReasonInsufficientScope} {
		m[r] = newRefusalClass(http.StatusForbidden, r.String(), forbiddenDescription(r))
	}
	return m
}()

var refuseKindNotAllowed = [...]*refusalClass{
	policy.KindNone:   newRefusalClass(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept this kind of credential"),
	policy.KindAPIKey: newRefusalClass(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept API tokens"),
	policy.KindJWT:    newRefusalClass(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept dashboard session tokens"),
}

func forbiddenDescription(r policy.Reason) string {
	switch r {
	case policy.ReasonInsufficientScope:
		return "the credential lacks a scope this route requires"
	case policy.ReasonWorkspaceMismatch, policy.ReasonNoWorkspace:
		return "the credential is not valid for this workspace"
	case policy.ReasonProjectMismatch, policy.ReasonProjectTokenNotAllowed:
		return "the credential is not valid for this project"
	}
	return "no route allows this request"
}

// refuseByJWTReason holds one 401 invalid_token per jwtauth reason.
var refuseByJWTReason = func() map[string]*refusalClass {
	m := make(map[string]*refusalClass)
	for _, r := range append(jwtauth.Reasons(), jwtauth.ReasonInvalid) {
		description := "invalid session token"
		switch r {
		case "jwt_expired":
			description = "the session token has expired"
		case "jwt_session_revoked":
			description = "the session has been revoked"
		case "jwt_lifetime_too_long":
			description = "the session token lives longer than this API accepts"
		case "jwt_bad_type":
			description = "not an access token (a refresh token is not a Bearer credential)"
		}
		m[r] = newRefusalClass(http.StatusUnauthorized, r, description)
	}
	return m
}()

func refuseJWT(err error) *refusalClass {
	if c, ok := refuseByJWTReason[jwtauth.Reason(err)]; ok {
		return c
	}
	return refuseByJWTReason[jwtauth.ReasonInvalid]
}

// refusalForDecision returns the refusal of a policy denial.
func refusalForDecision(d policy.Decision, kind policy.Kind) *refusalClass {
	if d.Reason == policy.ReasonKindNotAllowed {
		return refuseKindNotAllowed[kind]
	}
	if c, ok := refuseByPolicy[d.Reason]; ok {
		return c
	}
	return refuseByPolicy[policy.ReasonNoRoute]
}

// malformedRequests holds one class per bearer.Parse description (a fixed
// set of constants), made on first use.
var malformedRequests sync.Map // description → *refusalClass

func refuseMalformedRequest(description string) *refusalClass {
	if c, ok := malformedRequests.Load(description); ok {
		return c.(*refusalClass)
	}
	c, _ := malformedRequests.LoadOrStore(description,
		newRefusalClass(http.StatusBadRequest, reasonMalformedRequest, description))
	return c.(*refusalClass)
}

// refusal is one refused request: its class and what is known of the caller.
type refusal struct {
	class   *refusalClass
	scope   policy.ScopeSet // for 403 insufficient_scope
	kind    policy.Kind
	subject string // token id or JWT sub, when known
}

// challenges holds every WWW-Authenticate value, built once at provision.
// Each is a one-element slice with cap 1, so an append by a later handler
// copies instead of writing into the shared array.
type challenges struct {
	missing, invalidRequest, invalidToken, forbidden []string
	forbiddenScope                                   [16][]string // by policy.ScopeSet
}

func newChallenges(realm string) challenges {
	one := func(s string) []string { return []string{s}[:1:1] }
	base := `Bearer realm="` + realm + `"`
	c := challenges{
		missing:        one(base),
		invalidRequest: one(base + `, error="invalid_request"`),
		invalidToken:   one(base + `, error="invalid_token"`),
		forbidden:      one(base + `, error="insufficient_scope"`),
	}
	for s := range c.forbiddenScope {
		c.forbiddenScope[s] = one(c.forbidden[0] + `, scope="` + policy.ScopeSet(s).String() + `"`)
	}
	return c
}

func (c *challenges) forRefusal(f *refusal) []string {
	switch f.class.status {
	case http.StatusUnauthorized:
		if f.class == refuseNoCredential {
			return c.missing
		}
		return c.invalidToken
	case http.StatusBadRequest:
		if f.class == refuseBadPath {
			return nil
		}
		return c.invalidRequest
	case http.StatusForbidden:
		if f.scope != 0 {
			return c.forbiddenScope[f.scope&0xf]
		}
		return c.forbidden
	}
	return nil
}

// refuse answers f: the challenge or Retry-After header, placeholders for
// handle_errors ({http.auth.error}, {http.auth.error_description}), one
// log entry, and a handler error that Caddy turns into the status.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, start time.Time, f refusal, m *policy.Match) error {
	observeRefusal(&f, start)
	if v := h.challenge.forRefusal(&f); v != nil {
		w.Header()["Www-Authenticate"] = v
	}
	if f.class.status == http.StatusServiceUnavailable {
		w.Header()["Retry-After"] = retryAfterStoreError
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(f.class.repl)
	}
	if c := h.logger.Check(zapcore.InfoLevel, "request refused"); c != nil {
		route := "none"
		if m != nil && m.Route != nil {
			route = m.Route.Pattern()
		}
		clientIP, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		c.Write(
			zap.Int("status", f.class.status),
			zap.String("reason", f.class.reason),
			zap.String("route", route),
			zap.String("credential", f.kind.String()),
			zap.String("subject", f.subject),
			zap.String("client_ip", clientIP),
		)
	}
	return f.class.err
}
