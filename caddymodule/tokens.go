package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/tokenapi"
)

func init() {
	caddy.RegisterModule(TokensHandler{})
	httpcaddyfile.RegisterHandlerDirective("deplo_auth_tokens", parseTokensCaddyfile)
	// Right after deplo_auth, which caddyfile.go places after basic_auth
	// (a plugin can only be ordered relative to a standard directive).
	httpcaddyfile.RegisterDirectiveOrder("deplo_auth_tokens", httpcaddyfile.Before, "forward_auth")
}

// managerOf returns the admin interface of a key store deplo_auth opened.
func managerOf(store keystore.Store) keystore.TokenManager {
	switch s := store.(type) {
	case sharedFileStore:
		// Reloads the store after each change, so that a token created
		// through the API works at once in this process.
		return s.TokenManager()
	case keystore.TokenManager:
		return s
	}
	return nil
}

// TokensHandler serves the token lifecycle (create, list, read, revoke)
// under Base, from the key store of the deplo_auth that decided the request
// (see package tokenapi). Requests whose path is not Base or under it go on
// to the next handler.
type TokensHandler struct {
	// Base is the collection path, with one {workspace} wildcard, e.g.
	// /v1/workspaces/{workspace}/tokens. Required.
	Base string `json:"base"`
	// CreateRate bounds the tokens one credential creates or rotates, per
	// instance. Default 60 per 1m.
	CreateRate *CreateRate `json:"create_rate,omitempty"`
	// MaxTokens is the most live tokens a workspace holds. Default 10000.
	MaxTokens int `json:"max_tokens,omitempty"`
	// MaxLifetime, if set, caps every new token's expiry at creation +
	// MaxLifetime. Default: none.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`
	// Leaks, if set, serves GitHub's secret-scanning partner endpoint
	// (see LeaksConfig). Default: none.
	Leaks *LeaksConfig `json:"leaks,omitempty"`

	leakLog    *logLimiter
	limits     tokenapi.Limits
	base       *tokenapi.Base
	logger     *zap.Logger
	missingLog *logLimiter
}

// CaddyModule returns the Caddy module information.
func (TokensHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.deplo_auth_tokens",
		New: func() caddy.Module { return new(TokensHandler) },
	}
}

// Provision parses the base pattern and registers the metrics.
func (h *TokensHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.missingLog = &logLimiter{interval: time.Minute}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if h.Base == "" {
		return errors.New("base is required, e.g. /v1/workspaces/{workspace}/tokens")
	}
	var err error
	if h.base, err = tokenapi.ParseBase(h.Base); err != nil {
		return err
	}
	if h.limits, err = h.provisionLimits(); err != nil {
		return err
	}
	h.leakLog = &logLimiter{interval: time.Second}
	if h.Leaks != nil {
		return h.Leaks.provision(h.logger, h.base)
	}
	return nil
}

// ServeHTTP answers a request under Base, for the caller deplo_auth
// verified; without such a decision it answers 500 and logs why.
func (h *TokensHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.Leaks != nil && r.URL.Path == h.Leaks.Path {
		return h.serveLeaks(w, r)
	}
	target, ok := h.base.Match(r.URL.Path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		// A CORS preflight carries no credential: under preflight public
		// deplo_auth lets it through undecided, and it is answered here,
		// never as a misconfiguration.
		a := tokenapi.Preflight(target)
		return writeAnswer(w, a.Status, a.Header, a.Body)
	}
	d, ok := DecisionFromContext(r.Context())
	switch {
	case !ok || d.tokens == nil:
		return h.misconfigured(w, "no deplo_auth decided this request with a verified credential: "+
			"deplo_auth must come before deplo_auth_tokens, with a non-public route for every token path")
	case d.Match.BindsWorkspace && d.Match.Workspace != target.Workspace:
		return h.misconfigured(w, "deplo_auth decided this request for another workspace's path (a rewrite between the two handlers?)")
	}
	svc := tokenapi.Service{Store: d.tokens, Limits: h.limits}
	a := svc.Serve(r.Context(), &tokenapi.Request{
		Method:        r.Method,
		Target:        target,
		Caller:        d.Principal,
		ContentType:   r.Header.Get("Content-Type"),
		Body:          r.Body,
		Query:         r.URL.RawQuery,
		CallerSession: d.Session,
	})
	if a.Op != nil {
		h.record(d.Principal, d.Session, target.Workspace, a.Op)
	}
	return writeAnswer(w, a.Status, a.Header, a.Body)
}

