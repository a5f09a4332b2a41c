package policy

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/deplo-sh/deplo-auth/grant"
)

// exampleRoutes are the routes of Caddyfile.example and of issue 15's
// examples (a "*" route beside a method route on the same subtree).
var exampleRoutes = []RouteSpec{
	{Method: "GET", Path: "/healthz", Access: AccessPublic},
	{Method: "GET", Path: "/v1/me", Access: AccessAuthenticated},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/projects", Access: AccessScopes, Scopes: grant.ScopeRead, ProjectTokens: true},
	{Method: "POST", Path: "/v1/workspaces/{workspace}/projects", Access: AccessScopes, Scopes: grant.ScopeAdmin},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}", Access: AccessScopes, Scopes: grant.ScopeRead},
	{Method: "DELETE", Path: "/v1/workspaces/{workspace}/projects/{project}", Access: AccessScopes, Scopes: grant.ScopeDelete},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Access: AccessScopes, Scopes: grant.ScopeRead},
	{Method: "POST", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Access: AccessScopes, Scopes: grant.ScopeDeploy},
	{Method: "DELETE", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments/{deployment}", Access: AccessScopes, Scopes: grant.ScopeDelete},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/tokens", Access: AccessScopes, Scopes: grant.ScopeRead},
	{Method: "*", Path: "/v1/workspaces/{workspace}/tokens/", Access: AccessScopes, Scopes: grant.ScopeAdmin},
	{Method: "*", Path: "/v1/workspaces/{workspace}/members/", Access: AccessScopes, Scopes: grant.ScopeAdmin, Via: grant.KindSet(0).With(grant.KindJWT)},
	{Method: "POST", Path: "/v1/workspaces/{workspace}/tokens/", Access: AccessScopes, Scopes: grant.ScopeAdmin, Via: grant.KindSet(0).With(grant.KindJWT)},
	{Method: "*", Path: "/v1/workspaces/{workspace}/settings/", Access: AccessScopes, Scopes: grant.ScopeRead},
	{Method: "POST", Path: "/v1/workspaces/{workspace}/settings/", Access: AccessScopes, Scopes: grant.ScopeAdmin},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}/files/{path...}", Access: AccessScopes, Scopes: grant.ScopeRead},
	{Method: "GET", Path: "/v1/workspaces/{workspace}/reports/{$}", Access: AccessScopes, Scopes: grant.ScopeAdmin},
}

