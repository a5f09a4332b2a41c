package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/bearer"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
)

// ServeHTTP decides the request, in this order: strip client-sent identity
// headers; refuse a non-canonical path; match the route; let public routes
// through; parse the Bearer credential (401/400); verify it (401/503);
// authorize it against the route (403); forward the identity.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.headers.strip(r)

	if err := policy.ValidatePath(r.URL.Path, r.URL.RawPath); err != nil {
		return h.refuse(w, r, refusal{status: http.StatusBadRequest, reason: reasonBadPath,
			description: "non-canonical request path"}, nil)
	}

	match := h.policy.Match(r.Method, r.URL.Path)
	if match.Public() {
		if !h.ForwardAuthorization {
			delete(r.Header, "Authorization")
		}
		return next.ServeHTTP(w, r)
	}

	token, status, description := bearer.Parse(r.Header["Authorization"])
	switch status {
	case bearer.Missing:
		return h.refuse(w, r, refusal{status: http.StatusUnauthorized, reason: reasonNoCredential,
			description: "a Bearer credential is required"}, &match)
	case bearer.Malformed:
		return h.refuse(w, r, refusal{status: http.StatusBadRequest, reason: reasonMalformedRequest,
			description: description}, &match)
	}

	who, ref := h.authenticate(r, token)
	if ref != nil {
		return h.refuse(w, r, *ref, &match)
	}

	if d := match.Authorize(who); !d.Allow {
		ref := refusal{status: http.StatusForbidden, reason: d.Reason.String(), scope: d.Scope,
			kind: who.Kind, subject: who.Subject}
		if d.Reason == policy.ReasonKindNotAllowed {
			ref.status = http.StatusUnauthorized
			ref.description = "this route does not accept " + who.Kind.String() + " credentials"
		} else {
			ref.description = forbiddenDescription(d.Reason)
		}
		return h.refuse(w, r, ref, &match)
	}

	if !h.ForwardAuthorization {
		delete(r.Header, "Authorization")
	}
	h.headers.set(r.Header, who)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(identityPlaceholders{who}.get)
	if c := h.logger.Check(zapcore.DebugLevel, "allowed"); c != nil {
		c.Write(zap.String("route", match.Route.Pattern()), zap.String("method", who.Kind.String()),
			zap.String("subject", who.Subject))
	}
	return next.ServeHTTP(w, r)
}

// authenticate verifies token. It returns the principal, or the refusal
// when the token is not a valid credential or the store cannot answer.
func (h *Handler) authenticate(r *http.Request, token string) (*policy.Principal, *refusal) {
	if !apikey.HasPrefix(token) {
		return nil, &refusal{status: http.StatusUnauthorized, reason: reasonMalformedToken,
			description: "the credential is not a deplo API token"}
	}
	if err := apikey.Check(token, !h.DisableChecksum); err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, reason: reasonMalformedToken,
			kind: policy.KindAPIKey, description: "malformed API token"}
	}
	entry, _, err := h.tokens.Lookup(r.Context(), keystore.Hash(apikey.Sum(token)))
	switch {
	case err != nil:
		if c := h.logger.Check(zapcore.ErrorLevel, "key store lookup failed"); c != nil {
			c.Write(zap.Error(err))
		}
		return nil, &refusal{status: http.StatusServiceUnavailable, reason: reasonStoreError,
			kind: policy.KindAPIKey, description: "the key store is unavailable; retry later"}
	case entry == nil:
		return nil, &refusal{status: http.StatusUnauthorized, reason: reasonUnknownToken,
			kind: policy.KindAPIKey, description: "unknown API token"}
	}
	now := time.Now()
	if !entry.Token.RevokedAt.IsZero() && !now.Before(entry.Token.RevokedAt) {
		return nil, &refusal{status: http.StatusUnauthorized, reason: reasonRevokedToken,
			kind: policy.KindAPIKey, subject: entry.Token.ID, description: "the API token has been revoked"}
	}
	if !entry.Token.ExpiresAt.IsZero() && !now.Before(entry.Token.ExpiresAt) {
		return nil, &refusal{status: http.StatusUnauthorized, reason: reasonExpiredToken,
			kind: policy.KindAPIKey, subject: entry.Token.ID, description: "the API token has expired"}
	}
	return &entry.Principal, nil
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

// identityPlaceholders serves {http.auth.user.*} for the verified principal
// without a map write per placeholder.
type identityPlaceholders struct{ p *policy.Principal }

func (ip identityPlaceholders) get(key string) (any, bool) {
	switch key {
	case "http.auth.user.id":
		return ip.p.Subject, true
	case "http.auth.user.method":
		return ip.p.Kind.String(), true
	case "http.auth.user.workspace":
		return ip.p.Workspace, true
	case "http.auth.user.project":
		return ip.p.Project, true
	case "http.auth.user.scopes":
		return ip.p.Scopes.String(), true
	}
	return nil, false
}
