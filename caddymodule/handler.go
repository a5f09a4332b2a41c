package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
)

// Decision is what deplo_auth decided about a request it let through with a
// verified credential. Handlers after it read it with DecisionFromContext
// instead of parsing the {http.auth.user.*} placeholders.
type Decision struct {
	// Principal is the verified caller.
	Principal *grant.Principal
	// Match is the route matched, with the path's {workspace} and
	// {project} bindings.
	Match policy.Match
	// Session is the session id (sid, else jti) of a session JWT caller.
	Session string
	// tokens is the admin interface of the key store that verified the
	// caller: the one deplo_auth_tokens manages.
	tokens keystore.TokenManager
	// headerValues backs the identity headers set on the request.
	headerValues identity.HeaderValues
}

// decisionVar is the request variable holding the *Decision. A "vars"
// directive can only set JSON values, never a *Decision, so the config
// cannot forge one.
const decisionVar = "deplo_auth.decision"

// DecisionFromContext returns the decision deplo_auth made about the request
// of ctx, if it let the request through with a verified credential.
func DecisionFromContext(ctx context.Context) (*Decision, bool) {
	d, ok := caddyhttp.GetVar(ctx, decisionVar).(*Decision)
	return d, ok && d != nil && d.Principal != nil
}

// ServeHTTP strips client-sent identity headers, has package decide decide
// the request, and translates the outcome: a refusal becomes a status,
// challenge, placeholders, a log line and a count; an allowed request goes on
// to next with the verified identity set.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	start := time.Now()
	h.headers.Strip(r)
	req := h.decisionRequest(r, start)
	out := h.engine.Decide(r.Context(), &req)
	h.noteCredential(&out, start)
	if out.Refusal != nil {
		return h.refuse(w, r, start, &out)
	}
	if !h.ForwardAuthorization {
		delete(r.Header, "Authorization")
	}
	if out.Public {
		hot.public.Inc()
		// No caller, but the key store, for a handler after this one that
		// needs no caller (deplo_auth_tokens' leaks endpoint).
		caddyhttp.SetVar(r.Context(), publicStoreVar, h.publicStore)
		return next.ServeHTTP(w, r)
	}
	// One allocation holds the decision for handlers after this one
	// (deplo_auth_tokens reads it), the identity header values and the
	// {http.auth.user.*} placeholders.
	d := &Decision{Principal: out.Principal, Match: out.Match, Session: out.Session, tokens: h.tokenManager}
	id := identityOf(out.Principal)
	var path string
	if h.headers.Signs() { // escaping the path costs more than the rest of Write
		path = r.URL.EscapedPath()
	}
	if err := h.headers.Write(r.Header, &id, r.Method, path, start, &d.headerValues); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing the identity: %w", err))
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(d.placeholder)
	caddyhttp.SetVar(r.Context(), decisionVar, d)
	h.observeAllowed(&out, start)
	return next.ServeHTTP(w, r)
}

// decisionRequest gathers what package decide needs of r.
func (h *Handler) decisionRequest(r *http.Request, now time.Time) decide.Request {
	req := decide.Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		RawPath:       r.URL.RawPath,
		Authorization: r.Header["Authorization"],
		Now:           now,
	}
	if h.engine.Throttle != nil { // the client is only needed by the guard
		req.Client = clientIP(r)
	}
	req.Preflight = h.preflight(r)
	return req
}

// preflight reports whether r is a CORS preflight the engine may let
// through (preflight public; the engine checks the method).
func (h *Handler) preflight(r *http.Request) bool {
	return h.engine.PreflightPublic && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// clientIP is the client address as Caddy determines it (honouring
// trusted_proxies).
func clientIP(r *http.Request) string { return clientIPOf(r.Context()) }

// clientIPOf is clientIP of the request whose context is ctx (Caddy's
// client_ip variable; "" outside Caddy's HTTP server).
func clientIPOf(ctx context.Context) string {
	ip, _ := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	return ip
}

// identityOf is the identity forwarded for p.
func identityOf(p *grant.Principal) identity.Identity {
	return identity.Identity{Method: p.Kind.String(), Subject: p.Subject, Workspace: p.Workspace,
		Project: p.Project, Scopes: p.Scopes}
}

// noteCredential counts the cache lookup and logs what the decision
// reported on the side: a store failure (rate-limited) and scopes a session
// token carries that are none of the four.
func (h *Handler) noteCredential(out *decide.Outcome, now time.Time) {
	if out.CacheUsed {
		hot.cache[out.CacheResult].Inc()
	}
	if out.Err != nil {
		if ok, suppressed := h.storeErrLog.allow(now); ok {
			if c := h.logger.Check(zapcore.ErrorLevel, "key store lookup failed; answering 503"); c != nil {
				c.Write(zap.Error(out.Err), zap.Uint64("suppressed_since_last", suppressed))
			}
		}
	}
	if len(out.UnknownScopes) > 0 {
		if ok, _ := h.unknownScopeLog.allow(now); ok {
			h.logger.Warn("session token carries unknown scopes; they are ignored",
				zap.String("subject", out.Subject), zap.Strings("scopes", out.UnknownScopes))
		}
	}
}

// observeAllowed counts and logs (DEBUG) an allowed request.
func (h *Handler) observeAllowed(out *decide.Outcome, start time.Time) {
	kind := out.Principal.Kind
	hot.allowed[kind].Inc()
	hot.decision[kind].Observe(time.Since(start).Seconds())
	if c := h.logger.Check(zapcore.DebugLevel, "allowed"); c != nil {
		c.Write(zap.String("route", out.Match.Route.Pattern()), zap.String("method", kind.String()),
			zap.String("subject", out.Principal.Subject))
	}
}

// placeholder serves {http.auth.user.*} for the verified principal without
// a map write per placeholder.
func (d *Decision) placeholder(key string) (any, bool) {
	p := d.Principal
	switch key {
	case "http.auth.user.id":
		return p.Subject, true
	case "http.auth.user.method":
		return p.Kind.String(), true
	case "http.auth.user.workspace":
		return p.Workspace, true
	case "http.auth.user.project":
		return p.Project, true
	case "http.auth.user.scopes":
		return p.Scopes.String(), true
	}
	return nil, false
}