func examplePolicy(t testing.TB, def Default) *Policy {
	t.Helper()
	p, err := New(exampleRoutes, def)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The credentials an attacker holds in these tests: all of ws_acme.
var (
	acmeRead      = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_read", Workspace: "ws_acme", Scopes: grant.ScopeRead}
	acmeAdmin     = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_admin", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	acmeProject   = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_proj", Workspace: "ws_acme", Project: "weekly-report", Scopes: grant.ScopeAdmin}
	acmeJWTAdmin  = &grant.Principal{Kind: grant.KindJWT, Subject: "user_1", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	noWorkspaceJW = &grant.Principal{Kind: grant.KindJWT, Subject: "user_2", Scopes: grant.ScopeAdmin}
	attackers     = []*grant.Principal{acmeRead, acmeAdmin, acmeProject, acmeJWTAdmin, noWorkspaceJW}
)

// decide is the decision the handler makes for who on m.
func decide(m *Match, who *grant.Principal) Decision {
	if m.Public() {
		return Decision{Allow: true, Reason: ReasonPublic}
	}
	return m.Authorize(who)
}

// A method differing only in letter case from a listed method is refused
// wherever a route with that method matches the path, under either default:
// never decided by a "*" route or the default.
func TestMethodCaseVariants(t *testing.T) {
	tests := []struct {
		name, method, path string
		who                *grant.Principal
		variantOf          string // "" when the request is not a variant
		allow              bool
	}{
		{"post via * settings route", "post", "/v1/workspaces/ws_acme/settings/x", acmeRead, "POST /v1/workspaces/{workspace}/settings/", false},
		{"Post via * settings route", "Post", "/v1/workspaces/ws_acme/settings/", acmeRead, "POST /v1/workspaces/{workspace}/settings/", false},
		{"pOsT via * settings route", "pOsT", "/v1/workspaces/ws_acme/settings/a/b", acmeRead, "POST /v1/workspaces/{workspace}/settings/", false},
		{"long s folds to POST", "po\u017ft", "/v1/workspaces/ws_acme/settings/x", acmeRead, "POST /v1/workspaces/{workspace}/settings/", false},
		{"admin token post past via jwt", "post", "/v1/workspaces/ws_acme/tokens/", acmeAdmin, "POST /v1/workspaces/{workspace}/tokens/", false},
		{"delete another workspace", "delete", "/v1/workspaces/ws_other/projects/billing", acmeAdmin, "DELETE /v1/workspaces/{workspace}/projects/{project}", false},
		{"get of GET route", "get", "/v1/workspaces/ws_acme/reports/", acmeRead, "GET /v1/workspaces/{workspace}/reports/{$}", false},
		{"head of GET route", "head", "/v1/workspaces/ws_acme/reports/", acmeRead, "GET /v1/workspaces/{workspace}/reports/{$}", false},
		// Not variants: the listed spelling, or a method no route names.
		{"POST decided by its route", "POST", "/v1/workspaces/ws_acme/settings/x", acmeRead, "", false},
		{"POST admin", "POST", "/v1/workspaces/ws_acme/settings/x", acmeAdmin, "", true},
		{"GET via *", "GET", "/v1/workspaces/ws_acme/settings/x", acmeRead, "", true},
		{"HEAD via GET", "HEAD", "/v1/workspaces/ws_acme/reports/", acmeRead, "", false},
		{"unlisted method via *", "patch", "/v1/workspaces/ws_acme/settings/x", acmeRead, "", true},
		{"post where no POST route matches", "post", "/v1/workspaces/ws_acme/members/x", acmeJWTAdmin, "", true},
	}
	for _, def := range []Default{DefaultDeny, DefaultAuthenticated} {
		p := examplePolicy(t, def)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := p.Match(tt.method, tt.path)
				d := decide(&m, tt.who)
				if d.Allow != tt.allow {
					t.Errorf("default %d: %s %s: allow=%v (%s), want %v", def, tt.method, tt.path, d.Allow, d.Reason, tt.allow)
				}
				var variantOf string
				if m.VariantOf != nil {
					variantOf = m.VariantOf.Pattern()
					if m.Route != nil || d.Reason != ReasonRouteVariant {
						t.Errorf("variant with route %v, reason %s", m.Route, d.Reason)
					}
				}
				if variantOf != tt.variantOf {
					t.Errorf("default %d: %s %s: VariantOf %q, want %q", def, tt.method, tt.path, variantOf, tt.variantOf)
				}
			})
		}
	}
}

