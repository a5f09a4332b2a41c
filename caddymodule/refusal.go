package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
)

// retryAfterStoreError is the Retry-After of a 503, in seconds.
const retryAfterStoreError = "5"

// refusal is one refused request.
type refusal struct {
	status      int
	reason      string
	description string          // fixed text, never request data or secrets
	scope       policy.ScopeSet // for 403 insufficient_scope
	kind        policy.Kind
	subject     string // token id or JWT sub, when known
}

// errorCode is the RFC 6750 error code, also the "error" of the JSON body.
func (f *refusal) errorCode() string {
	switch f.status {
	case http.StatusBadRequest:
		return "invalid_request"
	case http.StatusUnauthorized:
		if f.reason == reasonNoCredential {
			return "unauthorized"
		}
		return "invalid_token"
	case http.StatusForbidden:
		return "insufficient_scope"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	}
	return "temporarily_unavailable"
}

// challenges holds every WWW-Authenticate value, built once at provision.
type challenges struct {
	missing, invalidRequest, invalidToken, forbidden string
	forbiddenScope                                   [16]string // by policy.ScopeSet
}

func newChallenges(realm string) challenges {
	base := `Bearer realm="` + realm + `"`
	c := challenges{
		missing:        base,
		invalidRequest: base + `, error="invalid_request"`,
		invalidToken:   base + `, error="invalid_token"`,
		forbidden:      base + `, error="insufficient_scope"`,
	}
	for s := range c.forbiddenScope {
		c.forbiddenScope[s] = c.forbidden + `, scope="` + policy.ScopeSet(s).String() + `"`
	}
	return c
}

func (c *challenges) forRefusal(f *refusal) string {
	switch f.status {
	case http.StatusUnauthorized:
		if f.reason == reasonNoCredential {
			return c.missing
		}
		return c.invalidToken
	case http.StatusBadRequest:
		return c.invalidRequest
	case http.StatusForbidden:
		if f.scope != 0 {
			return c.forbiddenScope[f.scope&0xf]
		}
		return c.forbidden
	}
	return ""
}

// refuse answers f: the challenge or Retry-After header, placeholders for
// handle_errors ({http.auth.error}, {http.auth.error_description}), one
// log entry, and a handler error that Caddy turns into the status.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, f refusal, m *policy.Match) error {
	if v := h.challenge.forRefusal(&f); v != "" {
		w.Header().Set("WWW-Authenticate", v)
	}
	if f.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterStoreError)
	}
	code := f.errorCode()
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.error", code)
		repl.Set("http.auth.error_description", f.description)
	}
	if c := h.logger.Check(zapcore.InfoLevel, "request refused"); c != nil {
		route := "none"
		if m != nil && m.Route != nil {
			route = m.Route.Pattern()
		}
		clientIP, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		c.Write(
			zap.Int("status", f.status),
			zap.String("reason", f.reason),
			zap.String("route", route),
			zap.String("credential", f.kind.String()),
			zap.String("subject", f.subject),
			zap.String("client_ip", clientIP),
		)
	}
	return caddyhttp.Error(f.status, errors.New(code+": "+f.description))
}
