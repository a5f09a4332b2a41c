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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/identity"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// newSidecarFixture is the fixture's handler configuration in a
// deplo_auth_sidecar app (provisioned, not started).
func newSidecarFixture(t testing.TB, v VerifyConfig, configure func(*Handler)) *fixture {
	t.Helper()
	f, h := fixtureHandler(t, configure)
	s := &Sidecar{Listen: []string{"127.0.0.1:0"}, VerifyConfig: v, Handler: *h}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		cancel()
		if err := s.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	f.s, f.h = s, &s.Handler
	return f
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

// serveVerify serves r as a sidecar listener does.
func (f *fixture) serveVerify(t *testing.T, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := f.s.serveVerify(w, r); err != nil {
		t.Fatalf("the sidecar returned an error: %v", err)
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
			f := newSidecarFixture(t, cfg, nil)
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
	f := newSidecarFixture(t, VerifyConfig{}, nil)
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

// TestVerifyIdentityHeadersPrefix: with a header_prefix in any case the
// answer carries the identity under the canonical spelling of that prefix
// (the names are canonicalised once, at provision, and assigned directly),
// and none under the default prefix.
func TestVerifyIdentityHeadersPrefix(t *testing.T) {
	f := newSidecarFixture(t, VerifyConfig{}, func(h *Handler) { h.HeaderPrefix = "x-acme-id-" })
	r := namers[0].make("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	r.Header.Set("Authorization", "Bearer "+f.project.raw)
	w := f.serveVerify(t, r)
	want := map[string]string{
		"X-Acme-Id-Auth":      "api_key",
		"X-Acme-Id-Subject":   "tok_project",
		"X-Acme-Id-Workspace": "ws_acme",
		"X-Acme-Id-Project":   "weekly-report",
		"X-Acme-Id-Scopes":    "deploy read",
	}
	for name, value := range want {
		if got := w.Header()[name]; len(got) != 1 || got[0] != value {
			t.Errorf("%s = %q, want %q (answer %v)", name, got, value, w.Header())
		}
	}
	for name := range w.Header() {
		if identityHeadersForTest.Matches(name) {
			t.Errorf("answer carries %s under the default prefix", name)
		}
	}
	if w.Code != 200 {
		t.Errorf("status %d", w.Code)
	}
}

// TestVerifyTrust: only trusted callers may name an original request; any
// other caller, or a request naming none or half of one, gets 400 — never
// 200 — and is counted.
func TestVerifyTrust(t *testing.T) {
	f := newSidecarFixture(t, VerifyConfig{Trusted: []string{"10.1.0.0/16", "::1"}}, nil)
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
	f := newSidecarFixture(t, VerifyConfig{From: "envoy", PathPrefix: envoyPrefix}, nil)
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
	f := newSidecarFixture(t, VerifyConfig{}, func(h *Handler) {
		h.Throttle = &ThrottleConfig{Failures: 3, Window: caddyDuration(time.Minute)}
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
	r.Header.Set("Authorization", "Bearer "+f.admin.raw) // not cached: only a cached credential passes a throttled client
	if w := f.serveVerify(t, r); w.Code != http.StatusTooManyRequests {
		t.Errorf("throttled client with its own X-Real-IP: %d, want 429", w.Code)
	}
	// Throttled, not locked out: once the caches hold the read token as
	// valid (the other client's request put it there), the throttled
	// client passes with it.
	deadline := time.Now().Add(5 * time.Second) // ristretto admits asynchronously
	for w := attempt("203.0.113.9", "X-Forwarded-For", "Bearer "+f.read.raw); w.Code != 200; w = attempt("203.0.113.9", "X-Forwarded-For", "Bearer "+f.read.raw) {
		if w.Code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("throttled client with a cached token: %d", w.Code)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestVerifyStoreUnavailable(t *testing.T) {
	f := newSidecarFixture(t, VerifyConfig{}, nil)
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
	f := newSidecarFixture(t, VerifyConfig{}, func(h *Handler) { withJWT(h) })
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
	f := newSidecarFixture(t, VerifyConfig{}, func(h *Handler) { h.PreflightPublic = true })
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
	f := newSidecarFixture(t, VerifyConfig{}, func(h *Handler) {
		h.SignedIdentity = &SignedIdentityConfig{Keys: []SigningKey{{ID: "k1", Secret: key}}}
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
	f := newSidecarFixture(t, VerifyConfig{}, nil)
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
	f := newSidecarFixture(b, VerifyConfig{From: "original"}, nil)
	f.h.logger = zap.NewNop()
	u, _ := url.Parse("/v1/workspaces/ws_acme/projects/weekly-report/deployments")
	base := http.Header{
		"X-Original-Method": {"POST"}, "X-Original-Uri": {u.String()}, "X-Real-Ip": {"198.51.100.7"},
		"Authorization": {"Bearer " + f.deploy.raw}, "User-Agent": {"deplo-cli/1.4.2"}, "Accept": {"application/json"},
	}
	r := verifyRequest("GET", "/auth")
	w := httptest.NewRecorder()
	for i := 0; i < 50; i++ { // warm the cache (ristretto admits asynchronously)
		r.Header = base.Clone()
		_ = f.s.serveVerify(w, r)
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header = base.Clone()
		w.HeaderMap = http.Header{}
		_ = f.s.serveVerify(w, r)
	}
	if w.Code != 200 {
		b.Fatalf("status %d", w.Code)
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
		if strings.HasSuffix(path, "/Caddyfile") && !strings.Contains(string(out), `"deplo_auth_sidecar":{`) {
			t.Errorf("%s: no deplo_auth_sidecar app in %s", path, out)
		}
	}
}

// FuzzVerifyMatchesProxy: a verify request naming a method and a URI gets
// the status proxy mode gives that very request — never 200 where proxy
// mode refuses — and a verify request naming none is 400, never 200.
func FuzzVerifyMatchesProxy(f *testing.F) {
	fx := newSidecarFixture(f, VerifyConfig{From: "forwarded"}, func(h *Handler) {
		h.Throttle = &ThrottleConfig{Off: true} // both modes count failures; keep them independent
	})
	fx.h.logger = zap.NewNop()
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

		vr := verifyRequest("GET", "/verify")
		vr.Header["X-Forwarded-Method"] = []string{method}
		vr.Header["X-Forwarded-Uri"] = []string{uri}
		if auth != "" {
			vr.Header.Set("Authorization", "Bearer "+auth)
		}
		w := httptest.NewRecorder()
		if herr := fx.s.serveVerify(w, vr); herr != nil {
			t.Fatalf("the sidecar returned %v", herr)
		}
		if err != nil {
			if w.Code != 400 {
				t.Fatalf("%q %q names no request (%v) but got %d", method, uri, err, w.Code)
			}
			return
		}

		// The sidecar's handler in proxy mode.
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

// The sidecar decides allowed_ips on the client it determined: the
// X-Forwarded-For walk from a trusted caller, never Caddy's client_ip nor
// the proxy's own address.
func TestVerifyAllowedIPsFollowsForwardedFor(t *testing.T) {
	f := newSidecarFixture(t, VerifyConfig{From: "forwarded"}, nil)
	for _, tt := range []struct {
		xff    string
		token  testToken
		status int
	}{
		{"203.0.113.9", f.elsewhere, 200},
		{"198.51.100.1, 203.0.113.9", f.elsewhere, 200},
		{"203.0.113.9, 198.51.100.1", f.elsewhere, 403},
		{"", f.elsewhere, 403}, // the caller, 127.0.0.1
		{"198.51.100.1", f.pinned, 200},
		{"203.0.113.9", f.pinned, 403},
	} {
		r := verifyRequest("GET", "/")
		r.Header.Set("X-Forwarded-Method", "GET")
		r.Header.Set("X-Forwarded-Uri", "/v1/workspaces/ws_acme/projects")
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		r.Header.Set("Authorization", "Bearer "+tt.token.raw)
		if w := f.serveVerify(t, r); w.Code != tt.status {
			t.Errorf("%s from X-Forwarded-For %q: %d %s, want %d", tt.token.id, tt.xff, w.Code, w.Body, tt.status)
		}
	}
}