// Under default authenticated, a spelling of a listed route (letter case of
// method or path, a trailing slash) is refused, never let through by the
// default; under default deny it is refused as before.
func TestSpellingsOfListedRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		variantOf    string
	}{
		{"DELETE", "/v1/workspaces/ws_other/projects/billing/", "DELETE /v1/workspaces/{workspace}/projects/{project}"},
		{"DELETE", "/V1/workspaces/ws_other/projects/billing", "DELETE /v1/workspaces/{workspace}/projects/{project}"},
		{"DELETE", "/v1/WORKSPACES/WS_OTHER/projects/billing", "DELETE /v1/workspaces/{workspace}/projects/{project}"},
		{"delete", "/v1/workspaces/ws_other/projects/billing", "DELETE /v1/workspaces/{workspace}/projects/{project}"},
		{"Delete", "/V1/Workspaces/ws_acme/Projects/billing/", "DELETE /v1/workspaces/{workspace}/projects/{project}"},
		{"POST", "/v1/workspaces/ws_acme/projects/", "POST /v1/workspaces/{workspace}/projects"},
		{"POST", "/v1/workspaces/ws_acme/Settings/x", "POST /v1/workspaces/{workspace}/settings/"},
		{"POST", "/v1/workspaces/ws_acme/settings", "POST /v1/workspaces/{workspace}/settings/"},
		{"GET", "/v1/workspaces/ws_acme/reports", "GET /v1/workspaces/{workspace}/reports/{$}"},
		{"HEAD", "/v1/workspaces/ws_acme/REPORTS/", "GET /v1/workspaces/{workspace}/reports/{$}"},
		{"GET", "/v1/workspaces/ws_acme/projects/p/FILES/a", "GET /v1/workspaces/{workspace}/projects/{project}/files/{path...}"},
		{"GET", "/v1/workspaces/ws_acme/projects/p/files", "GET /v1/workspaces/{workspace}/projects/{project}/files/{path...}"},
		{"GET", "/HEALTHZ", "GET /healthz"},
		{"GET", "/healthz/", "GET /healthz"},
		{"GET", "/v1/ME", "GET /v1/me"},
		{"PUT", "/v1/workspaces/ws_acme/TOKENS/tok_1", "/v1/workspaces/{workspace}/tokens/"},
		{"PUT", "/v1/workspaces/ws_acme/to\u212Aens/tok_1", "/v1/workspaces/{workspace}/tokens/"}, // KELVIN SIGN
		{"PUT", "/v1/workspaces/ws_acme/\u017Fettings/x", "/v1/workspaces/{workspace}/settings/"}, // LONG S
		{"PUT", "/v1/workspaces/ws_acme/memBers/" + strings.Repeat("x", 100), "/v1/workspaces/{workspace}/members/"},
		{"GET", "/v1/" + strings.Repeat("W", 70) + "/x", ""}, // long segment, folded off the stack: still unlisted
		{"GET", "/v1/unlisted", ""},
		{"PUT", "/v1/workspaces/ws_acme/projects/p/deployments/d/logs", ""},
	}
	deny, authenticated := examplePolicy(t, DefaultDeny), examplePolicy(t, DefaultAuthenticated)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m := authenticated.Match(tt.method, tt.path)
			var variantOf string
			if m.VariantOf != nil {
				variantOf = m.VariantOf.Pattern()
			}
			if variantOf != tt.variantOf {
				t.Errorf("default authenticated: VariantOf %q, want %q", variantOf, tt.variantOf)
			}
			for _, who := range attackers {
				d := decide(&m, who)
				if tt.variantOf != "" && (d.Allow || d.Reason != ReasonRouteVariant) {
					t.Errorf("default authenticated: %s got allow=%v reason=%s, want refused as route_variant", who.Subject, d.Allow, d.Reason)
				}
				md := deny.Match(tt.method, tt.path)
				if d := decide(&md, who); d.Allow {
					t.Errorf("default deny: %s allowed (%s)", who.Subject, d.Reason)
				}
			}
			if tt.variantOf == "" {
				// Unlisted paths are the default's: any valid credential but
				// a project-scoped one, a credential without a workspace
				// included (docs/design.md, "The decision"; issue 15 item 7).
				for _, who := range []*grant.Principal{acmeRead, noWorkspaceJW} {
					if d := decide(&m, who); !d.Allow {
						t.Errorf("default authenticated refused %s: %s", who.Subject, d.Reason)
					}
				}
				if d := decide(&m, acmeProject); d.Allow || d.Reason != ReasonProjectTokenNotAllowed {
					t.Errorf("default authenticated: project token got allow=%v reason=%s", d.Allow, d.Reason)
				}
			}
		})
	}
}

