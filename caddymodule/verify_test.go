package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

func TestUnmarshalCaddyfileVerify(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"bare", "deplo_auth {\n keys file k\n verify\n}", `{"keys":{"file":"k"},"verify":{}}`},
		{"empty block", "deplo_auth {\n keys file k\n verify {\n }\n}", `{"keys":{"file":"k"},"verify":{}}`},
		{"original", "deplo_auth {\n keys file k\n verify {\n from original\n trusted 10.0.0.0/8 192.0.2.7 ::1\n trusted fd00::/8\n }\n}",
			`{"keys":{"file":"k"},"verify":{"from":"original","trusted":["10.0.0.0/8","192.0.2.7","::1","fd00::/8"]}}`},
		{"envoy", "deplo_auth {\n keys file k\n verify {\n from envoy\n path_prefix /deplo-verify\n }\n}",
			`{"keys":{"file":"k"},"verify":{"from":"envoy","path_prefix":"/deplo-verify"}}`},
		{"forwarded", "deplo_auth {\n keys file k\n verify {\n from forwarded\n }\n}", `{"keys":{"file":"k"},"verify":{"from":"forwarded"}}`},
		{"listen", "deplo_auth {\n keys file k\n verify {\n listen unix//run/deplo-auth/verify.sock|0222 127.0.0.1:9191\n }\n}",
			`{"keys":{"file":"k"},"verify":{"listen":["unix//run/deplo-auth/verify.sock|0222","127.0.0.1:9191"]}}`},
	}
	checkUnmarshal(t, tests)
}

func TestUnmarshalCaddyfileVerifyErrors(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"argument", "deplo_auth {\n verify on\n}", "wrong argument count"},
		{"bad from", "deplo_auth {\n verify {\n from nginx\n }\n}", `verify from: "nginx" is not auto, forwarded, original or envoy`},
		{"from without value", "deplo_auth {\n verify {\n from\n }\n}", "verify from: want"},
		{"bad cidr", "deplo_auth {\n verify {\n trusted 10.0.0.0/33\n }\n}", `verify trusted: "10.0.0.0/33"`},
		{"host name", "deplo_auth {\n verify {\n trusted localhost\n }\n}", `verify trusted: "localhost"`},
		{"trusted without value", "deplo_auth {\n verify {\n trusted\n }\n}", "verify trusted: want"},
		{"envoy without prefix", "deplo_auth {\n verify {\n from envoy\n }\n}", "verify path_prefix: required with from envoy"},
		{"prefix without envoy", "deplo_auth {\n verify {\n path_prefix /v\n }\n}", "verify path_prefix: only used with from envoy"},
		{"relative prefix", "deplo_auth {\n verify {\n from envoy\n path_prefix v\n }\n}", "verify path_prefix"},
		{"prefix with trailing slash", "deplo_auth {\n verify {\n from envoy\n path_prefix /v/\n }\n}", "verify path_prefix"},
		{"unknown option", "deplo_auth {\n verify {\n allow all\n }\n}", `unrecognized verify subdirective "allow"`},
		{"listen without address", "deplo_auth {\n verify {\n listen\n }\n}", "verify listen: want"},
		{"listen port range", "deplo_auth {\n verify {\n listen 127.0.0.1:9000-9010\n }\n}", `verify listen: "127.0.0.1:9000-9010"`},
		{"twice", "deplo_auth {\n verify\n verify\n}", "only one verify block"},
	}
	checkUnmarshalErrors(t, tests)
}

// The JSON form is checked at provision, naming the field.
func TestProvisionVerifyErrors(t *testing.T) {
	for want, v := range map[string]VerifyConfig{
		"verify: from":        {From: "Original"},
		"verify: trusted":     {Trusted: []string{"10.0.0.1/8/8"}},
		"verify: path_prefix": {From: "envoy"},
	} {
		err := provisionErr(t, func(h *Handler) { h.Verify = &v })
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%+v: Provision() = %v, want %q…", v, err, want)
		}
	}
}

