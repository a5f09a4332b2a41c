package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/deplo-sh/deplo-auth/tokenapi"
)

func TestUnmarshalTokensCaddyfile(t *testing.T) {
	tests := []struct {
		name, input, want, err string
	}{
		{"base", "deplo_auth_tokens {\n base /v1/workspaces/{workspace}/tokens\n}", `{"base":"/v1/workspaces/{workspace}/tokens"}`, ""},
		{"no base", "deplo_auth_tokens", "", "base is required"},
		{"empty block", "deplo_auth_tokens {\n}", "", "base is required"},
		{"argument", "deplo_auth_tokens /v1/x {\n base /v1/{workspace}/tokens\n}", "", "wrong argument count"},
		{"base twice", "deplo_auth_tokens {\n base /a/{workspace}\n base /b/{workspace}\n}", "", "base given twice"},
		{"base without workspace", "deplo_auth_tokens {\n base /v1/tokens\n}", "", "{workspace} exactly once"},
		{"base with another wildcard", "deplo_auth_tokens {\n base /v1/{workspace}/{project}/tokens\n}", "", "the only wildcard is {workspace}"},
		{"base with a trailing slash", "deplo_auth_tokens {\n base /v1/{workspace}/tokens/\n}", "", "trailing /"},
		{"base with two arguments", "deplo_auth_tokens {\n base /v1/{workspace}/tokens extra\n}", "", "wrong argument count"},
		{"unknown subdirective", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n keys file x.json\n}", "", `unknown subdirective "keys"`},
		{"limits", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n create_rate 10/30s\n max_tokens 500\n max_lifetime 90d\n}",
			`{"base":"/v1/{workspace}/tokens","create_rate":{"tokens":10,"window":30000000000},"max_tokens":500,"max_lifetime":7776000000000000}`, ""},
		{"create_rate without a window", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n create_rate 10\n}", "", "want <tokens>/<window>"},
		{"create_rate bad window", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n create_rate 10/soon\n}", "", "window"},
		{"create_rate twice", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n create_rate 1/1s\n create_rate 2/1s\n}", "", "given twice"},
		{"max_tokens not a number", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n max_tokens many\n}", "", "want a number"},
		{"max_lifetime two arguments", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n max_lifetime 1h 2h\n}", "", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h TokensHandler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(h)
			if string(got) != tt.want {
				t.Errorf("JSON %s, want %s", got, tt.want)
			}
		})
	}
}

// Provision refuses limits out of range, naming the option, and fills the
// defaults.
func TestTokensHandlerLimits(t *testing.T) {
	for _, c := range []struct {
		h   TokensHandler
		err string
	}{
		{TokensHandler{CreateRate: &CreateRate{Tokens: -1}}, "create_rate"},
		{TokensHandler{CreateRate: &CreateRate{Tokens: 5, Window: caddy.Duration(time.Millisecond)}}, "create_rate"},
		{TokensHandler{MaxTokens: -5}, "max_tokens"},
		{TokensHandler{MaxLifetime: -1}, "max_lifetime"},
	} {
		if _, err := c.h.provisionLimits(); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: %v, want an error naming %s", c.h, err, c.err)
		}
	}
	l, err := (&TokensHandler{}).provisionLimits()
	if err != nil || l.CreateRate == nil || l.MaxTokens != 10_000 || l.MaxLifetime != 0 {
		t.Errorf("defaults: %+v, %v", l, err)
	}
}

// Without a deplo_auth decision the token API answers 500 and never reaches
// a store; paths outside its base go on to the next handler.
func TestTokensHandlerNeedsDecision(t *testing.T) {
	h := &TokensHandler{Base: "/v1/workspaces/{workspace}/tokens", logger: zap.NewNop(), missingLog: &logLimiter{interval: time.Minute}}
	var err error
	if h.base, err = tokenapi.ParseBase(h.Base); err != nil {
		t.Fatal(err)
	}
	nextCalled := false
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { nextCalled = true; return nil })
	for _, tt := range []struct {
		method, path string
		status       int
		next         bool
	}{
		{"POST", "/v1/workspaces/ws_acme/tokens", 500, false},
		{"DELETE", "/v1/workspaces/ws_acme/tokens/tok_read", 500, false},
		{"GET", "/v1/workspaces/ws_acme/projects", 200, true},
		{"GET", "/v1/workspaces/ws_acme/tokensx", 200, true},
	} {
		nextCalled = false
		r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{"name":"x","scopes":["admin"]}`))
		// Caddy's request context, with the vars deplo_auth would write to.
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != tt.status || nextCalled != tt.next {
			t.Errorf("%s %s: status %d, next %v; want %d, %v", tt.method, tt.path, w.Code, nextCalled, tt.status, tt.next)
		}
		if tt.status == 500 && strings.Contains(w.Body.String(), "sk_live_") {
			t.Errorf("body %s", w.Body)
		}
	}
	// A value of another type under the variable is no decision either.
	r := httptest.NewRequest("POST", "/v1/workspaces/ws_acme/tokens", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{decisionVar: "forged"}))
	w := httptest.NewRecorder()
	_ = h.ServeHTTP(w, r, next)
	if w.Code != 500 {
		t.Errorf("a forged decision variable: status %d", w.Code)
	}
}

// A CORS preflight reaches the token API undecided under preflight public:
// it is answered 204 with the API's methods, logs nothing at ERROR and never
// reaches a store; an OPTIONS that is no preflight is still refused.
func TestTokensHandlerPreflight(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := &TokensHandler{Base: "/v1/workspaces/{workspace}/tokens", logger: zap.New(core), missingLog: &logLimiter{interval: time.Minute}}
	var err error
	if h.base, err = tokenapi.ParseBase(h.Base); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("next handler called")
		return nil
	})
	for _, tt := range []struct {
		path, origin, method string
		status               int
		allow                string
	}{
		{"/v1/workspaces/ws_acme/tokens", "https://app.example", "POST", 204, "GET, HEAD, POST, DELETE"},
		{"/v1/workspaces/ws_acme/tokens/tok_read/rotate", "https://app.example", "POST", 204, "POST"},
		{"/v1/workspaces/ws_acme/tokens/tok_read", "https://app.example", "DELETE", 204, "GET, HEAD, DELETE"},
		{"/v1/workspaces/ws_acme/tokens/../../x", "https://app.example", "DELETE", 204, "GET, HEAD, DELETE"},
		// Not a preflight: needs a decision like any request.
		{"/v1/workspaces/ws_acme/tokens", "", "POST", 500, ""},
		{"/v1/workspaces/ws_acme/tokens", "https://app.example", "", 500, ""},
	} {
		r := httptest.NewRequest("OPTIONS", tt.path, nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.method != "" {
			r.Header.Set("Access-Control-Request-Method", tt.method)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != tt.status || w.Header().Get("Access-Control-Allow-Methods") != tt.allow {
			t.Errorf("OPTIONS %s (Origin %q, method %q): %d %v, want %d allowing %q",
				tt.path, tt.origin, tt.method, w.Code, w.Header(), tt.status, tt.allow)
		}
		if tt.status == 204 {
			if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
				t.Errorf("a preflight logged %d ERROR lines", n)
			}
			if w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a preflight granted an origin: %v", w.Header())
			}
		}
	}
}