func TestRouteWarnings(t *testing.T) {
	tests := []struct {
		path string
		warn bool
	}{
		{"/v1/projects/{project}", true},
		{"/v1/projects/{project}/files/{path...}", true},
		{"/v1/p/{project...}", true},
		{"/v1/workspaces/{workspace}/projects/{project}", false},
		{"/v1/{project}/of/{workspace}", false},
		{"/v1/workspaces/{workspace}", false},
		{"/v1/projects/{projects}", false},
		{"/v1/projects/", false},
	}
	for _, tt := range tests {
		for _, def := range []Default{DefaultDeny, DefaultAuthenticated} {
			p, err := New([]RouteSpec{
				{Method: "GET", Path: "/healthz", Access: AccessPublic},
				{Method: "GET", Path: tt.path, Access: AccessScopes, Scopes: grant.ScopeRead},
			}, def)
			if err != nil {
				t.Fatal(err)
			}
			w := p.Warnings()
			if got := len(w) == 1; got != tt.warn || len(w) > 1 {
				t.Errorf("%s: warnings %v, want a warning: %v", tt.path, w, tt.warn)
				continue
			}
			if tt.warn && (w[0].Index != 1 || w[0].Pattern != "GET "+tt.path ||
				!strings.HasPrefix(w[0].String(), "route 2 (GET "+tt.path+"): binds {project} without {workspace}")) {
				t.Errorf("%s: warning %+v (%s)", tt.path, w[0], w[0])
			}
		}
	}
}