// namer builds the verify request a proxy sends about one original request.
type namer struct {
	name string
	src  VerifyConfig
	make func(method, path string) *http.Request
}

const envoyPrefix = "/deplo-verify"

var namers = []namer{
	{"forwarded", VerifyConfig{From: "forwarded"}, func(method, path string) *http.Request {
		r := verifyRequest("GET", "/verify")
		r.Header.Set("X-Forwarded-Method", method)
		r.Header.Set("X-Forwarded-Uri", path)
		return r
	}},
	{"original uri", VerifyConfig{From: "original"}, func(method, path string) *http.Request {
		r := verifyRequest("GET", "/auth")
		r.Header.Set("X-Original-Method", method)
		r.Header.Set("X-Original-URI", path)
		return r
	}},
	{"original url", VerifyConfig{}, func(method, path string) *http.Request {
		r := verifyRequest("GET", "/auth")
		r.Header.Set("X-Original-Method", method)
		r.Header.Set("X-Original-URL", "https://api.deplo.sh"+path)
		return r
	}},
	{"envoy", VerifyConfig{From: "envoy", PathPrefix: envoyPrefix}, func(method, path string) *http.Request {
		return verifyRequest(method, envoyPrefix+path)
	}},
}

// verifyRequest is a request from a trusted caller on loopback.
func verifyRequest(method, target string) *http.Request {
	r, _ := newRequest(method, target)
	r.RemoteAddr = "127.0.0.1:41234"
	return r
}

// serveVerify serves r in verify mode; the next handler must never run.
func (f *fixture) serveVerify(t *testing.T, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w, up, err := f.serve(r)
	if up.called {
		t.Fatal("verify mode called the next handler")
	}
	if err != nil {
		t.Fatalf("verify mode returned a handler error: %v", err)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	return w
}

// refusalJSON is the body of Caddyfile.example's handle_errors for r.
func refusalJSON(t *testing.T, code, description string) string {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("respond `([^`]*)`").FindSubmatch(src)
	if m == nil {
		t.Fatal("no respond template in Caddyfile.example")
	}
	return strings.NewReplacer("{http.auth.error}", code, "{http.auth.error_description}", description).Replace(string(m[1]))
}

// checkRefusedVerify: a refused verify answer carries no identity and the
// JSON body of proxy mode.
func checkRefusedVerify(t *testing.T, w *httptest.ResponseRecorder, f *decide.Refusal) {
	t.Helper()
	for name := range w.Header() {
		if identityHeadersForTest.Matches(name) {
			t.Errorf("refused answer carries %s", name)
		}
	}
	if f != nil {
		if got, want := w.Body.String(), refusalJSON(t, f.Code, f.Description); got != want {
			t.Errorf("body %s, want %s", got, want)
		}
	}
	if w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
	}
}

// TestVerifyDecisions: every request of the proxy-mode table, named by each
// kind of proxy, gets the same status and challenge; an allowed one the
// identity as response headers, a refused one none of them — never 200.
func TestVerifyDecisions(t *testing.T) {
	for _, n := range namers {
		t.Run(n.name, func(t *testing.T) {
			cfg := n.src
			f := newFixture(t, func(h *Handler) { h.Verify = &cfg })
			for _, tt := range decisionCases(t, f) {
				t.Run(tt.name, func(t *testing.T) {
					r := n.make(tt.method, tt.path)
					for _, v := range tt.auth {
						r.Header.Add("Authorization", v)
					}
					r.Header.Set("X-Deplo-Workspace", "ws_spoofed")
					r.Header.Set("X_Deplo_Project", "spoofed")
					w := f.serveVerify(t, r)
					if w.Code != tt.status {
						t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.status, w.Body)
					}
					if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge && !(tt.status == 400 && tt.challenge == "") {
						t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
					}
					if tt.status != 200 {
						checkRefusedVerify(t, w, nil)
						var body struct{ Error, ErrorDescription string }
						if json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error == "" {
							t.Errorf("refusal body %q", w.Body)
						}
						return
					}
					if w.Body.Len() != 0 {
						t.Errorf("allowed answer has a body: %q", w.Body)
					}
					if got := w.Header().Values("X-Deplo-Workspace"); tt.path != "/healthz" && (len(got) != 1 || got[0] != "ws_acme") {
						t.Errorf("X-Deplo-Workspace = %q", got)
					}
					for name, v := range w.Header() {
						if identityHeadersForTest.Matches(name) && (tt.path == "/healthz" || strings.Contains(strings.Join(v, ""), "spoofed")) {
							t.Errorf("answer echoes %s: %q", name, v)
						}
					}
				})
			}
		})
	}
}

