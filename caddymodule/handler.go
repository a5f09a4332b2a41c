package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/bearer"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/throttle"
)

// ServeHTTP decides the request, in this order: strip client-sent identity
// headers; refuse a non-canonical path; match the route; let public routes
// through; parse the Bearer credential (401/400); verify it (401/503);
// authorize it against the route (403); forward the identity.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	start := time.Now()
	h.headers.strip(r)

	if err := policy.ValidatePath(r.URL.Path, r.URL.RawPath); err != nil {
		return h.refuse(w, r, start, refusal{class: refuseBadPath}, nil)
	}

	match := h.policy.Match(r.Method, r.URL.Path)
	if match.Public() {
		if !h.ForwardAuthorization {
			delete(r.Header, "Authorization")
		}
		hot.public.Inc()
		return next.ServeHTTP(w, r)
	}

	// The brute-force guard answers before any parsing, hashing, cache or
	// store work.
	var client string
	if h.throttle != nil {
		ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		client = throttle.ClientKey(ip)
		if ok, retry := h.throttle.Allow(client, start); !ok {
			w.Header()["Retry-After"] = []string{strconv.Itoa(int(retry / time.Second))}
			return h.refuse(w, r, start, refusal{class: refuseThrottled}, &match)
		}
	}

	token, status, description := bearer.Parse(r.Header["Authorization"])
	switch status {
	case bearer.Missing:
		return h.refuse(w, r, start, refusal{class: refuseNoCredential}, &match)
	case bearer.Malformed:
		h.failed(client, start)
		return h.refuse(w, r, start, refusal{class: refuseMalformedRequest(description)}, &match)
	}

	who, ref := h.authenticate(r, token, start)
	if ref.class != nil {
		if ref.class.status == http.StatusUnauthorized {
			h.failed(client, start)
		}
		return h.refuse(w, r, start, ref, &match)
	}

	if d := match.Authorize(who); !d.Allow {
		return h.refuse(w, r, start, refusal{class: refusalForDecision(d, who.Kind), scope: d.Scope,
			kind: who.Kind, subject: who.Subject}, &match)
	}

	if !h.ForwardAuthorization {
		delete(r.Header, "Authorization")
	}
	h.headers.set(r.Header, who)
	if h.signer != nil {
		// After every header is set and before anything else can touch the
		// request; sign after any path rewrite of yours (see README).
		if err := h.signer.SignRequest(r, start); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing the identity: %w", err))
		}
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Map(identityPlaceholders{who}.get)
	hot.allowed[who.Kind].Inc()
	hot.decision[who.Kind].Observe(time.Since(start).Seconds())
	if c := h.logger.Check(zapcore.DebugLevel, "allowed"); c != nil {
		c.Write(zap.String("route", match.Route.Pattern()), zap.String("method", who.Kind.String()),
			zap.String("subject", who.Subject))
	}
	return next.ServeHTTP(w, r)
}

// failed counts a failed authentication of client against its budget.
func (h *Handler) failed(client string, now time.Time) {
	if h.throttle != nil {
		h.throttle.Fail(client, now)
	}
}

// authenticate verifies token at now (the request's start, so a decision
// reads the clock once). It returns the principal, or the refusal when the
// token is not a valid credential or the store cannot answer (a refusal
// with a nil class is none; returned by value, it costs no allocation).
func (h *Handler) authenticate(r *http.Request, token string, now time.Time) (*policy.Principal, refusal) {
	if !apikey.HasPrefix(token) {
		if h.jwt != nil && jwtauth.LooksLikeJWT(token) {
			return h.authenticateJWT(token, now)
		}
		return nil, refusal{class: refuseNotAToken}
	}
	if err := apikey.Check(token, !h.DisableChecksum); err != nil {
		return nil, refusal{class: refuseMalformedToken, kind: policy.KindAPIKey}
	}
	hash := keystore.Hash(apikey.Sum(token))
	entry, result, err := h.tokens.Lookup(r.Context(), hash)
	hot.cache[result].Inc()
	switch {
	case err != nil:
		if ok, suppressed := h.storeErrLog.allow(time.Now()); ok {
			if c := h.logger.Check(zapcore.ErrorLevel, "key store lookup failed; answering 503"); c != nil {
				c.Write(zap.Error(err), zap.Uint64("suppressed_since_last", suppressed))
			}
		}
		return nil, refusal{class: refuseStoreError, kind: policy.KindAPIKey}
	case entry == nil:
		return nil, refusal{class: refuseUnknownToken, kind: policy.KindAPIKey}
	}
	if t := entry.Token; !t.RevokedAt.IsZero() || !t.ExpiresAt.IsZero() {
		if !t.RevokedAt.IsZero() && !now.Before(t.RevokedAt) {
			return nil, refusal{class: refuseRevokedToken, kind: policy.KindAPIKey, subject: t.ID}
		}
		if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
			return nil, refusal{class: refuseExpiredToken, kind: policy.KindAPIKey, subject: t.ID}
		}
	}
	if h.toucher != nil {
		h.toucher.Touch(hash) // queued; written behind the request
	}
	return &entry.Principal, refusal{}
}

// authenticateJWT verifies a dashboard session token.
func (h *Handler) authenticateJWT(token string, now time.Time) (*policy.Principal, refusal) {
	s, err := h.jwt.Verify(token, now)
	if err != nil {
		return nil, refusal{class: refuseJWT(err), kind: policy.KindJWT}
	}
	if len(s.UnknownScopes) > 0 {
		if ok, _ := h.unknownScopeLog.allow(now); ok {
			h.logger.Warn("session token carries unknown scopes; they are ignored",
				zap.String("subject", s.Principal.Subject), zap.Strings("scopes", s.UnknownScopes))
		}
	}
	return &s.Principal, refusal{}
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