// FuzzPolicyVariants spells a listed route of exampleRoutes differently —
// letter case of the method and of literal path bytes (ASCII, KELVIN SIGN,
// LONG S), a trailing slash toggled, an encoded or double-encoded "/", "\\",
// "." or "%" put into a wildcard value — and checks, under both defaults and
// for every attacker, that the variant never gets a weaker decision than the
// route as listed, and that a path ValidatePath accepts routes the same after
// a second decoding.
func FuzzPolicyVariants(f *testing.F) {
	// route, workspace, project, case mask, method case mask, toggle slash,
	// encoding.
	f.Add(uint8(5), "ws_other", "billing", uint64(0), uint8(0), true, uint8(0))     // DELETE …/billing/
	f.Add(uint8(5), "ws_other", "billing", uint64(1<<1), uint8(0), false, uint8(0)) // DELETE /V1/…
	f.Add(uint8(5), "ws_other", "billing", uint64(0), uint8(0xff), false, uint8(0)) // delete
	f.Add(uint8(14), "ws_acme", "p", uint64(0), uint8(0xff), false, uint8(0))       // post …/settings/x
	f.Add(uint8(12), "ws_acme", "p", uint64(0), uint8(0x01), false, uint8(0))       // pOST …/tokens/x
	f.Add(uint8(4), "ws_acme", "x", uint64(0), uint8(0), false, uint8(1))           // …/projects/x%252F…
	f.Add(uint8(4), "ws_acme", "x", uint64(0), uint8(0), false, uint8(3))           // /%252e%252E: a dot segment after two decodings
	f.Add(uint8(10), "ws_acme", "p", uint64(1<<40), uint8(0), false, uint8(8))      // KELVIN SIGN in tokens
	f.Add(uint8(13), "ws_acme", "p", uint64(1<<30), uint8(0), false, uint8(16))     // LONG S in settings
	f.Add(uint8(16), "ws_acme", "p", uint64(0), uint8(0xff), true, uint8(0))        // head …/reports
	policies := []*Policy{examplePolicy(f, DefaultDeny), examplePolicy(f, DefaultAuthenticated)}
	methods := []string{"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"}
	f.Fuzz(func(t *testing.T, route uint8, workspace, project string, caseMask uint64, methodMask uint8, toggleSlash bool, encoding uint8) {
		spec := exampleRoutes[int(route)%len(exampleRoutes)]
		pat, err := parseMuxPattern(spec.Path)
		if err != nil {
			t.Fatal(err)
		}
		method := spec.Method
		if method == "*" {
			method = methods[int(methodMask>>4)%len(methods)]
		} else if method == "GET" && methodMask&0x80 != 0 {
			method = "HEAD"
		}
		if !validValue(workspace) || !validValue(project) {
			return
		}
		// The route's own spelling, with literal marking the bytes of the
		// path that come from the pattern rather than a wildcard's value.
		var path strings.Builder
		var literal []bool
		write := func(s string, lit bool) {
			path.WriteString(s)
			for range len(s) {
				literal = append(literal, lit)
			}
		}
		valueAt := -1 // where the last wildcard value ends
		for _, seg := range pat.segments {
			switch {
			case seg.multi && seg.s == "":
				write("/", true)
				write("x", false)
			case seg.multi:
				write("/", true)
				write("a/b", false)
			case seg.wild:
				write("/", true)
				switch seg.s {
				case "workspace":
					write(workspace, false)
				case "project":
					write(project, false)
				default:
					write("d1", false)
				}
				valueAt = path.Len()
			case seg.s == "/":
				write("/", true)
			default:
				write("/", true)
				write(seg.s, true)
			}
		}
		canonical := path.String()
		if ValidatePath(canonical, "") != nil {
			return
		}

		// The variant.
		vmethod := []byte(method)
		for i := range vmethod {
			if methodMask&(1<<(i%4)) != 0 {
				vmethod[i] += 'a' - 'A'
			}
		}
		var v strings.Builder
		for i := 0; i < len(canonical); i++ {
			c := canonical[i]
			switch {
			case !literal[i] || c > 'z' || c < 'A':
				v.WriteByte(c)
			case c == 'k' && encoding&8 != 0:
				v.WriteString("\u212A")
			case c == 's' && encoding&16 != 0:
				v.WriteString("\u017F")
			case caseMask&(1<<(i%64)) != 0 && 'a' <= c && c <= 'z':
				v.WriteByte(c - ('a' - 'A'))
			default:
				v.WriteByte(c)
			}
			if i+1 == valueAt {
				v.WriteString([]string{"", "%2F..%2F..%2Fws_other", "%5C", "/%2e%2E", "%25", "%2f", "%41"}[int(encoding&7)%7])
			}
		}
		variant := v.String()
		if toggleSlash {
			if strings.HasSuffix(variant, "/") && len(variant) > 1 {
				variant = variant[:len(variant)-1]
			} else {
				variant += "/"
			}
		}
		escaped := (&url.URL{Path: variant}).EscapedPath()
		if encoding&32 != 0 {
			// An encoded slash inside a value: the decoded path has a "/"
			// where the escaped form has "%2F".
			escaped = strings.Replace(escaped, "/", "%2F", strings.Count(escaped, "/")-1)
			escaped = strings.Replace(escaped, "%2F", "/", strings.Count(escaped, "%2F")-1)
		}
		if ValidatePath(variant, escaped) != nil {
			return // 400
		}
		if twice, err := url.PathUnescape(variant); err == nil {
			if strings.Count(twice, "/") != strings.Count(variant, "/") || strings.Contains(twice, "\\") ||
				strings.Contains(twice+"/", "/./") || strings.Contains(twice+"/", "/../") {
				t.Fatalf("ValidatePath accepted %q (escaped %q), which a second decoding routes as %q", variant, escaped, twice)
			}
		}
		for _, p := range policies {
			mc, mv := p.Match(method, canonical), p.Match(string(vmethod), variant)
			for _, who := range attackers {
				dc, dv := decide(&mc, who), decide(&mv, who)
				if dv.Allow && !dc.Allow {
					t.Fatalf("default %d, %s: %s %q allowed (%s, route %v) but the listed %s %q is refused (%s)",
						p.def, who.Subject, vmethod, variant, dv.Reason, mv.Route, method, canonical, dc.Reason)
				}
			}
			if mv.Public() && !mc.Public() {
				t.Fatalf("default %d: %s %q is public, the listed %s %q is not", p.def, vmethod, variant, method, canonical)
			}
		}
	})
}

// validValue reports whether s can be a wildcard's value in a path that
// ValidatePath accepts (one non-empty segment, valid UTF-8).
func validValue(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsAny(s, "/\\;%") && s != "." && s != ".." &&
		ValidatePath("/"+s, "") == nil
}