func TestVerifyIdentityHeaders(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Verify = &VerifyConfig{} })
	r := namers[0].make("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	r.Header.Set("Authorization", "Bearer "+f.project.raw)
	w := f.serveVerify(t, r)
	want := map[string]string{
		"X-Deplo-Auth":      "api_key",
		"X-Deplo-Subject":   "tok_project",
		"X-Deplo-Workspace": "ws_acme",
		"X-Deplo-Project":   "weekly-report",
		"X-Deplo-Scopes":    "deploy read",
	}
	for name, values := range w.Header() {
		if identityHeadersForTest.Matches(name) {
			if len(values) != 1 || values[0] != want[name] {
				t.Errorf("answer %s: %q, want %q", name, values, want[name])
			}
			delete(want, name)
		}
	}
	if len(want) > 0 || w.Code != 200 {
		t.Errorf("status %d, missing %v", w.Code, want)
	}
}

// TestVerifyTrust: only trusted callers may name an original request; any
// other caller, or a request naming none or half of one, gets 400 — never
// 200 — and is counted.
func TestVerifyTrust(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Verify = &VerifyConfig{Trusted: []string{"10.1.0.0/16", "::1"}} })
	deploy := "/v1/workspaces/ws_acme/projects/weekly-report/deployments"
	named := func(remote string) *http.Request {
		r := namers[0].make("POST", deploy)
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer "+f.deploy.raw)
		return r
	}
	if w := f.serveVerify(t, named("10.1.2.3:5000")); w.Code != 200 {
		t.Fatalf("trusted caller: %d", w.Code)
	}
	if w := f.serveVerify(t, named("[::1]:5000")); w.Code != 200 {
		t.Fatalf("trusted IPv6 caller: %d", w.Code)
	}
	if w := f.serveVerify(t, named("[::ffff:10.1.2.3]:5000")); w.Code != 200 {
		t.Fatalf("trusted caller as an IPv4-mapped address: %d", w.Code)
	}
	untrusted := counted(t, decide.ReasonUntrustedCaller)
	for _, remote := range []string{"127.0.0.1:5000", "10.2.0.1:5000", "[2001:db8::1]:5000", "garbage"} {
		w := f.serveVerify(t, named(remote))
		if w.Code != 400 {
			t.Fatalf("untrusted caller %s: %d", remote, w.Code)
		}
		checkRefusedVerify(t, w, decide.RefuseUntrustedCaller)
		if w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("400 untrusted carries a challenge")
		}
	}
	if got := counted(t, decide.ReasonUntrustedCaller) - untrusted; got != 4 {
		t.Errorf("untrusted_caller counted %v times, want 4", got)
	}

	// A Unix socket's caller is trusted (the socket's mode says who connects).
	r := named("@")
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "/run/deplo/verify.sock", Net: "unix"}))
	if w := f.serveVerify(t, r); w.Code != 200 {
		t.Errorf("unix socket caller: %d", w.Code)
	}

	bad := counted(t, decide.ReasonBadOriginal)
	for name, edit := range map[string]func(http.Header){
		"no method":      func(h http.Header) { h.Del("X-Forwarded-Method") },
		"no uri":         func(h http.Header) { h.Del("X-Forwarded-Uri") },
		"nothing":        func(h http.Header) { h.Del("X-Forwarded-Uri"); h.Del("X-Forwarded-Method") },
		"two uris":       func(h http.Header) { h.Add("X-Forwarded-Uri", "/healthz") },
		"relative":       func(h http.Header) { h.Set("X-Forwarded-Uri", "healthz") },
		"original clash": func(h http.Header) { h.Set("X-Original-Method", "GET"); h.Set("X-Original-URI", "/healthz") },
	} {
		w := f.serveVerify(t, func() *http.Request { r := named("10.1.0.1:1"); edit(r.Header); return r }())
		if w.Code != 400 {
			t.Errorf("%s: status %d, want 400", name, w.Code)
		}
		checkRefusedVerify(t, w, decide.RefuseBadOriginal)
	}
	if got := counted(t, decide.ReasonBadOriginal) - bad; got != 6 {
		t.Errorf("bad_original counted %v times, want 6", got)
	}
}

