package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Secrets come from {env.…} or {file.…} placeholders, resolved at
// provision. One that resolves to nothing fails the load with the
// placeholder's name and never the value of any other secret.
func TestSecretsFromPlaceholders(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "jwt-secret")
	if err := os.WriteFile(secretFile, []byte(testJWTSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEPLO_TEST_JWT_SECRET", testJWTSecret)
	t.Setenv("DEPLO_TEST_EMPTY", "")

	t.Run("accepted", func(t *testing.T) {
		for _, raw := range []string{"{file." + secretFile + "}", "{env.DEPLO_TEST_JWT_SECRET}"} {
			f := newFixture(t, func(h *Handler) {
				withJWT(h)
				h.JWT.Secret = raw
				h.SignedIdentity = &SignedIdentityConfig{Keys: []SigningKey{{ID: "k1", Secret: raw}}}
			})
			r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
			r.Header.Set("Authorization", "Bearer "+mintJWT(t, "at+jwt", 10*time.Minute, nil))
			if _, up, err := f.serve(r); err != nil || !up.called {
				t.Fatalf("%s: a session signed with the file's secret: %v", raw, err)
			}
		}
	})

	tests := []struct {
		name string
		set  func(h *Handler, raw string)
	}{
		{"jwt secret", func(h *Handler, raw string) { withJWT(h); h.JWT.Secret = raw }},
		{"signed_identity key", func(h *Handler, raw string) {
			h.SignedIdentity = &SignedIdentityConfig{Keys: []SigningKey{{ID: "k1", Secret: raw}}}
		}},
		{"postgres dsn", func(h *Handler, raw string) { h.Keys = &KeysConfig{Postgres: &PostgresConfig{DSN: raw}} }},
	}
	for _, tt := range tests {
		for _, raw := range []string{"{env.DEPLO_TEST_UNSET_" + strings.ToUpper(strings.ReplaceAll(tt.name, " ", "_")) + "}",
			"{env.DEPLO_TEST_EMPTY}", "{file." + filepath.Join(dir, "missing") + "}", "{file." + empty + "}"} {
			t.Run(tt.name+" "+raw, func(t *testing.T) {
				f := newFixture(t, nil) // a valid key file to start from
				h := &Handler{Keys: &KeysConfig{File: f.keys}, Routes: f.h.Routes}
				tt.set(h, raw)
				ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
				defer cancel()
				err := h.Provision(ctx)
				_ = h.Cleanup()
				if err == nil {
					t.Fatal("provisioned with a secret that resolves to nothing")
				}
				if !strings.Contains(err.Error(), raw) {
					t.Errorf("error %q does not name the placeholder %s", err, raw)
				}
				if strings.Contains(err.Error(), testJWTSecret) {
					t.Errorf("error %q leaks a secret", err)
				}
			})
		}
	}

	t.Run("empty dsn", func(t *testing.T) {
		if _, err := resolveSecret(""); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("resolveSecret(\"\") = %v, want an error", err)
		}
	})
}

// TestRouteMethodIsAnRFC9110Token: a route's method is any RFC 9110 token
// (M-SEARCH, a WebDAV or a custom method), and nothing else.
func TestRouteMethodIsAnRFC9110Token(t *testing.T) {
	for _, tt := range []struct {
		method string
		ok     bool
	}{
		{"GET", true}, {"M-SEARCH", true}, {"PROPFIND", true}, {"X_CUSTOM.1", true}, {"*", true}, {"", true},
		{"G ET", false}, {"GET/", false}, {"(GET)", false}, {"GÉT", false},
	} {
		h := Handler{Routes: []RouteConfig{{Method: tt.method, Path: "/v1/x", Authenticated: true}}}
		_, _, err := h.policySpec()
		if (err == nil) != tt.ok {
			t.Errorf("method %q: err %v, want ok=%v", tt.method, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "routes[0]") {
			t.Errorf("method %q: %v does not name the field", tt.method, err)
		}
	}
}
