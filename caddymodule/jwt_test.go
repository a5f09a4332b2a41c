package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/jwtauth"
)

const testJWTSecret = "a-test-secret-of-at-least-32-bytes!!"

func withJWT(h *Handler) {
	h.JWT = &JWTConfig{
		Issuer:      "https://dashboard.deplo.sh",
		Audience:    "https://api.deplo.sh",
		Algorithms:  []string{"HS256"},
		Secret:      testJWTSecret,
		MaxLifetime: caddyDuration(15 * time.Minute),
	}
}

func mintJWT(t testing.TB, typ string, lifetime time.Duration, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	base := map[string]any{
		"iss": "https://dashboard.deplo.sh", "aud": "https://api.deplo.sh",
		"sub": "user_42", "workspace": "ws_acme", "scope": "read deploy",
		"iat": now.Unix(), "exp": now.Add(lifetime).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	tok, err := jwtauth.MintWithType("HS256", []byte(testJWTSecret), "", typ, base)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServeHTTPJWT(t *testing.T) {
	f := newFixture(t, func(h *Handler) {
		withJWT(h)
		h.Routes = append(h.Routes,
			RouteConfig{Method: "GET", Path: "/v1/workspaces/{workspace}/billing", Scopes: []string{"read"}, Via: []string{"api_key"}})
	})
	ws := "/v1/workspaces/ws_acme"
	good := mintJWT(t, "at+jwt", 15*time.Minute, nil)
	tests := []struct {
		name, method, path, token string
		status                    int
		description               string
	}{
		{"dashboard session allowed", "GET", ws + "/projects", good, 200, ""},
		{"jwt-only route", "GET", ws + "/members", mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{"scope": "admin"}), 200, ""},
		{"api-key-only route refuses jwt", "GET", ws + "/billing", good, 401, "does not accept dashboard session tokens"},
		{"refresh token", "GET", ws + "/projects", mintJWT(t, "refresh+jwt", 15*time.Minute, nil), 401, "refresh token"},
		{"typ JWT", "GET", ws + "/projects", mintJWT(t, "JWT", 15*time.Minute, nil), 401, "refresh token"},
		{"expired", "GET", ws + "/projects", mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-70 * time.Minute).Unix()}), 401, "expired"},
		{"over max_lifetime", "GET", ws + "/projects", mintJWT(t, "at+jwt", 2*time.Hour, nil), 401, "lives longer"},
		{"wrong issuer", "GET", ws + "/projects", mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{"iss": "https://evil.example"}), 401, "invalid session token"},
		{"tampered", "GET", ws + "/projects", good[:len(good)-4] + "AAAA", 401, "invalid session token"},
		{"other workspace", "GET", "/v1/workspaces/ws_other/projects", good, 403, ""},
		{"no workspace claim on workspace route", "GET", ws + "/projects", mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{"workspace": nil}), 403, ""},
		{"missing scope", "DELETE", ws + "/projects/p1", good, 403, ""},
		{"unknown scopes never granted", "DELETE", ws + "/projects/p1", mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{"scope": "read superuser delete-all"}), 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, repl := newRequest(tt.method, tt.path)
			r.Header.Set("Authorization", "Bearer "+tt.token)
			w, up, err := f.serve(r)
			if got := statusOf(err); got != tt.status {
				t.Fatalf("status %d (%v), want %d", got, err, tt.status)
			}
			if up.called != (tt.status == 200) {
				t.Fatalf("upstream called = %v", up.called)
			}
			if tt.status == 401 && w.Header().Get("WWW-Authenticate") != `Bearer realm="deplo", error="invalid_token"` {
				t.Errorf("challenge %q", w.Header().Get("WWW-Authenticate"))
			}
			if tt.description != "" {
				if d, _ := repl.GetString("http.auth.error_description"); !strings.Contains(d, tt.description) {
					t.Errorf("description %q, want it to mention %q", d, tt.description)
				}
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Fatal("error echoes the token")
			}
		})
	}

	t.Run("identity headers", func(t *testing.T) {
		r, _ := newRequest("GET", ws+"/projects")
		r.Header.Set("Authorization", "Bearer "+good)
		r.Header.Set("X-Deplo-Auth", "api_key")
		_, up, err := f.serve(r)
		if err != nil {
			t.Fatal(err)
		}
		want := http.Header{"X-Deplo-Auth": {"jwt"}, "X-Deplo-Subject": {"user_42"}, "X-Deplo-Workspace": {"ws_acme"}, "X-Deplo-Scopes": {"deploy read"}}
		for k, v := range want {
			if got := up.header.Values(k); len(got) != 1 || got[0] != v[0] {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if up.header.Get("X-Deplo-Project") != "" || up.header.Get("Authorization") != "" {
			t.Errorf("unexpected headers %v", up.header)
		}
	})
}

// TestJWTLeeway: a token expired 10 s ago passes within the default 30 s
// leeway and with leeway 20s, and is refused with leeway 0 (as written in
// the Caddyfile: none, not the default).
func TestJWTLeeway(t *testing.T) {
	expired := mintJWT(t, "at+jwt", 15*time.Minute, map[string]any{
		"exp": time.Now().Add(-10 * time.Second).Unix(), "iat": time.Now().Add(-10 * time.Minute).Unix()})
	for _, tt := range []struct {
		name   string
		leeway *caddy.Duration
		status int
	}{
		{"default", nil, 200},
		{"20s", durationOf(20 * time.Second), 200},
		{"0", durationOf(0), 401},
		{"5s", durationOf(5 * time.Second), 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(h *Handler) {
				withJWT(h)
				h.JWT.Leeway = tt.leeway
			})
			r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
			r.Header.Set("Authorization", "Bearer "+expired)
			_, up, err := f.serve(r)
			if got := statusOf(err); got != tt.status || up.called != (tt.status == 200) {
				t.Fatalf("status %d (%v), upstream called %v; want %d", got, err, up.called, tt.status)
			}
		})
	}
}