// TestVerifyEnvoyPrefix: with from envoy, a path without the prefix is 400.
func TestVerifyEnvoyPrefix(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Verify = &VerifyConfig{From: "envoy", PathPrefix: envoyPrefix} })
	for _, target := range []string{"/v1/workspaces/ws_acme/projects", envoyPrefix, envoyPrefix + "x/v1/workspaces/ws_acme/projects"} {
		r := verifyRequest("GET", target)
		r.Header.Set("Authorization", "Bearer "+f.read.raw)
		if w := f.serveVerify(t, r); w.Code != 400 {
			t.Errorf("%s: status %d, want 400", target, w.Code)
		}
	}
}

// TestVerifyRefusalBodies: each refusal's body is byte for byte what
// Caddyfile.example's handle_errors gives it in proxy mode.
func TestVerifyRefusalBodies(t *testing.T) {
	for _, f := range decide.All() {
		if got, want := string(answers[f.ID].body), refusalJSON(t, f.Code, f.Description); got != want {
			t.Errorf("refusal %s: body %s, want %s", f.Reason, got, want)
		}
	}
}

// TestVerifyThrottle: the guard counts the original client, as the trusted
// caller reports it, and answers 429 with Retry-After.
func TestVerifyThrottle(t *testing.T) {
	f := newFixture(t, func(h *Handler) {
		h.Throttle = &ThrottleConfig{Failures: 3, Window: caddyDuration(time.Minute)}
		h.Verify = &VerifyConfig{}
	})
	attempt := func(client, header, auth string) *httptest.ResponseRecorder {
		r := namers[1].make("GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set(header, client)
		r.Header.Set("Authorization", auth)
		return f.serveVerify(t, r)
	}
	for i := 0; i < 3; i++ {
		if w := attempt("198.51.100.1, 203.0.113.9", "X-Forwarded-For", "Bearer "+mustToken(t)); w.Code != 401 {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	w := attempt("203.0.113.9", "X-Real-IP", "Bearer "+f.read.raw)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("past the budget: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	checkRefusedVerify(t, w, decide.RefuseThrottled)
	// The first X-Forwarded-For entries are the client's word: another
	// client behind the same proxy is not slowed.
	if w := attempt("203.0.113.9, 198.51.100.2", "X-Forwarded-For", "Bearer "+f.read.raw); w.Code != 200 {
		t.Errorf("other client: %d", w.Code)
	}
	// A client's own X-Real-IP, passed along by a proxy that appends to
	// X-Forwarded-For, does not reset its budget.
	r := namers[1].make("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	r.Header.Set("X-Real-IP", "192.0.2.200")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	if w := f.serveVerify(t, r); w.Code != http.StatusTooManyRequests {
		t.Errorf("throttled client with its own X-Real-IP: %d, want 429", w.Code)
	}
}

func TestVerifyStoreUnavailable(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Verify = &VerifyConfig{} })
	cache, err := tokencache.New(unavailableStore{}, tokencache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.h.tokens.Close()
	f.h.tokens, f.h.engine.Tokens = cache, cache
	r := namers[2].make("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	w := f.serveVerify(t, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	checkRefusedVerify(t, w, decide.RefuseStoreError)
}

func TestVerifyJWTRefused(t *testing.T) {
	f := newFixture(t, func(h *Handler) { withJWT(h); h.Verify = &VerifyConfig{} })
	for name, tok := range map[string]string{
		"expired":  mintJWT(t, "at+jwt", -time.Minute, map[string]any{"iat": time.Now().Add(-10 * time.Minute).Unix()}),
		"too long": mintJWT(t, "at+jwt", time.Hour, nil),
		"refresh":  mintJWT(t, "refresh+jwt", 5*time.Minute, nil),
	} {
		r := namers[0].make("GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer "+tok)
		if w := f.serveVerify(t, r); w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s: %d %q", name, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	r := namers[0].make("GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+mintJWT(t, "at+jwt", 5*time.Minute, nil))
	if w := f.serveVerify(t, r); w.Code != 200 || w.Header().Get("X-Deplo-Auth") != "jwt" {
		t.Errorf("valid session: %d %v", w.Code, w.Header())
	}
}

// TestVerifyPreflight: with preflight public, a CORS preflight named by the
// proxy passes without a credential and without identity.
func TestVerifyPreflight(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.PreflightPublic = true; h.Verify = &VerifyConfig{} })
	r := namers[1].make("OPTIONS", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Origin", "https://app.deplo.sh")
	r.Header.Set("Access-Control-Request-Method", "DELETE")
	r.Header.Set("X-Deplo-Workspace", "ws_acme")
	if w := f.serveVerify(t, r); w.Code != 200 || w.Header().Get("X-Deplo-Workspace") != "" {
		t.Errorf("preflight: %d %v", w.Code, w.Header())
	}
	plain := namers[1].make("OPTIONS", "/v1/workspaces/ws_acme/projects")
	if w := f.serveVerify(t, plain); w.Code != 401 {
		t.Errorf("plain OPTIONS: %d", w.Code)
	}
}

// TestVerifySignedIdentity: the signature in the answer covers the
// original method and path, so the upstream verifies it on the request it
// receives, and it fails for any other.
func TestVerifySignedIdentity(t *testing.T) {
	const key = "verify-test-identity-key-0123456789abcdef"
	f := newFixture(t, func(h *Handler) {
		h.SignedIdentity = &SignedIdentityConfig{Keys: []SigningKey{{ID: "k1", Secret: key}}}
		h.Verify = &VerifyConfig{}
	})
	deploy := "/v1/workspaces/ws_acme/projects/weekly-report/deployments"
	r := namers[0].make("POST", deploy+"?dry=1")
	r.Header.Set("Authorization", "Bearer "+f.deploy.raw)
	w := f.serveVerify(t, r)
	if w.Code != 200 || w.Header().Get("X-Deplo-Signature") == "" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	v, err := identity.NewVerifier("X-Deplo-", identity.Key{ID: "k1", Secret: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	upstreamReq := func(method, target string) *http.Request {
		u := httptest.NewRequest(method, target, nil)
		for name, vals := range w.Header() {
			if identityHeadersForTest.Matches(name) {
				u.Header[name] = vals
			}
		}
		return u
	}
	if id, err := v.Verify(upstreamReq("POST", deploy+"?dry=1"), time.Now()); err != nil || id.Subject != "tok_deploy" {
		t.Fatalf("upstream verification: %v %+v", err, id)
	}
	for _, other := range [][2]string{{"DELETE", deploy}, {"POST", "/verify"}, {"POST", "/v1/workspaces/ws_acme/projects/other/deployments"}} {
		if _, err := v.Verify(upstreamReq(other[0], other[1]), time.Now()); err == nil {
			t.Errorf("signature also verifies for %s %s", other[0], other[1])
		}
	}
}

// TestVerifyRefusalLog: a refused verify logs the original method and path,
// not the verify request's URI.
func TestVerifyRefusalLog(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Verify = &VerifyConfig{} })
	core, logs := observer.New(zapcore.InfoLevel)
	f.h.logger = zap.New(core)
	deploy := "/v1/workspaces/ws_acme/projects/p1/deployments"
	r := verifyRequest("GET", "/verify-endpoint-path")
	r.Header.Set("X-Original-Method", "POST")
	r.Header.Set("X-Original-URI", deploy)
	r.Header.Set("X-Real-IP", "203.0.113.5")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	if w := f.serveVerify(t, r); w.Code != 403 {
		t.Fatalf("status %d", w.Code)
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries", len(entries))
	}
	fields := entries[0].ContextMap()
	if fields["original_method"] != "POST" || fields["original_path"] != deploy || fields["client_ip"] != "203.0.113.5" || fields["reason"] != "insufficient_scope" {
		t.Errorf("log fields %v", fields)
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(fields)
	if strings.Contains(buf.String(), "verify-endpoint-path") || strings.Contains(buf.String(), f.read.raw) {
		t.Errorf("log holds the verify URI or the token: %s", buf.String())
	}
}

// BenchmarkServeVerify is the cached API-key decision through the verify
// front door (nginx auth_request's headers), beside BenchmarkServeHTTP.
func BenchmarkServeVerify(b *testing.B) {
	f := newFixture(b, func(h *Handler) { h.Verify = &VerifyConfig{From: "original"} })
	f.h.logger = zap.NewNop()
	next := &upstream{}
	u, _ := url.Parse("/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	base := http.Header{
		"X-Original-Method": {"POST"}, "X-Original-Uri": {u.String()}, "X-Real-Ip": {"198.51.100.7"},
		"Authorization": {"Bearer " + f.deploy.raw}, "User-Agent": {"deplo-cli/1.4.2"}, "Accept": {"application/json"},
	}
	r := verifyRequest("GET", "/auth")
	w := httptest.NewRecorder()
	for i := 0; i < 50; i++ { // warm the cache (ristretto admits asynchronously)
		r.Header = base.Clone()
		_ = f.h.ServeHTTP(w, r, next)
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header = base.Clone()
		w.HeaderMap = http.Header{}
		_ = f.h.ServeHTTP(w, r, next)
	}
	if w.Code != 200 || next.called {
		b.Fatalf("status %d, next called %v", w.Code, next.called)
	}
}

// counted reads deplo_auth_requests_total{method="none",outcome="denied",reason}.
func counted(t *testing.T, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := metricRequests.WithLabelValues("none", outcomeDenied, reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestSidecarExamplesAdapt: the sidecar examples adapt without warnings and
// every verify block in them compiles.
func TestSidecarExamplesAdapt(t *testing.T) {
	for _, path := range []string{"../examples/sidecar/Caddyfile", "../examples/sidecar/forward_auth.caddyfile"} {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": path})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, w := range warnings {
			t.Errorf("%s:%d: %s", w.File, w.Line, w.Message)
		}
		if strings.HasSuffix(path, "/Caddyfile") && strings.Count(string(out), `"verify":{`) != 3 {
			t.Errorf("%s: want three verify sites in %s", path, out)
		}
	}
}

// TestVerifyListen: verify.listen answers verify requests on its own
// socket, outside any Caddy site, with the same decision; a second handler
// on the same address (a config reload) takes it over when the first is
// cleaned up.
func TestVerifyListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "deplo-vl-") // a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "verify.sock")
	listen := func(h *Handler) {
		h.Verify = &VerifyConfig{From: "original", Listen: []string{"unix/" + sock + "|0222"}}
	}
	first := newFixture(t, listen)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	ask := func(f *fixture, path, auth string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://deplo-verify/auth", nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", path)
		req.Header.Set("X-Deplo-Project", "spoofed")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := ask(first, "/v1/workspaces/ws_acme/projects", first.read.raw)
	if resp.StatusCode != 200 || resp.Header.Get("X-Deplo-Subject") != "tok_read" || resp.Header.Get("X-Deplo-Project") != "" {
		t.Fatalf("allowed: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := ask(first, "/v1/workspaces/ws_acme/projects", ""); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="deplo"` {
		t.Fatalf("no credential: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := ask(first, "/v1/workspaces/ws_acme/projects/p1", first.read.raw); resp.StatusCode != 403 {
		t.Fatalf("unlisted: %d", resp.StatusCode)
	}

	second := newFixture(t, listen)
	first.h.closeVerifyListeners() // what Cleanup does to them
	if resp := ask(second, "/v1/workspaces/ws_acme/projects", second.read.raw); resp.StatusCode != 200 || resp.Header.Get("X-Deplo-Subject") != "tok_read" {
		t.Fatalf("after the reload: %d %v", resp.StatusCode, resp.Header)
	}
}

// FuzzVerifyMatchesProxy: a verify request naming a method and a URI gets
// the status proxy mode gives that very request — never 200 where proxy
// mode refuses — and a verify request naming none is 400, never 200.
func FuzzVerifyMatchesProxy(f *testing.F) {
	fx := newFixture(f, func(h *Handler) {
		h.Throttle = &ThrottleConfig{Off: true} // both modes count failures; keep them independent
		h.Verify = &VerifyConfig{From: "forwarded"}
	})
	fx.h.logger = zap.NewNop()
	verify := fx.h.verify
	tokens := []string{fx.read.raw, fx.deploy.raw, fx.admin.raw, fx.project.raw, fx.revoked.raw, "", "sk_live_short", mustToken(f)}
	for _, s := range [][2]string{
		{"GET", "/v1/workspaces/ws_acme/projects"}, {"POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments?x=1"},
		{"DELETE", "/v1/workspaces/ws_acme/projects/p1"}, {"delete", "/v1/workspaces/ws_acme/projects/p1"},
		{"GET", "/v1/workspaces/ws_acme/projects/weekly-report%2F..%2Fbilling/deployments"}, {"GET", "/healthz"},
		{"GET", "/V1/workspaces/ws_acme/projects/"}, {"PO ST", "/x"}, {"GET", "healthz"},
	} {
		f.Add(s[0], s[1], uint8(0))
		f.Add(s[0], s[1], uint8(3))
	}
	f.Fuzz(func(t *testing.T, method, uri string, tok uint8) {
		auth := tokens[int(tok)%len(tokens)]
		orig, err := decide.OriginalOf(decide.SourceForwarded, http.Header{"X-Forwarded-Method": {method}, "X-Forwarded-Uri": {uri}}, "GET", "/", "")

		fx.h.verify = verify
		vr := verifyRequest("GET", "/verify")
		vr.Header["X-Forwarded-Method"] = []string{method}
		vr.Header["X-Forwarded-Uri"] = []string{uri}
		if auth != "" {
			vr.Header.Set("Authorization", "Bearer "+auth)
		}
		w, up, herr := fx.serve(vr)
		if up.called || herr != nil {
			t.Fatalf("verify mode called next (%v) or returned %v", up.called, herr)
		}
		if err != nil {
			if w.Code != 400 {
				t.Fatalf("%q %q names no request (%v) but got %d", method, uri, err, w.Code)
			}
			return
		}

		fx.h.verify = nil // the same handler in proxy mode
		defer func() { fx.h.verify = verify }()
		pr, _ := newRequest("GET", "/")
		pr.Method, pr.URL.Path, pr.URL.RawPath = orig.Method, orig.Path, orig.RawPath
		if auth != "" {
			pr.Header.Set("Authorization", "Bearer "+auth)
		}
		_, pup, perr := fx.serve(pr)
		if want := statusOf(perr); w.Code != want || (w.Code == 200) != pup.called {
			t.Fatalf("%q %q: verify %d, proxy %d (upstream called %v)", method, uri, w.Code, want, pup.called)
		}
	})
}
