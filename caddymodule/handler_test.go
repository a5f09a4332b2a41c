package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// testToken is one token of the test key file.
type testToken struct {
	raw, id, workspace, project string
	scopes                      []string
	expiresAt, revokedAt        *time.Time
	allowedIPs                  []string
}

func mustToken(t testing.TB) string {
	t.Helper()
	raw, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func writeKeyFile(t testing.TB, path string, tokens []testToken) {
	t.Helper()
	type entry struct {
		ID        string     `json:"id"`
		Hash      string     `json:"hash"`
		Workspace string     `json:"workspace"`
		Project   *string    `json:"project"`
		Scopes    []string   `json:"scopes"`
		CreatedAt time.Time  `json:"created_at"`
		ExpiresAt *time.Time `json:"expires_at"`
		RevokedAt *time.Time `json:"revoked_at"`
		Allowed   []string   `json:"allowed_ips,omitempty"`
	}
	var doc struct {
		Tokens []entry `json:"tokens"`
	}
	doc.Tokens = []entry{}
	for _, tk := range tokens {
		e := entry{ID: tk.id, Hash: apikey.Sum(tk.raw).String(), Workspace: tk.workspace,
			Scopes: tk.scopes, CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			ExpiresAt: tk.expiresAt, RevokedAt: tk.revokedAt, Allowed: tk.allowedIPs}
		if tk.project != "" {
			p := tk.project
			e.Project = &p
		}
		doc.Tokens = append(doc.Tokens, e)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fixture is a provisioned handler over a temporary key file.
type fixture struct {
	h                                          *Handler
	s                                          *Sidecar // sidecar fixtures: h is its handler
	keys                                       string
	read, deploy, admin, project, revoked, exp testToken
	future, pinned, elsewhere                  testToken
}

func caddyDuration(d time.Duration) caddy.Duration { return caddy.Duration(d) }

// provisionErr provisions a handler over an empty key file and returns the
// error, cleaning up either way.
func provisionErr(t *testing.T, configure func(*Handler)) error {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeyFile(t, keys, nil)
	h := &Handler{Keys: &KeysConfig{File: keys}}
	configure(h)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.Provision(ctx)
	_ = h.Cleanup()
	return err
}

func newFixture(t testing.TB, configure func(*Handler)) *fixture {
	t.Helper()
	f, h := fixtureHandler(t, configure)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		cancel()
		if err := h.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

// fixtureHandler writes the fixture's key file and configures (without
// provisioning) its handler.
func fixtureHandler(t testing.TB, configure func(*Handler)) (*fixture, *Handler) {
	t.Helper()
	past := time.Now().Add(-time.Hour)
	later := time.Now().Add(time.Hour)
	f := &fixture{keys: filepath.Join(t.TempDir(), "keys.json")}
	f.read = testToken{raw: mustToken(t), id: "tok_read", workspace: "ws_acme", scopes: []string{"read"}}
	f.deploy = testToken{raw: mustToken(t), id: "tok_deploy", workspace: "ws_acme", scopes: []string{"deploy", "read", "frobnicate"}}
	f.admin = testToken{raw: mustToken(t), id: "tok_admin", workspace: "ws_acme", scopes: []string{"admin"}}
	f.project = testToken{raw: mustToken(t), id: "tok_project", workspace: "ws_acme", project: "weekly-report", scopes: []string{"deploy", "read"}}
	f.revoked = testToken{raw: mustToken(t), id: "tok_revoked", workspace: "ws_acme", scopes: []string{"admin"}, revokedAt: &past}
	f.exp = testToken{raw: mustToken(t), id: "tok_expired", workspace: "ws_acme", scopes: []string{"admin"}, expiresAt: &past}
	f.future = testToken{raw: mustToken(t), id: "tok_future", workspace: "ws_acme", scopes: []string{"read"}, revokedAt: &later}
	// Pinned: allowed from newRequest's client address (proxy mode) and the
	// sidecar tests' caller (127.0.0.1), and elsewhere only.
	f.pinned = testToken{raw: mustToken(t), id: "tok_pinned", workspace: "ws_acme", scopes: []string{"deploy", "read"},
		allowedIPs: []string{"198.51.100.0/24", "192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8"}}
	f.elsewhere = testToken{raw: mustToken(t), id: "tok_elsewhere", workspace: "ws_acme", scopes: []string{"admin"},
		allowedIPs: []string{"203.0.113.0/24"}}
	writeKeyFile(t, f.keys, []testToken{f.read, f.deploy, f.admin, f.project, f.revoked, f.exp, f.future, f.pinned, f.elsewhere})

	h := &Handler{
		Keys: &KeysConfig{File: f.keys},
		Routes: []RouteConfig{
			{Method: "GET", Path: "/healthz", Public: true},
			{Method: "GET", Path: "/v1/me", Authenticated: true},
			{Method: "GET", Path: "/v1/workspaces/{workspace}/projects", Scopes: []string{"read"}, ProjectTokens: true},
			{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Scopes: []string{"read"}},
			{Method: "POST", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Scopes: []string{"deploy"}},
			{Method: "DELETE", Path: "/v1/workspaces/{workspace}/projects/{project}", Scopes: []string{"delete"}},
			{Method: "GET", Path: "/v1/workspaces/{workspace}/members", Scopes: []string{"admin"}, Via: []string{"jwt"}},
			{Method: "*", Path: "/v1/workspaces/{workspace}/tokens/", Scopes: []string{"admin"}},
		},
	}
	if configure != nil {
		configure(h)
	}
	return f, h
}

// upstream records what reached the next handler.
type upstream struct {
	called bool
	header http.Header
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called = true
	u.header = r.Header.Clone()
	w.WriteHeader(http.StatusOK)
	return nil
}

func newRequest(method, target string) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest(method, target, nil)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	return r.WithContext(ctx), repl
}

func (f *fixture) serve(r *http.Request) (*httptest.ResponseRecorder, *upstream, error) {
	w := httptest.NewRecorder()
	up := &upstream{}
	err := f.h.ServeHTTP(w, r, up)
	return w, up, err
}

func statusOf(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	if err == nil {
		return http.StatusOK
	}
	return -1
}

// decisionCase is one request of the proxy-mode decision table, which the
// verify front door must decide the same way (verify_test.go).
type decisionCase struct {
	name, method, path string
	auth               []string // Authorization header values
	status             int
	challenge          string
}

// decisionCases covers every refusal of proxy mode and the allowed paths.
func decisionCases(t testing.TB, f *fixture) []decisionCase {
	ws := "/v1/workspaces/ws_acme"
	return []decisionCase{
		{"public without credential", "GET", "/healthz", nil, 200, ""},
		{"no credential", "GET", ws + "/projects", nil, 401, `Bearer realm="deplo"`},
		{"no credential on unlisted route", "GET", "/v1/secret", nil, 401, `Bearer realm="deplo"`},
		{"basic scheme", "GET", ws + "/projects", []string{"Basic dXNlcjpwYXNz"}, 401, `Bearer realm="deplo"`},
		{"two headers", "GET", ws + "/projects", []string{"Bearer " + f.read.raw, "Bearer " + f.read.raw}, 400, `Bearer realm="deplo", error="invalid_request"`},
		{"empty bearer", "GET", ws + "/projects", []string{"Bearer "}, 400, `Bearer realm="deplo", error="invalid_request"`},
		{"two tokens", "GET", ws + "/projects", []string{"Bearer " + f.read.raw + " " + f.read.raw}, 400, `Bearer realm="deplo", error="invalid_request"`},
		{"control character", "GET", ws + "/projects", []string{"Bearer " + f.read.raw + "\x00"}, 400, `Bearer realm="deplo", error="invalid_request"`},
		{"oversized", "GET", ws + "/projects", []string{"Bearer " + strings.Repeat("a", 9000)}, 400, `Bearer realm="deplo", error="invalid_request"`},
		{"bad checksum", "GET", ws + "/projects", []string{"Bearer " + f.read.raw[:39] + flip(f.read.raw[39])}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"wrong length", "GET", ws + "/projects", []string{"Bearer " + f.read.raw[:39]}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"wrong alphabet", "GET", ws + "/projects", []string{"Bearer " + f.read.raw[:20] + "-" + f.read.raw[21:]}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"not a token", "GET", ws + "/projects", []string{"Bearer hello"}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"unknown token", "GET", ws + "/projects", []string{"Bearer " + mustToken(t)}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"revoked", "GET", ws + "/projects", []string{"Bearer " + f.revoked.raw}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"expired", "GET", ws + "/projects", []string{"Bearer " + f.exp.raw}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"revocation scheduled later", "GET", ws + "/projects", []string{"Bearer " + f.future.raw}, 200, ""},
		// allowed_ips: the client address is Caddy's client_ip (192.0.2.1 in
		// newRequest); the throttle is on, so proxy mode fills Client.
		{"pinned, from inside", "POST", ws + "/projects/p1/deployments", []string{"Bearer " + f.pinned.raw}, 200, ""},
		{"pinned, from outside", "GET", ws + "/projects", []string{"Bearer " + f.elsewhere.raw}, 403, ""},
		{"pinned, from outside, another workspace", "GET", "/v1/workspaces/ws_other/projects", []string{"Bearer " + f.elsewhere.raw}, 403, ""},
		{"lowercase scheme", "GET", ws + "/projects", []string{"bearer " + f.read.raw}, 200, ""},
		{"read allowed", "GET", ws + "/projects", []string{"Bearer " + f.read.raw}, 200, ""},
		{"HEAD via GET route", "HEAD", ws + "/projects", []string{"Bearer " + f.read.raw}, 200, ""},
		{"read cannot deploy", "POST", ws + "/projects/p1/deployments", []string{"Bearer " + f.read.raw}, 403, `Bearer realm="deplo", error="insufficient_scope", scope="deploy"`},
		{"deploy cannot delete", "DELETE", ws + "/projects/p1", []string{"Bearer " + f.deploy.raw}, 403, `Bearer realm="deplo", error="insufficient_scope", scope="delete"`},
		{"unknown scope not granted", "DELETE", ws + "/projects/p1", []string{"Bearer " + f.deploy.raw}, 403, `Bearer realm="deplo", error="insufficient_scope", scope="delete"`},
		{"admin can delete", "DELETE", ws + "/projects/p1", []string{"Bearer " + f.admin.raw}, 200, ""},
		{"other workspace", "GET", "/v1/workspaces/ws_other/projects", []string{"Bearer " + f.admin.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"unlisted route with credential", "GET", "/v1/secret", []string{"Bearer " + f.admin.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"project token own project", "POST", ws + "/projects/weekly-report/deployments", []string{"Bearer " + f.project.raw}, 200, ""},
		{"project token other project", "POST", ws + "/projects/billing/deployments", []string{"Bearer " + f.project.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"project token look-alike project", "POST", ws + "/projects/weekly-report-backup/deployments", []string{"Bearer " + f.project.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"project token on project_tokens route", "GET", ws + "/projects", []string{"Bearer " + f.project.raw}, 200, ""},
		{"project token on authenticated route", "GET", "/v1/me", []string{"Bearer " + f.project.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"api key on jwt-only route", "GET", ws + "/members", []string{"Bearer " + f.admin.raw}, 401, `Bearer realm="deplo", error="invalid_token"`},
		{"dot segments", "GET", ws + "/projects/weekly-report/../billing/deployments", []string{"Bearer " + f.project.raw}, 400, ""},
		{"encoded slash", "GET", ws + "/projects/weekly-report%2F..%2Fbilling/deployments", []string{"Bearer " + f.project.raw}, 400, ""},
		{"double slash", "GET", "/v1/workspaces//ws_acme/projects", []string{"Bearer " + f.read.raw}, 400, ""},
		{"double-encoded slash", "GET", ws + "/projects/weekly-report%252F..%252Fbilling/deployments", []string{"Bearer " + f.project.raw}, 400, ""},
		{"method case variant", "delete", ws + "/projects/p1", []string{"Bearer " + f.deploy.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
		{"path case variant", "GET", "/V1/workspaces/ws_acme/projects", []string{"Bearer " + f.read.raw}, 403, `Bearer realm="deplo", error="insufficient_scope"`},
	}
}

func TestServeHTTPDecisions(t *testing.T) {
	f := newFixture(t, nil)
	tests := decisionCases(t, f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRequest(tt.method, tt.path)
			for _, v := range tt.auth {
				r.Header.Add("Authorization", v)
			}
			w, up, err := f.serve(r)
			if got := statusOf(err); got != tt.status {
				t.Fatalf("status = %d (%v), want %d", got, err, tt.status)
			}
			if up.called != (tt.status == 200) {
				t.Fatalf("upstream called = %v with status %d", up.called, tt.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge && !(tt.status == 400 && tt.challenge == "") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if err != nil {
				for _, tk := range []testToken{f.read, f.deploy, f.admin, f.project, f.revoked, f.exp} {
					if strings.Contains(err.Error(), tk.raw) || strings.Contains(err.Error(), apikey.Sum(tk.raw).String()[7:]) {
						t.Fatalf("error %q leaks a token or hash", err)
					}
				}
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestServeHTTPIdentityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	r, repl := newRequest("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	r.Header.Set("Authorization", "Bearer "+f.project.raw)
	for _, spoof := range []string{"X-Deplo-Workspace", "x-deplo-subject", "X_Deplo_Scopes", "X.Deplo.Auth", "X-DEPLO-PROJECT", "X-Deplo-Anything", "x_deplo.extra"} {
		r.Header[spoof] = []string{"spoofed"}
	}
	r.Trailer = http.Header{"X-Deplo-Scopes": nil}
	w, up, err := f.serve(r)
	if err != nil {
		t.Fatalf("err = %v (%d)", err, w.Code)
	}
	want := map[string]string{
		"X-Deplo-Auth":      "api_key",
		"X-Deplo-Subject":   "tok_project",
		"X-Deplo-Workspace": "ws_acme",
		"X-Deplo-Project":   "weekly-report",
		"X-Deplo-Scopes":    "deploy read",
	}
	for name, values := range up.header {
		if identityHeadersForTest.Matches(name) {
			if len(values) != 1 || values[0] != want[name] {
				t.Errorf("upstream got %s: %q, want %q", name, values, want[name])
			}
			delete(want, name)
		}
	}
	if len(want) > 0 {
		t.Errorf("upstream is missing %v", want)
	}
	if up.header.Get("Authorization") != "" {
		t.Error("Authorization reached the upstream without forward_authorization")
	}
	if _, ok := r.Trailer["X-Deplo-Scopes"]; ok {
		t.Error("declared identity trailer not removed")
	}
	for key, want := range map[string]string{
		"http.auth.user.id":        "tok_project",
		"http.auth.user.method":    "api_key",
		"http.auth.user.workspace": "ws_acme",
		"http.auth.user.project":   "weekly-report",
		"http.auth.user.scopes":    "deploy read",
	} {
		if got, _ := repl.GetString(key); got != want {
			t.Errorf("{%s} = %q, want %q", key, got, want)
		}
	}
}

var identityHeadersForTest, _ = identity.NewHeaders(defaultHeaderPrefix, nil)

func TestServeHTTPStripsOnPublicAndRefused(t *testing.T) {
	f := newFixture(t, nil)
	r, _ := newRequest("GET", "/healthz")
	r.Header.Set("X-Deplo-Workspace", "ws_acme")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	_, up, err := f.serve(r)
	if err != nil || !up.called {
		t.Fatalf("public route: err=%v called=%v", err, up.called)
	}
	if len(up.header.Values("X-Deplo-Workspace")) != 0 || up.header.Get("Authorization") != "" {
		t.Errorf("public route forwarded %v", up.header)
	}
}

// TestServeHTTPOverrideHeaders: a POST decided as POST never reaches the
// upstream with a header that makes its framework run it as another method
// or route it to another URL.
func TestServeHTTPOverrideHeaders(t *testing.T) {
	f := newFixture(t, nil)
	r, _ := newRequest("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	r.Header.Set("Authorization", "Bearer "+f.deploy.raw)
	for _, name := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-URL", "X-Rewrite-URL"} {
		r.Header.Set(name, "DELETE")
	}
	r.Header["x_http_method_override"] = []string{"DELETE"}
	_, up, err := f.serve(r)
	if err != nil || !up.called {
		t.Fatalf("err=%v called=%v", err, up.called)
	}
	for name := range up.header {
		if identity.IsOverride(name) {
			t.Errorf("%s reached the upstream", name)
		}
	}
}

// TestServeHTTPPreflight: with preflight public a CORS preflight passes
// without a credential and without identity; a plain OPTIONS still needs one.
func TestServeHTTPPreflight(t *testing.T) {
	for _, public := range []bool{false, true} {
		f := newFixture(t, func(h *Handler) { h.PreflightPublic = public })
		r, _ := newRequest("OPTIONS", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Origin", "https://app.deplo.sh")
		r.Header.Set("Access-Control-Request-Method", "DELETE")
		r.Header.Set("X-Deplo-Workspace", "ws_acme")
		w, up, err := f.serve(r)
		if up.called != public {
			t.Fatalf("preflight public=%v: called=%v err=%v (%d)", public, up.called, err, w.Code)
		}
		if public && (len(up.header.Values("X-Deplo-Workspace")) != 0 || up.header.Get("X-Deplo-Auth") != "") {
			t.Errorf("preflight forwarded identity %v", up.header)
		}
		plain, _ := newRequest("OPTIONS", "/v1/workspaces/ws_acme/projects")
		plain.Header.Set("Origin", "https://app.deplo.sh")
		if _, up, _ := f.serve(plain); up.called {
			t.Errorf("public=%v: OPTIONS without Access-Control-Request-Method passed without a credential", public)
		}
	}
}

func TestServeHTTPForwardAuthorizationAndPrefix(t *testing.T) {
	f := newFixture(t, func(h *Handler) {
		h.ForwardAuthorization = true
		h.HeaderPrefix = "X-Acme-"
		h.Realm = "acme"
	})
	r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	r.Header.Set("x_acme_workspace", "spoof")
	_, up, err := f.serve(r)
	if err != nil {
		t.Fatal(err)
	}
	if up.header.Get("Authorization") == "" {
		t.Error("forward_authorization did not keep Authorization")
	}
	if got := up.header.Values("X-Acme-Workspace"); len(got) != 1 || got[0] != "ws_acme" {
		t.Errorf("X-Acme-Workspace = %q", got)
	}
	if _, ok := up.header["x_acme_workspace"]; ok {
		t.Error("spoofed underscore spelling reached the upstream")
	}
	r, _ = newRequest("GET", "/v1/workspaces/ws_acme/projects")
	w, _, _ := f.serve(r)
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="acme"` {
		t.Errorf("challenge = %q", got)
	}
}

func TestServeHTTPChecksumOff(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.DisableChecksum = true })
	// A legacy token: right length and alphabet, no valid checksum.
	legacy := "sk_live_" + strings.Repeat("a", 26) + "ZZZZZZ"
	if apikey.Check(legacy, true) == nil {
		t.Fatal("test token unexpectedly has a valid checksum")
	}
	writeKeyFile(t, f.keys, []testToken{{raw: legacy, id: "tok_legacy", workspace: "ws_acme", scopes: []string{"read"}}})
	deadline := time.Now().Add(3 * time.Second)
	for {
		r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer "+legacy)
		_, _, err := f.serve(r)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("legacy token refused with checksum off: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+legacy[:39])
	if _, _, err := f.serve(r); statusOf(err) != 401 {
		t.Errorf("checksum off accepted a short token: %v", err)
	}
}

func TestRevocationThroughKeyFileWhileCached(t *testing.T) {
	f := newFixture(t, nil)
	call := func() int {
		r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer "+f.read.raw)
		_, _, err := f.serve(r)
		return statusOf(err)
	}
	for i := 0; i < 3; i++ { // warm the cache
		if got := call(); got != 200 {
			t.Fatalf("before revocation: %d", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	now := time.Now().Add(-time.Second)
	f.read.revokedAt = &now
	start := time.Now()
	writeKeyFile(t, f.keys, []testToken{f.read, f.deploy})
	for call() != 401 {
		if time.Since(start) > 2*time.Second {
			t.Fatal("revoked token still accepted 2s after the key file changed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("revocation took effect after %v", time.Since(start))
}

func TestProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.json")
	writeKeyFile(t, good, nil)
	tests := []struct {
		name string
		h    Handler
		want string
	}{
		{"no keys", Handler{}, "keys"},
		{"missing key file", Handler{Keys: &KeysConfig{File: filepath.Join(dir, "nope.json")}}, "keys file"},
		{"unknown scope", Handler{Keys: &KeysConfig{File: good}, Routes: []RouteConfig{{Method: "GET", Path: "/a", Scopes: []string{"write"}}}}, `unknown scope "write"`},
		{"conflict", Handler{Keys: &KeysConfig{File: good}, Routes: []RouteConfig{
			{Method: "GET", Path: "/a/{x}/c", Scopes: []string{"read"}},
			{Method: "GET", Path: "/a/b/{y}", Scopes: []string{"read"}},
		}}, "conflicts"},
		{"bad pattern", Handler{Keys: &KeysConfig{File: good}, Routes: []RouteConfig{{Method: "GET", Path: "/a/{", Public: true}}}, "route 1"},
		{"bad via", Handler{Keys: &KeysConfig{File: good}, Routes: []RouteConfig{{Method: "GET", Path: "/a", Scopes: []string{"read"}, Via: []string{"cookie"}}}}, "via"},
		{"bad default", Handler{Keys: &KeysConfig{File: good}, Default: "allow"}, "default"},
		{"bad prefix", Handler{Keys: &KeysConfig{File: good}, HeaderPrefix: "X Deplo"}, "header_prefix"},
		{"bad realm", Handler{Keys: &KeysConfig{File: good}, Realm: `a"b`}, "realm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := tt.h
			err := h.Provision(ctx)
			_ = h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Provision() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// BenchmarkServeHTTP measures the handler as Caddy calls it: replacer and
// vars in the context, a dozen headers, a no-op next handler.
func BenchmarkServeHTTP(b *testing.B) {
	// The guard is off here so that the refusal paths are measured as such;
	// BenchmarkServeHTTPThrottled measures the 429 path.
	f := newFixture(b, func(h *Handler) { h.Throttle = &ThrottleConfig{Off: true} })
	// Logging is measured apart: a refusal line costs more than the decision.
	f.h.logger = zap.NewNop()
	cases := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"cached_api_key", "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer " + f.deploy.raw, 200},
		{"cached_api_key_allowed_ips", "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer " + f.pinned.raw, 200},
		{"ip_not_allowed", "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer " + f.elsewhere.raw, 403},
		{"malformed_token", "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer sk_live_tooshort", 401},
		{"bad_path", "POST", "/v1/workspaces/ws_acme/projects/../../ws_other/projects", "Bearer " + f.deploy.raw, 400},
		{"unknown_token_negative_hit", "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer " + mustToken(b), 401},
		{"insufficient_scope", "DELETE", "/v1/workspaces/ws_acme/projects/weekly-report", "Bearer " + f.deploy.raw, 403},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchServe(b, f, c.method, c.path, c.auth, c.want) })
	}
}

// benchServe calls f's handler as Caddy would with a realistic request and
// a no-op next handler, checking the status once before timing.
func benchServe(b *testing.B, f *fixture, method, path, auth string, want int) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	r, _ := newRequest(method, path)
	base := r.Header.Clone()
	for k, v := range map[string]string{
		"User-Agent": "deplo-cli/1.4.2", "Accept": "application/json", "Accept-Encoding": "gzip",
		"Content-Type": "application/json", "Content-Length": "128", "X-Request-Id": "req_8f2a1c",
		"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Connection": "keep-alive", "Authorization": auth,
	} {
		base.Set(k, v)
	}
	w := httptest.NewRecorder()
	// Warm the caches (ristretto admits sets asynchronously).
	for i := 0; i < 50; i++ {
		r.Header = base.Clone()
		_ = f.h.ServeHTTP(w, r, next)
		time.Sleep(time.Millisecond)
	}
	r.Header = base.Clone()
	if got := statusOf(f.h.ServeHTTP(w, r, next)); got != want {
		b.Fatalf("status %d, want %d", got, want)
	}
	// Each call gets a fresh header map (as from net/http) and, every 1024
	// calls, a fresh replacer; both are made outside the timer.
	const batch = 1024
	headers := make([]http.Header, batch)
	refill := func() {
		for i := range headers {
			headers[i] = base.Clone()
		}
		r, _ = newRequest(method, path)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		r.Header = headers[i%batch]
		_ = f.h.ServeHTTP(w, r, next)
	}
}

// BenchmarkServeHTTPDefaultGuard is the cached API key with the brute-force
// guard on, as configured by default: the client's budget is checked on
// every request (an empty shard answers without a lock).
func BenchmarkServeHTTPDefaultGuard(b *testing.B) {
	f := newFixture(b, nil)
	f.h.logger = zap.NewNop()
	benchServe(b, f, "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer "+f.deploy.raw, 200)
}

// BenchmarkServeHTTPThrottled is a client past its failure budget: the 429
// answered before any token work.
func BenchmarkServeHTTPThrottled(b *testing.B) {
	f := newFixture(b, func(h *Handler) { h.Throttle = &ThrottleConfig{Failures: 1, Window: caddyDuration(time.Hour)} })
	f.h.logger = zap.NewNop()
	benchServe(b, f, "GET", "/v1/workspaces/ws_acme/projects", "Bearer "+mustToken(b), 429)
}

// BenchmarkReferenceFloor is BENCHMARKS.md's reference floor for a cached API-key
// check (SHA-256 of the token, hex, ristretto Get; ~370 ns / 3 allocs on a
// quiet machine here), run beside BenchmarkServeHTTP so that a noisy
// machine's figures can be read as a ratio.
func BenchmarkReferenceFloor(b *testing.B) {
	c, err := ristretto.NewCache(&ristretto.Config[string, int]{NumCounters: 1e5, MaxCost: 1e4, BufferItems: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	tok := mustToken(b)
	sum := sha256.Sum256([]byte(tok))
	c.Set(hex.EncodeToString(sum[:]), 1, 1)
	c.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := sha256.Sum256([]byte(tok))
		if _, ok := c.Get(hex.EncodeToString(s[:])); !ok {
			b.Fatal("miss")
		}
	}
}

// unavailableStore is a key store that cannot answer, as a database that is
// down would.
type unavailableStore struct{}

func (unavailableStore) Lookup(context.Context, keystore.Hash) (*keystore.Token, error) {
	return nil, errors.New("dial tcp 10.0.0.5:5432: connection refused")
}
func (unavailableStore) Generation() uint64 { return 0 }

func TestServeHTTPStoreUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	cache, err := tokencache.New(unavailableStore{}, tokencache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.h.tokens.Close()
	f.h.tokens, f.h.engine.Tokens = cache, cache
	for i := 0; i < 3; i++ { // never cached: every attempt is 503, never 401, never allowed
		r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer "+f.read.raw)
		w, up, err := f.serve(r)
		if statusOf(err) != http.StatusServiceUnavailable || up.called {
			t.Fatalf("status %d, upstream called %v", statusOf(err), up.called)
		}
		if w.Header().Get("Retry-After") == "" || w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("headers %v", w.Header())
		}
		if strings.Contains(err.Error(), "10.0.0.5") {
			t.Errorf("store error detail leaked to the client error: %v", err)
		}
	}
	// A malformed token is still refused before any store work.
	r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer sk_live_short")
	if _, _, err := f.serve(r); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("malformed token with the store down: %v", err)
	}
}

// BenchmarkServeHTTPSigned is the cached API-key path with signed_identity,
// to read the cost of signing against BenchmarkServeHTTP/cached_api_key.
func BenchmarkServeHTTPSigned(b *testing.B) {
	f := newFixture(b, func(h *Handler) {
		h.SignedIdentity = &SignedIdentityConfig{Keys: []SigningKey{{ID: "k1", Secret: "benchmark-identity-key-0123456789abcdef"}}}
	})
	f.h.logger = zap.NewNop()
	benchServe(b, f, "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer "+f.deploy.raw, 200)
}

// recordingStore is a key store that records what it is asked.
type recordingStore struct {
	inner keystore.Store
	mu    sync.Mutex
	asked []keystore.Hash
}

func (s *recordingStore) Lookup(ctx context.Context, h keystore.Hash) (*keystore.Token, error) {
	s.mu.Lock()
	s.asked = append(s.asked, h)
	s.mu.Unlock()
	return s.inner.Lookup(ctx, h)
}
func (s *recordingStore) Generation() uint64 { return s.inner.Generation() }

// A timing observer learns nothing from the store: a known and an unknown
// token each cost the store exactly one lookup, by SHA-256 of the whole
// token (never the token or a prefix of it, so no byte-by-byte comparison
// can exist behind it), and from then on both are answered from a cache —
// positive or negative, the same structure. BenchmarkServeHTTP measures the
// two cached paths side by side (cached_api_key, unknown_token_negative_hit).
func TestKnownAndUnknownTokensAlikeAtTheStore(t *testing.T) {
	f := newFixture(t, nil)
	fs, err := keystore.OpenFile(f.keys, keystore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	rec := &recordingStore{inner: fs}
	cache, err := tokencache.New(rec, tokencache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.h.tokens.Close()
	f.h.tokens, f.h.engine.Tokens = cache, cache
	unknown := mustToken(t)
	for _, tok := range []struct {
		raw    string
		status int
	}{{f.read.raw, 200}, {unknown, 401}} {
		for i := 0; i < 3; i++ {
			r, _ := newRequest("GET", "/v1/workspaces/ws_acme/projects")
			r.Header.Set("Authorization", "Bearer "+tok.raw)
			_, up, err := f.serve(r)
			if statusOf(err) != tok.status || up.called != (tok.status == 200) {
				t.Fatalf("request %d: status %d, upstream called %v", i, statusOf(err), up.called)
			}
		}
	}
	want := []keystore.Hash{sha256.Sum256([]byte(f.read.raw)), sha256.Sum256([]byte(unknown))}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.asked) != len(want) {
		t.Fatalf("store asked %d times for 2 tokens × 3 requests, want once per token", len(rec.asked))
	}
	for i := range want {
		if rec.asked[i] != want[i] {
			t.Errorf("store lookup %d was not by the SHA-256 of the whole token", i)
		}
	}
}

// With the guard off proxy mode leaves Client empty: a token with
// allowed_ips reads Caddy's client_ip itself, and is refused 403 forbidden
// from elsewhere, with no challenge and the fixed description.
func TestServeHTTPAllowedIPsWithoutGuard(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Throttle = &ThrottleConfig{Off: true} })
	for _, tt := range []struct {
		token  testToken
		client string
		status int
	}{
		{f.pinned, "192.0.2.1", 200},
		{f.pinned, "198.51.100.200", 200},
		{f.pinned, "2001:db8::7", 200},
		{f.pinned, "203.0.113.1", 403},
		{f.pinned, "", 403},
		{f.elsewhere, "192.0.2.1", 403},
		{f.elsewhere, "203.0.113.1", 200},
		{f.read, "", 200},
	} {
		r, repl := newRequest("GET", "/v1/workspaces/ws_acme/projects")
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, tt.client)
		r.Header.Set("Authorization", "Bearer "+tt.token.raw)
		w, up, err := f.serve(r)
		if got := statusOf(err); got != tt.status || up.called != (tt.status == 200) {
			t.Errorf("%s from %q: status %d, upstream %v; want %d", tt.token.id, tt.client, got, up.called, tt.status)
		}
		if tt.status == 403 {
			code, _ := repl.GetString("http.auth.error")
			desc, _ := repl.GetString("http.auth.error_description")
			if code != "forbidden" || desc != "the API token is not allowed from this address" || w.Header().Get("WWW-Authenticate") != "" {
				t.Errorf("%s from %q: error %q %q, challenge %q", tt.token.id, tt.client, code, desc, w.Header().Get("WWW-Authenticate"))
			}
		}
	}
}