func durationOf(d time.Duration) *caddy.Duration {
	c := caddy.Duration(d)
	return &c
}

func TestJWTNotConfigured(t *testing.T) {
	f := newFixture(t, nil)
	r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+mintJWT(t, "at+jwt", 15*time.Minute, nil))
	if _, up, err := f.serve(r); statusOf(err) != 401 || up.called {
		t.Fatalf("a JWT without a jwt block: %v", err)
	}
}

func TestProvisionJWTErrors(t *testing.T) {
	for name, cfg := range map[string]*JWTConfig{
		"short secret":     {Algorithms: []string{"HS256"}, Secret: "short"},
		"no algorithms":    {Secret: testJWTSecret},
		"alg none":         {Algorithms: []string{"none"}, Secret: testJWTSecret},
		"missing key file": {Algorithms: []string{"ES256"}, PublicKeys: []string{"/nonexistent.pem"}},
		"unset env secret": {Algorithms: []string{"HS256"}, Secret: "{env.DEPLO_TEST_UNSET_SECRET_VAR}"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			err := provisionErr(t, func(h *Handler) { h.JWT = cfg })
			if err == nil || !strings.Contains(err.Error(), "jwt") {
				t.Errorf("Provision() = %v, want a jwt error", err)
			}
			if err != nil && strings.Contains(err.Error(), testJWTSecret) {
				t.Error("error echoes the secret")
			}
		})
	}
}

// BenchmarkServeHTTPJWT measures dashboard sessions through ServeHTTP as
// BenchmarkServeHTTP does API keys: cached (the same token again, a
// verification-cache hit) and uncached (the verification cache off, so every
// call verifies the signature).
func BenchmarkServeHTTPJWT(b *testing.B) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pubFile := filepath.Join(b.TempDir(), "dashboard.pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": "https://dashboard.deplo.sh", "aud": "https://api.deplo.sh", "sub": "user_42",
		"workspace": "ws_acme", "scope": "read deploy", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix()}
	for _, alg := range []string{"HS256", "ES256"} {
		var key any = []byte(testJWTSecret)
		if alg == "ES256" {
			key = priv
		}
		tok, err := jwtauth.Mint(alg, key, "", claims)
		if err != nil {
			b.Fatal(err)
		}
		for _, cached := range []bool{true, false} {
			name := alg + "/cached"
			if !cached {
				name = alg + "/uncached"
			}
			b.Run(name, func(b *testing.B) {
				f := newFixture(b, func(h *Handler) {
					withJWT(h)
					h.JWT.Algorithms = []string{alg}
					if alg == "ES256" {
						h.JWT.Secret, h.JWT.PublicKeys = "", []string{pubFile}
					}
				})
				f.h.logger = zap.NewNop()
				if !cached {
					cfg, err := f.h.jwtConfig(nil)
					if err != nil {
						b.Fatal(err)
					}
					cfg.CacheMaxEntries = -1
					f.h.jwt.Close()
					if f.h.jwt, err = jwtauth.New(context.Background(), cfg); err != nil {
						b.Fatal(err)
					}
					f.h.engine.Sessions = f.h.jwt
				}
				benchServe(b, f, "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer "+tok, 200)
			})
		}
	}
}
