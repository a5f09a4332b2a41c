package decide

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/throttle"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// mapStore is a key store in memory; down makes it fail like an
// unreachable database.
type mapStore struct {
	mu     sync.Mutex
	tokens map[keystore.Hash]*keystore.Token
	down   bool
	calls  int
}

func (s *mapStore) Lookup(_ context.Context, h keystore.Hash) (*keystore.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return nil, errors.New("dial tcp 10.0.0.5:5432: connection refused")
	}
	if t, ok := s.tokens[h]; ok {
		return t, nil
	}
	return nil, keystore.ErrNotFound
}

func (s *mapStore) Generation() uint64 { return 0 }

var (
	testNow    = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	testSecret = []byte("decide-test-secret-0123456789abcdef")
)

// fixture is an engine over the policy of Caddyfile.example, in short.
type fixture struct {
	engine *Engine
	store  *mapStore
	tokens map[string]string // name → raw token
}

func newFixture(t testing.TB, edit func(*Engine)) *fixture {
	t.Helper()
	pol, err := policy.New([]policy.RouteSpec{
		{Method: "GET", Path: "/healthz", Access: policy.AccessPublic},
		{Method: "GET", Path: "/v1/workspaces/{workspace}/projects", Access: policy.AccessScopes, Scopes: grant.ScopeRead},
		{Method: "POST", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Access: policy.AccessScopes, Scopes: grant.ScopeDeploy},
		{Method: "DELETE", Path: "/v1/workspaces/{workspace}/projects/{project}", Access: policy.AccessScopes, Scopes: grant.ScopeDelete | grant.ScopeAdmin},
		{Method: "GET", Path: "/v1/me", Access: policy.AccessAuthenticated},
		{Method: "POST", Path: "/v1/workspaces/{workspace}/tokens", Access: policy.AccessScopes, Scopes: grant.ScopeAdmin, Via: grant.KindSet(0).With(grant.KindJWT)},
	}, policy.DefaultDeny)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: &mapStore{tokens: map[keystore.Hash]*keystore.Token{}}, tokens: map[string]string{}}
	add := func(name string, tok keystore.Token) {
		raw, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		tok.Hash = keystore.Hash(apikey.Sum(raw))
		f.store.tokens[tok.Hash] = &tok
		f.tokens[name] = raw
	}
	add("read", keystore.Token{ID: "tok_read", Workspace: "ws_acme", Scopes: []string{"read"}})
	add("deploy", keystore.Token{ID: "tok_deploy", Workspace: "ws_acme", Project: "web", Scopes: []string{"deploy", "read"}})
	add("admin", keystore.Token{ID: "tok_admin", Workspace: "ws_acme", Scopes: []string{"admin"}})
	add("revoked", keystore.Token{ID: "tok_revoked", Workspace: "ws_acme", Scopes: []string{"read"}, RevokedAt: testNow.Add(-time.Second)})
	add("expired", keystore.Token{ID: "tok_expired", Workspace: "ws_acme", Scopes: []string{"read"}, ExpiresAt: testNow})
	add("revoked_later", keystore.Token{ID: "tok_later", Workspace: "ws_acme", Scopes: []string{"read"}, RevokedAt: testNow.Add(time.Hour)})
	add("pinned", keystore.Token{ID: "tok_pinned", Workspace: "ws_acme", Scopes: []string{"read"},
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}})
	add("pinned_revoked", keystore.Token{ID: "tok_pinned_revoked", Workspace: "ws_acme", Scopes: []string{"read"},
		RevokedAt: testNow.Add(-time.Second), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	cache, err := tokencache.New(f.store, tokencache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	sessions, err := jwtauth.New(context.Background(), jwtauth.Config{Algorithms: []string{"HS256"}, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sessions.Close)
	f.engine = &Engine{Policy: pol, Tokens: cache, Sessions: sessions}
	if edit != nil {
		edit(f.engine)
	}
	return f
}

func (f *fixture) bearer(name string) []string { return []string{"Bearer " + f.tokens[name]} }

func session(t testing.TB, claims map[string]any) []string {
	t.Helper()
	c := map[string]any{"sub": "user_1", "workspace": "ws_acme", "scope": "read deploy",
		"iat": testNow.Unix(), "exp": testNow.Add(15 * time.Minute).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := jwtauth.Mint("HS256", testSecret, "", c)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"Bearer " + tok}
}

func (f *fixture) decide(method, path string, auth []string) Outcome {
	return f.engine.Decide(context.Background(), &Request{Method: method, Path: path, Authorization: auth,
		Client: "198.51.100.7", Now: testNow})
}

// TestDecide is the refusal table of docs/reference.md ("What the client
// receives on refusal"; docs/design.md, "Refusals"), one row per reason, as an
// attacker (or a legitimate client) would meet it.
func TestDecide(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name         string
		method, path string
		auth         []string
		want         *Refusal // nil: allowed
		wantScope    grant.ScopeSet
		wantSubject  string
	}{
		{"public route, no credential", "GET", "/healthz", nil, nil, 0, ""},
		{"no credential", "GET", "/v1/workspaces/ws_acme/projects", nil, RefuseNoCredential, 0, ""},
		{"no credential on an unlisted route", "GET", "/v1/unlisted", nil, RefuseNoCredential, 0, ""},
		{"basic scheme", "GET", "/v1/workspaces/ws_acme/projects", []string{"Basic dXNlcjpwYXNz"}, RefuseNoCredential, 0, ""},
		{"two Authorization headers", "GET", "/v1/workspaces/ws_acme/projects", append(f.bearer("read"), f.bearer("read")...), refuseMalformed["more than one Authorization header"], 0, ""},
		{"Bearer without token", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer "}, refuseMalformed["Bearer credential missing"], 0, ""},
		{"two tokens", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer a b"}, refuseMalformed["more than one token"], 0, ""},
		{"over 8 KiB", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer " + strings.Repeat("a", 9000)}, refuseMalformed["Authorization header too long"], 0, ""},
		{"not a token", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer hello"}, RefuseNotAToken, 0, ""},
		{"bad checksum", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer sk_live_" + strings.Repeat("a", 32)}, RefuseMalformedToken, 0, ""},
		{"unknown token", "GET", "/v1/workspaces/ws_acme/projects", []string{"Bearer " + mustGenerate(t)}, RefuseUnknownToken, 0, ""},
		{"revoked token", "GET", "/v1/workspaces/ws_acme/projects", f.bearer("revoked"), RefuseRevokedToken, 0, "tok_revoked"},
		{"expired at this instant", "GET", "/v1/workspaces/ws_acme/projects", f.bearer("expired"), RefuseExpiredToken, 0, "tok_expired"},
		{"revocation scheduled later", "GET", "/v1/workspaces/ws_acme/projects", f.bearer("revoked_later"), nil, 0, "tok_later"},
		{"read token reads", "GET", "/v1/workspaces/ws_acme/projects", f.bearer("read"), nil, 0, "tok_read"},
		{"HEAD as GET", "HEAD", "/v1/workspaces/ws_acme/projects", f.bearer("read"), nil, 0, "tok_read"},
		{"read token deploys", "POST", "/v1/workspaces/ws_acme/projects/web/deployments", f.bearer("read"), refuseByPolicy[policy.ReasonInsufficientScope], grant.ScopeDeploy, "tok_read"},
		{"all of several scopes", "DELETE", "/v1/workspaces/ws_acme/projects/web", f.bearer("deploy"), refuseByPolicy[policy.ReasonInsufficientScope], grant.ScopeDelete | grant.ScopeAdmin, "tok_deploy"},
		{"admin satisfies any", "DELETE", "/v1/workspaces/ws_acme/projects/web", f.bearer("admin"), nil, 0, "tok_admin"},
		{"another workspace", "GET", "/v1/workspaces/ws_other/projects", f.bearer("read"), refuseByPolicy[policy.ReasonWorkspaceMismatch], 0, "tok_read"},
		{"another project", "POST", "/v1/workspaces/ws_acme/projects/api/deployments", f.bearer("deploy"), refuseByPolicy[policy.ReasonProjectMismatch], 0, "tok_deploy"},
		{"own project", "POST", "/v1/workspaces/ws_acme/projects/web/deployments", f.bearer("deploy"), nil, 0, "tok_deploy"},
		{"project token, unbound route", "GET", "/v1/workspaces/ws_acme/projects", f.bearer("deploy"), refuseByPolicy[policy.ReasonProjectTokenNotAllowed], 0, "tok_deploy"},
		{"no route", "GET", "/v1/unlisted", f.bearer("admin"), refuseByPolicy[policy.ReasonNoRoute], 0, "tok_admin"},
		{"api key on a jwt route", "POST", "/v1/workspaces/ws_acme/tokens", f.bearer("admin"), refuseKindNotAllowed[grant.KindAPIKey], 0, "tok_admin"},
		{"session on a jwt route", "POST", "/v1/workspaces/ws_acme/tokens", session(t, map[string]any{"scope": "admin"}), nil, 0, "user_1"},
		{"session reads", "GET", "/v1/workspaces/ws_acme/projects", session(t, nil), nil, 0, "user_1"},
		{"session without workspace on a bound route", "GET", "/v1/workspaces/ws_acme/projects", session(t, map[string]any{"workspace": nil}), refuseByPolicy[policy.ReasonNoWorkspace], 0, "user_1"},
		{"session without workspace, authenticated route", "GET", "/v1/me", session(t, map[string]any{"workspace": nil}), nil, 0, "user_1"},
		{"expired session", "GET", "/v1/workspaces/ws_acme/projects", session(t, map[string]any{"exp": testNow.Add(-time.Hour).Unix(), "iat": testNow.Add(-2 * time.Hour).Unix()}), refusalForJWT(jwtauth.ErrExpired), 0, ""},
		{"method in other letter case", "post", "/v1/workspaces/ws_acme/projects/web/deployments", f.bearer("deploy"), refuseByPolicy[policy.ReasonRouteVariant], 0, "tok_deploy"},
		{"method in other letter case, no credential", "Post", "/v1/workspaces/ws_acme/projects/web/deployments", nil, RefuseNoCredential, 0, ""},
		{"double-encoded slash", "GET", "/v1/workspaces/ws_acme/projects%252F..%252Fx", f.bearer("read"), RefuseBadPath, 0, ""},
		{"non-canonical path", "GET", "/v1/workspaces/ws_acme/../ws_other/projects", f.bearer("read"), RefuseBadPath, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := f.decide(tt.method, tt.path, tt.auth)
			if out.Refusal != tt.want {
				t.Fatalf("refusal = %v, want %v", describe(out.Refusal), describe(tt.want))
			}
			if out.Scope != tt.wantScope {
				t.Errorf("scope = %q, want %q", out.Scope, tt.wantScope)
			}
			if out.Subject != tt.wantSubject {
				t.Errorf("subject = %q, want %q", out.Subject, tt.wantSubject)
			}
			allowed := out.Principal != nil || out.Public
			if allowed != (tt.want == nil) || (out.Principal != nil && out.Refusal != nil) {
				t.Errorf("principal %v public %v with refusal %v", out.Principal, out.Public, describe(out.Refusal))
			}
		})
	}
}

func describe(r *Refusal) string {
	if r == nil {
		return "allowed"
	}
	return r.Reason + " (" + r.Description + ")"
}

func mustGenerate(t testing.TB) string {
	t.Helper()
	raw, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDecideStoreDown: an uncached key while the store fails is 503, never
// 401 and never allowed; the error is reported for the log.
func TestDecideStoreDown(t *testing.T) {
	f := newFixture(t, nil)
	f.store.down = true
	out := f.decide("GET", "/v1/workspaces/ws_acme/projects", f.bearer("read"))
	if out.Refusal != RefuseStoreError || out.Err == nil || !out.Refusal.Error || out.Refusal.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %s, err %v", describe(out.Refusal), out.Err)
	}
}

// TestDecideThrottle: past the failure budget a client is throttled, not
// locked out: a credential the caches already hold as valid still passes
// (and is still authorized), anything else gets 429 before any store
// lookup or signature check; another client is not slowed.
func TestDecideThrottle(t *testing.T) {
	f := newFixture(t, func(e *Engine) {
		var err error
		if e.Throttle, err = throttle.New(throttle.Config{Failures: 3, Window: time.Minute}); err != nil {
			t.Fatal(err)
		}
	})
	const projects = "/v1/workspaces/ws_acme/projects"
	other := func(auth []string) Outcome {
		return f.engine.Decide(context.Background(), &Request{Method: "GET", Path: projects,
			Authorization: auth, Client: "203.0.113.9", Now: testNow})
	}
	bad := []string{"Bearer " + mustGenerate(t)}
	for i := 0; i < 3; i++ {
		if out := f.decide("GET", projects, bad); out.Refusal != RefuseUnknownToken {
			t.Fatalf("attempt %d: %s", i, describe(out.Refusal))
		}
	}
	calls := f.store.calls
	// Not cached yet: 429, and the store is not asked.
	out := f.decide("GET", projects, f.bearer("read"))
	if out.Refusal != RefuseThrottled || out.RetryAfter <= 0 || out.Principal != nil {
		t.Fatalf("after the budget, an uncached token: %s, retry %v", describe(out.Refusal), out.RetryAfter)
	}
	if f.store.calls != calls {
		t.Error("the throttled request reached the store")
	}
	// Another client is not slowed, and its use caches the token.
	if out := other(f.bearer("read")); out.Refusal != nil {
		t.Fatalf("another client: %s", describe(out.Refusal))
	}
	jwt := session(t, nil)
	if out := other(jwt); out.Refusal != nil {
		t.Fatalf("another client's session: %s", describe(out.Refusal))
	}
	deadline := time.Now().Add(5 * time.Second) // ristretto admits asynchronously
	for f.engine.Tokens.Cached(keystore.Hash(apikey.Sum(f.tokens["read"]))) == nil ||
		f.engine.Sessions.Cached(strings.TrimPrefix(jwt[0], "Bearer "), testNow) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the token and the session were never cached")
		}
		time.Sleep(time.Millisecond)
	}

	calls = f.store.calls
	throttled := ReasonThrottled
	for name, c := range map[string]struct {
		method, path string
		auth         []string
		want         string // reason; "" allowed
	}{
		"cached API token":                 {"GET", projects, f.bearer("read"), ""},
		"cached session":                   {"GET", projects, jwt, ""},
		"cached token, insufficient scope": {"DELETE", projects + "/web", f.bearer("read"), "insufficient_scope"},
		"uncached token":                   {"GET", projects, f.bearer("admin"), throttled},
		"revoked token":                    {"GET", projects, f.bearer("revoked"), throttled},
		"unknown token":                    {"GET", projects, bad, throttled},
		"uncached session":                 {"GET", projects, session(t, map[string]any{"sub": "user_2"}), throttled},
		"forged session":                   {"GET", projects, []string{jwt[0] + "x"}, throttled},
		"no credential":                    {"GET", projects, nil, throttled},
		"malformed":                        {"GET", projects, []string{"Bearer a b"}, throttled},
	} {
		out := f.decide(c.method, c.path, c.auth)
		got := ""
		if out.Refusal != nil {
			got = out.Refusal.Reason
		}
		if got != c.want {
			t.Errorf("%s: %s, want %q", name, describe(out.Refusal), c.want)
		}
		if c.want == throttled && (out.RetryAfter <= 0 || out.Principal != nil) {
			t.Errorf("%s: retry %v, principal %v", name, out.RetryAfter, out.Principal)
		}
	}
	if f.store.calls != calls {
		t.Errorf("throttled requests reached the store (%d lookups)", f.store.calls-calls)
	}
	// Passing on a cached credential does not reset the budget.
	if out := f.decide("GET", projects, bad); out.Refusal != RefuseThrottled {
		t.Errorf("unknown token after a cached pass: %s", describe(out.Refusal))
	}
}

// TestDecidePreflight: with PreflightPublic only a real preflight passes
// without a credential; without it a preflight needs one.
func TestDecidePreflight(t *testing.T) {
	for _, public := range []bool{false, true} {
		f := newFixture(t, func(e *Engine) { e.PreflightPublic = public })
		for _, tt := range []struct {
			method    string
			preflight bool
			pass      bool
		}{
			{"OPTIONS", true, public},
			{"OPTIONS", false, false},
			{"GET", true, false},
			{"options", true, false},
		} {
			out := f.engine.Decide(context.Background(), &Request{Method: tt.method, Path: "/v1/workspaces/ws_acme/projects",
				Preflight: tt.preflight, Now: testNow})
			if out.Public != tt.pass || (out.Refusal == nil) != tt.pass || out.Principal != nil {
				t.Errorf("public=%v %s preflight=%v: %s", public, tt.method, tt.preflight, describe(out.Refusal))
			}
		}
	}
}

// TestRefusalSet: IDs are dense, every refusal has a code and description,
// and each reason has one status.
// allowed_ips: a pinned token is refused 403 ip_not_allowed from any other
// address, before the policy says what it lacks (a route it has no scope
// for, another workspace, no route); from inside it is decided as usual. The
// address is Request.Client, else Engine.ClientOf; none is never allowed.
func TestDecideAllowedIPs(t *testing.T) {
	var asked int
	f := newFixture(t, func(e *Engine) {
		e.ClientOf = func(ctx context.Context) string {
			asked++
			ip, _ := ctx.Value(clientKey{}).(string)
			return ip
		}
	})
	projects := "/v1/workspaces/ws_acme/projects"
	for _, tt := range []struct {
		name, token, method, path, client, ctxClient string
		want                                         string // reason; "" = allowed
	}{
		{"inside, IPv4", "pinned", "GET", projects, "203.0.113.7", "", ""},
		{"inside, IPv6", "pinned", "GET", projects, "2001:db8:4::1", "", ""},
		{"inside, mapped", "pinned", "GET", projects, "::ffff:203.0.113.7", "", ""},
		{"inside, from ClientOf", "pinned", "GET", projects, "", "203.0.113.8", ""},
		{"outside", "pinned", "GET", projects, "198.51.100.7", "", ReasonIPNotAllowed},
		{"outside, IPv6", "pinned", "GET", projects, "2001:db9::1", "", ReasonIPNotAllowed},
		{"outside, from ClientOf", "pinned", "GET", projects, "", "198.51.100.7", ReasonIPNotAllowed},
		{"no address at all", "pinned", "GET", projects, "", "", ReasonIPNotAllowed},
		{"not an address", "pinned", "GET", projects, "203.0.113.7:5000", "", ReasonIPNotAllowed},
		{"Client wins over ClientOf", "pinned", "GET", projects, "198.51.100.7", "203.0.113.8", ReasonIPNotAllowed},
		// Before the policy: no scope, workspace or route is revealed.
		{"outside, route needs more", "pinned", "DELETE", "/v1/workspaces/ws_acme/projects/web", "198.51.100.7", "", ReasonIPNotAllowed},
		{"outside, another workspace", "pinned", "GET", "/v1/workspaces/ws_other/projects", "198.51.100.7", "", ReasonIPNotAllowed},
		{"outside, no route", "pinned", "GET", "/nowhere", "198.51.100.7", "", ReasonIPNotAllowed},
		{"inside, route needs more", "pinned", "DELETE", "/v1/workspaces/ws_acme/projects/web", "203.0.113.7", "", "insufficient_scope"},
		// Validity first: a revoked pinned token is revoked from anywhere.
		{"revoked, outside", "pinned_revoked", "GET", projects, "198.51.100.7", "", ReasonRevokedToken},
		// A token without allowed_ips never asks for the address.
		{"no condition", "read", "GET", projects, "", "198.51.100.7", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			asked = 0
			ctx := context.WithValue(context.Background(), clientKey{}, tt.ctxClient)
			out := f.engine.Decide(ctx, &Request{Method: tt.method, Path: tt.path, Authorization: f.bearer(tt.token),
				Client: tt.client, Now: testNow})
			got := ""
			if out.Refusal != nil {
				got = out.Refusal.Reason
			}
			if got != tt.want {
				t.Fatalf("reason %q, want %q (%s)", got, tt.want, describe(out.Refusal))
			}
			if tt.want == ReasonIPNotAllowed {
				r := out.Refusal
				if r.Status != http.StatusForbidden || r.Code != "forbidden" || r.Challenge != ChallengeNone ||
					r.Description != "the API token is not allowed from this address" || out.Principal != nil || out.Scope != 0 {
					t.Errorf("refusal %+v, principal %v, scope %v", r, out.Principal, out.Scope)
				}
			}
			if tt.token == "read" && asked != 0 {
				t.Errorf("a token without allowed_ips asked for the client address %d times", asked)
			}
		})
	}
}

type clientKey struct{}

func TestRefusalSet(t *testing.T) {
	status := map[string]int{}
	for i, r := range All() {
		if r.ID != i {
			t.Errorf("%s: ID %d at %d", r.Reason, r.ID, i)
		}
		if r.Code == "" || r.Description == "" || r.Reason == "" {
			t.Errorf("%+v is incomplete", r)
		}
		if s, ok := status[r.Reason]; ok && s != r.Status {
			t.Errorf("reason %s has statuses %d and %d", r.Reason, s, r.Status)
		}
		status[r.Reason] = r.Status
	}
	for _, reason := range jwtauth.Reasons() {
		if status[reason] != http.StatusUnauthorized {
			t.Errorf("JWT reason %s has no 401", reason)
		}
	}
	for _, s := range jwtauth.Sentinels() {
		if got := refusalForJWT(s).Reason; got != jwtauth.Reason(s) {
			t.Errorf("%v answers %s", s, got)
		}
	}
}

// FuzzDecide: credential, method and path together. Whatever arrives, the
// decision is exactly one of refused, public and allowed with a principal;
// an allowed request carries a credential the route accepts; and nothing is
// allowed for a workspace or project the credential is not bound to.
func FuzzDecide(f *testing.F) {
	fx := newFixture(f, nil)
	for _, name := range []string{"read", "deploy", "admin", "revoked"} {
		f.Add("GET", "/v1/workspaces/ws_acme/projects", fx.bearer(name)[0])
		f.Add("POST", "/v1/workspaces/ws_acme/projects/web/deployments", fx.bearer(name)[0])
	}
	f.Add("DELETE", "/v1/workspaces/ws_other/projects/web", fx.bearer("admin")[0])
	f.Add("get", "/V1/workspaces/ws_acme/projects/", "Bearer x.y.z")
	f.Add("GET", "/v1/workspaces/ws_acme%2Fx/projects", "bearer  sk_live_")
	f.Fuzz(func(t *testing.T, method, path, auth string) {
		out := fx.engine.Decide(context.Background(), &Request{Method: method, Path: path, Authorization: []string{auth}, Now: testNow})
		n := 0
		if out.Refusal != nil {
			n++
		}
		if out.Public {
			n++
		}
		if out.Principal != nil {
			n++
		}
		if n != 1 {
			t.Fatalf("refusal %v, public %v, principal %v", describe(out.Refusal), out.Public, out.Principal)
		}
		if out.Public && !out.Match.Public() {
			t.Fatalf("%s %s passed as public on a non-public route", method, path)
		}
		if p := out.Principal; p != nil {
			if out.Match.BindsWorkspace && p.Workspace != out.Match.Workspace {
				t.Fatalf("%s %s allowed for workspace %q", method, path, p.Workspace)
			}
			if p.Project != "" && out.Match.BindsProject && p.Project != out.Match.Project {
				t.Fatalf("%s %s allowed for project %q", method, path, p.Project)
			}
			if out.Match.Route.Access == policy.AccessScopes && !p.Scopes.Satisfies(out.Match.Route.Scopes) {
				t.Fatalf("%s %s allowed without scopes %q", method, path, out.Match.Route.Scopes)
			}
			if policy.ValidatePath(path, "") != nil {
				t.Fatalf("non-canonical %q allowed", path)
			}
		}
	})
}

// BenchmarkDecide is the decision alone, without Caddy: a cached API token
// on a bound route.
func BenchmarkDecide(b *testing.B) {
	f := newFixture(b, nil)
	req := &Request{Method: "POST", Path: "/v1/workspaces/ws_acme/projects/web/deployments", Authorization: f.bearer("deploy"), Now: testNow}
	if out := f.engine.Decide(context.Background(), req); out.Refusal != nil {
		b.Fatal(describe(out.Refusal))
	}
	time.Sleep(10 * time.Millisecond) // let ristretto take the entry in
	b.ReportAllocs()
	for b.Loop() {
		f.engine.Decide(context.Background(), req)
	}
}

// Past the guard's budget a cached, valid token still passes — but a pinned
// one from outside its allowed_ips is no known-valid credential: 429.
func TestDecideThrottledPinnedToken(t *testing.T) {
	f := newFixture(t, func(e *Engine) {
		var err error
		if e.Throttle, err = throttle.New(throttle.Config{Failures: 1, Window: time.Minute}); err != nil {
			t.Fatal(err)
		}
	})
	const projects = "/v1/workspaces/ws_acme/projects"
	from := func(client string, auth []string) Outcome {
		return f.engine.Decide(context.Background(), &Request{Method: "GET", Path: projects, Authorization: auth, Client: client, Now: testNow})
	}
	// Cached by a use from inside.
	if out := from("203.0.113.5", f.bearer("pinned")); out.Refusal != nil {
		t.Fatal(describe(out.Refusal))
	}
	time.Sleep(10 * time.Millisecond) // ristretto admits asynchronously
	for _, client := range []string{"198.51.100.7", "203.0.113.6"} {
		from(client, []string{"Bearer " + mustGenerate(t)}) // the budget spent
	}
	if out := from("198.51.100.7", f.bearer("pinned")); out.Refusal != RefuseThrottled || out.Principal != nil {
		t.Errorf("throttled, pinned token from outside: %s", describe(out.Refusal))
	}
	if out := from("203.0.113.6", f.bearer("pinned")); out.Refusal != nil {
		t.Errorf("throttled, pinned token from inside: %s", describe(out.Refusal))
	}
}