// record writes the one log line and the count of a create or revoke:
// caller, workspace, token id, scopes and result — never the token or its
// hash.
func (h *TokensHandler) record(who *grant.Principal, session, workspace string, op *tokenapi.Operation) {
	metricTokenOperations.WithLabelValues(op.Name, op.Result).Inc()
	level, msg := zapcore.InfoLevel, "token "+op.Name+" refused"
	switch op.Result {
	case tokenapi.ResultOK:
		msg = map[string]string{tokenapi.OpCreate: "token created", tokenapi.OpRevoke: "token revoked",
			tokenapi.OpRotate: "token rotated", tokenapi.OpRevokeCreatedBy: "tokens revoked by creator"}[op.Name]
	case tokenapi.ResultReused:
		// A rotated token was rotated again: it was copied.
		level, msg = zapcore.WarnLevel, "token reuse: a rotated token was rotated again; its family is revoked"
	case tokenapi.ResultForbidden, tokenapi.ResultCreatorInactive:
		level = zapcore.WarnLevel
	case tokenapi.ResultError:
		level, msg = zapcore.ErrorLevel, "token "+op.Name+" failed"
	}
	if c := h.logger.Check(level, msg); c != nil {
		fields := []zap.Field{
			zap.String("caller", who.Subject), zap.String("caller_method", who.Kind.String()),
			zap.String("workspace", workspace), zap.String("token_id", op.TokenID),
			zap.String("scopes", op.Scopes.String()), zap.String("result", op.Result),
		}
		if op.Reason != "" {
			fields = append(fields, zap.String("reason", op.Reason))
		}
		if op.NewTokenID != "" {
			fields = append(fields, zap.String("new_token_id", op.NewTokenID))
		}
		if op.Revoked != nil {
			fields = append(fields, zap.Strings("revoked", op.Revoked))
		}
		if session != "" {
			fields = append(fields, zap.String("caller_session", session))
		}
		c.Write(fields...)
	}
}

// misconfigured answers 500 and logs why (once a minute).
func (h *TokensHandler) misconfigured(w http.ResponseWriter, why string) error {
	if ok, suppressed := h.missingLog.allow(time.Now()); ok {
		h.logger.Error("token API refused a request: "+why, zap.Uint64("suppressed_since_last", suppressed))
	}
	body := append(jsonwire.ErrorBody("server_error", "the token API is not configured behind deplo_auth"), '\n')
	return writeAnswer(w, http.StatusInternalServerError, http.Header{"Content-Type": {"application/json"}}, body)
}

func writeAnswer(w http.ResponseWriter, status int, header http.Header, body []byte) error {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	if len(body) > 0 {
		if _, err := w.Write(body); err != nil {
			return fmt.Errorf("writing the token API answer: %w", err)
		}
	}
	return nil
}

// Validate checks the provisioned handler.
func (h *TokensHandler) Validate() error {
	if h.base == nil {
		return errors.New("not provisioned")
	}
	return nil
}

func parseTokensCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler TokensHandler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	deplo_auth_tokens [<matcher>] {
//		base <pattern>
//		create_rate <tokens>/<window>
//		max_tokens <n>
//		max_lifetime <duration>
//		leaks <path> {
//			keys_file <json> | keys_url <url>
//		}
//	}
func (h *TokensHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "base":
			if h.Base != "" {
				return d.Err("base given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Base = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if _, err := tokenapi.ParseBase(h.Base); err != nil {
				return d.Err(err.Error())
			}
		case "create_rate", "max_tokens", "max_lifetime":
			if err := h.unmarshalLimit(d); err != nil {
				return err
			}
		case "leaks":
			if err := h.unmarshalLeaks(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown subdirective %q (want base, create_rate, max_tokens, max_lifetime, leaks)", d.Val())
		}
	}
	if h.Base == "" {
		return d.Err("deplo_auth_tokens: base is required, e.g. base /v1/workspaces/{workspace}/tokens")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*TokensHandler)(nil)
	_ caddy.Validator             = (*TokensHandler)(nil)
	_ caddyfile.Unmarshaler       = (*TokensHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*TokensHandler)(nil)
)
