package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/deplo-sh/deplo-auth/grant"
)

// deploPolicy is the route table of the deplo API used across these tests.
func deploPolicy(t testing.TB, def Default) *Policy {
	t.Helper()
	p, err := New([]RouteSpec{
		{Method: "GET", Path: "/healthz", Access: AccessPublic},
		{Method: "GET", Path: "/v1/me", Access: AccessAuthenticated},
		{Method: "GET", Path: "/v1/workspaces/{workspace}/projects", Access: AccessScopes, Scopes: grant.ScopeRead, ProjectTokens: true},
		{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Access: AccessScopes, Scopes: grant.ScopeRead},
		{Method: "POST", Path: "/v1/workspaces/{workspace}/projects/{project}/deployments", Access: AccessScopes, Scopes: grant.ScopeDeploy},
		{Method: "DELETE", Path: "/v1/workspaces/{workspace}/projects/{project}", Access: AccessScopes, Scopes: grant.ScopeDelete},
		{Method: "POST", Path: "/v1/workspaces/{workspace}/projects/{project}/promote", Access: AccessScopes, Scopes: grant.ScopeDeploy | grant.ScopeDelete},
		{Method: "*", Path: "/v1/workspaces/{workspace}/tokens/", Access: AccessScopes, Scopes: grant.ScopeAdmin},
		{Method: "GET", Path: "/v1/workspaces/{workspace}/members", Access: AccessScopes, Scopes: grant.ScopeAdmin, Via: grant.KindSet(0).With(grant.KindJWT)},
		{Method: "GET", Path: "/v1/workspaces/{workspace}/projects/{project}/files/{path...}", Access: AccessScopes, Scopes: grant.ScopeRead},
	}, def)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthorize(t *testing.T) {
	p := deploPolicy(t, DefaultDeny)
	wsRead := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_1", Workspace: "ws_acme", Scopes: grant.ScopeRead}
	wsDeploy := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_2", Workspace: "ws_acme", Scopes: grant.ScopeDeploy}
	wsAdmin := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_3", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	projDeploy := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_4", Workspace: "ws_acme", Project: "weekly-report", Scopes: grant.ScopeDeploy | grant.ScopeRead}
	noWorkspace := &grant.Principal{Kind: grant.KindJWT, Subject: "user_1", Scopes: grant.ScopeAdmin}
	jwtAdmin := &grant.Principal{Kind: grant.KindJWT, Subject: "user_2", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	deployDelete := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_5", Workspace: "ws_acme", Scopes: grant.ScopeDeploy | grant.ScopeDelete}

	tests := []struct {
		name         string
		who          *grant.Principal
		method, path string
		allow        bool
		reason       Reason
		scope        grant.ScopeSet
	}{
		{"public", nil, "GET", "/healthz", true, ReasonPublic, 0},
		{"authenticated any scope", wsRead, "GET", "/v1/me", true, ReasonAllowed, 0},
		{"authenticated refuses project token", projDeploy, "GET", "/v1/me", false, ReasonProjectTokenNotAllowed, 0},
		{"read own workspace", wsRead, "GET", "/v1/workspaces/ws_acme/projects", true, ReasonAllowed, 0},
		{"HEAD served by GET route", wsRead, "HEAD", "/v1/workspaces/ws_acme/projects", true, ReasonAllowed, 0},
		{"other workspace", wsRead, "GET", "/v1/workspaces/ws_evil/projects", false, ReasonWorkspaceMismatch, 0},
		{"workspace case differs", wsRead, "GET", "/v1/workspaces/WS_ACME/projects", false, ReasonWorkspaceMismatch, 0},
		{"workspace prefix", wsRead, "GET", "/v1/workspaces/ws_acme2/projects", false, ReasonWorkspaceMismatch, 0},
		{"read cannot deploy", wsRead, "POST", "/v1/workspaces/ws_acme/projects/p1/deployments", false, ReasonInsufficientScope, grant.ScopeDeploy},
		{"deploy cannot read", wsDeploy, "GET", "/v1/workspaces/ws_acme/projects/p1/deployments", false, ReasonInsufficientScope, grant.ScopeRead},
		{"deploy cannot delete", wsDeploy, "DELETE", "/v1/workspaces/ws_acme/projects/p1", false, ReasonInsufficientScope, grant.ScopeDelete},
		{"deploy", wsDeploy, "POST", "/v1/workspaces/ws_acme/projects/p1/deployments", true, ReasonAllowed, 0},
		{"two scopes need both", wsDeploy, "POST", "/v1/workspaces/ws_acme/projects/p1/promote", false, ReasonInsufficientScope, grant.ScopeDeploy | grant.ScopeDelete},
		{"two scopes held", deployDelete, "POST", "/v1/workspaces/ws_acme/projects/p1/promote", true, ReasonAllowed, 0},
		{"admin satisfies all", wsAdmin, "POST", "/v1/workspaces/ws_acme/projects/p1/promote", true, ReasonAllowed, 0},
		{"admin satisfies delete", wsAdmin, "DELETE", "/v1/workspaces/ws_acme/projects/p1", true, ReasonAllowed, 0},
		{"admin still bound to workspace", wsAdmin, "DELETE", "/v1/workspaces/ws_other/projects/p1", false, ReasonWorkspaceMismatch, 0},
		{"tokens subtree", wsAdmin, "POST", "/v1/workspaces/ws_acme/tokens/", true, ReasonAllowed, 0},
		{"tokens subtree deep", wsAdmin, "DELETE", "/v1/workspaces/ws_acme/tokens/tok_1", true, ReasonAllowed, 0},
		{"tokens need admin", wsDeploy, "GET", "/v1/workspaces/ws_acme/tokens/x", false, ReasonInsufficientScope, grant.ScopeAdmin},
		{"project token own project", projDeploy, "POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", true, ReasonAllowed, 0},
		{"project token other project", projDeploy, "POST", "/v1/workspaces/ws_acme/projects/billing/deployments", false, ReasonProjectMismatch, 0},
		{"project token longer name", projDeploy, "POST", "/v1/workspaces/ws_acme/projects/weekly-report-backup/deployments", false, ReasonProjectMismatch, 0},
		{"project token shorter name", projDeploy, "POST", "/v1/workspaces/ws_acme/projects/weekly/deployments", false, ReasonProjectMismatch, 0},
		{"project token on project_tokens route", projDeploy, "GET", "/v1/workspaces/ws_acme/projects", true, ReasonAllowed, 0},
		{"project token on route without project", projDeploy, "GET", "/v1/workspaces/ws_acme/tokens/x", false, ReasonProjectTokenNotAllowed, 0},
		{"project token other workspace", projDeploy, "POST", "/v1/workspaces/ws_x/projects/weekly-report/deployments", false, ReasonWorkspaceMismatch, 0},
		{"no workspace never passes workspace route", noWorkspace, "GET", "/v1/workspaces/ws_acme/projects", false, ReasonNoWorkspace, 0},
		{"no workspace on authenticated route", noWorkspace, "GET", "/v1/me", true, ReasonAllowed, 0},
		{"via jwt refuses api key", wsAdmin, "GET", "/v1/workspaces/ws_acme/members", false, ReasonKindNotAllowed, 0},
		{"via jwt allows jwt", jwtAdmin, "GET", "/v1/workspaces/ws_acme/members", true, ReasonAllowed, 0},
		{"unlisted path default deny", wsAdmin, "GET", "/v1/secret", false, ReasonNoRoute, 0},
		{"unlisted method default deny", wsAdmin, "PUT", "/v1/workspaces/ws_acme/projects", false, ReasonNoRoute, 0},
		{"rest wildcard", projDeploy, "GET", "/v1/workspaces/ws_acme/projects/weekly-report/files/a/b.txt", true, ReasonAllowed, 0},
		{"rest wildcard other project", projDeploy, "GET", "/v1/workspaces/ws_acme/projects/x/files/weekly-report/a", false, ReasonProjectMismatch, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := p.Match(tt.method, tt.path)
			var d Decision
			if m.Public() {
				d = Decision{Allow: true, Reason: ReasonPublic}
			} else {
				if tt.who == nil {
					t.Fatal("route is not public")
				}
				d = m.Authorize(tt.who)
			}
			if d.Allow != tt.allow || d.Reason != tt.reason || d.Scope != tt.scope {
				t.Errorf("%s %s: got allow=%v reason=%s scope=%q, want allow=%v reason=%s scope=%q",
					tt.method, tt.path, d.Allow, d.Reason, d.Scope, tt.allow, tt.reason, tt.scope)
			}
		})
	}
}

func TestDefaultAuthenticated(t *testing.T) {
	p := deploPolicy(t, DefaultAuthenticated)
	ws := &grant.Principal{Kind: grant.KindAPIKey, Workspace: "ws_acme", Scopes: grant.ScopeRead}
	proj := &grant.Principal{Kind: grant.KindAPIKey, Workspace: "ws_acme", Project: "p", Scopes: grant.ScopeRead}
	m := p.Match("GET", "/v1/unlisted")
	if d := m.Authorize(ws); !d.Allow {
		t.Errorf("default authenticated refused a workspace token: %s", d.Reason)
	}
	if d := m.Authorize(proj); d.Allow {
		t.Error("default authenticated let a project token through")
	}
	// Any valid credential: one bound to no workspace too (docs/design.md, "The decision").
	if d := m.Authorize(&grant.Principal{Kind: grant.KindJWT, Scopes: grant.ScopeRead}); !d.Allow {
		t.Errorf("default authenticated refused a credential without a workspace: %s", d.Reason)
	}
	// A listed route keeps its own rule.
	m = p.Match("DELETE", "/v1/workspaces/ws_acme/projects/p1")
	if d := m.Authorize(ws); d.Allow {
		t.Error("a listed route fell back to the default")
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name   string
		routes []RouteSpec
		index  int
		want   string
	}{
		{"conflict", []RouteSpec{
			{Method: "GET", Path: "/a/{x}/c", Access: AccessScopes, Scopes: grant.ScopeRead},
			{Method: "GET", Path: "/a/b/{y}", Access: AccessScopes, Scopes: grant.ScopeRead},
		}, 1, "conflicts"},
		{"duplicate", []RouteSpec{
			{Method: "GET", Path: "/a", Access: AccessPublic},
			{Method: "GET", Path: "/a", Access: AccessScopes, Scopes: grant.ScopeRead},
		}, 1, "/a"},
		{"no scopes", []RouteSpec{{Method: "GET", Path: "/a"}}, 0, "needs at least one scope"},
		{"public with scopes", []RouteSpec{{Method: "GET", Path: "/a", Access: AccessPublic, Scopes: grant.ScopeRead}}, 0, "public"},
		{"bad pattern", []RouteSpec{{Method: "GET", Path: "/a/{", Access: AccessPublic}}, 0, "route 1"},
		{"relative", []RouteSpec{{Method: "GET", Path: "a", Access: AccessPublic}}, 0, "must start with /"},
		// "post" beside "POST" would be two routes for what many upstreams
		// run as one method.
		{"lower-case method", []RouteSpec{
			{Method: "POST", Path: "/a", Access: AccessScopes, Scopes: grant.ScopeAdmin},
			{Method: "post", Path: "/a", Access: AccessScopes, Scopes: grant.ScopeRead},
		}, 1, "upper case"},
		{"mixed-case method", []RouteSpec{{Method: "Get", Path: "/a", Access: AccessPublic}}, 0, "upper case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.routes, DefaultDeny)
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RouteError", err)
			}
			if re.Index != tt.index || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (index %d), want index %d and %q", err, re.Index, tt.index, tt.want)
			}
		})
	}
}

func TestValidatePath(t *testing.T) {
	tests := []struct {
		path, raw string
		ok        bool
	}{
		{"/", "", true},
		{"/v1/workspaces/ws_acme/projects", "", true},
		{"/v1/workspaces/ws_acme/tokens/", "", true},
		{"/v1/a b", "/v1/a%20b", true},
		{"", "", false},
		{"v1", "", false},
		{"//v1", "", false},
		{"/v1//workspaces", "", false},
		{"/v1/./workspaces", "", false},
		{"/v1/../admin", "", false},
		{"/v1/..", "", false},
		{"/v1/.", "", false},
		{"/v1/workspaces/ws_a/projects/p1/../../../ws_b", "", false},
		{"/v1/workspaces/ws_a/projects/a/b", "/v1/workspaces/ws_a/projects/a%2Fb", false},
		{"/v1/workspaces/ws_a/projects/a/b", "/v1/workspaces/ws_a/projects/a%2fb", false},
		{"/v1/a\\b", "/v1/a%5Cb", false},
		{"/v1/a\\b", "", false},
		{"/v1/a\x00", "/v1/a%00", false},
		{"/v1/a\r\n", "", false},
		{"/v1/ws;x", "", false},
		{"/v1/...", "", true}, // three dots are a name, not a dot segment
		{"/v1/.well-known", "", true},
		// Double encoding: an upstream that decodes twice must not see a
		// "/", "\", "." or "%" the policy did not. net/url keeps no escaped
		// form for these (it is the default encoding), hence raw "".
		{"/v1/workspaces/ws_acme/projects/x%2F..%2F..%2F..%2Fws_other%2Fprojects%2Fp", "", false},
		{"/v1/workspaces/ws_acme/projects/x%2F..%2F..%2F..%2Fws_other%2Fprojects%2Fp",
			"/v1/workspaces/ws_acme/projects/x%252F..%252F..%252F..%252Fws_other%252Fprojects%252Fp", false},
		{"/v1/a%2fb", "", false},
		{"/v1/a%5Cb", "", false},
		{"/v1/a%5cb", "", false},
		{"/v1/%2E%2E/admin", "", false},
		{"/v1/%2e%2e", "", false},
		{"/v1/a%2525252Fb", "", false}, // any depth
		{"/v1/a%25", "", false},
		{"/v1/a%41b", "", true}, // a double-encoded letter routes nowhere else
		{"/v1/a%2", "", true},   // these are not escapes of "/", "\", "." or "%"
		{"/v1/a%", "", true},
		{"/v1/100%", "", true},
		{"/v1/a%3Bb", "", true}, // ";" after a second decoding adds no segment
		{"/v1/a%20b", "", true},
		{"/v1/a%2Gb", "", true},
	}
	for _, tt := range tests {
		err := ValidatePath(tt.path, tt.raw)
		if (err == nil) != tt.ok {
			t.Errorf("ValidatePath(%q, %q) = %v, want ok=%v", tt.path, tt.raw, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrPath) {
			t.Errorf("error %v does not wrap ErrPath", err)
		}
	}
}

func FuzzPolicy(f *testing.F) {
	for _, s := range []string{
		"/v1/workspaces/ws_acme/projects/weekly-report/deployments",
		"/v1/workspaces/ws_acme/projects/../../ws_b/projects",
		"/v1/workspaces/ws_acme%2Fx/projects",
		"/healthz", "/", "//", "/v1/workspaces/ws_acme/tokens/",
	} {
		f.Add("GET", s, "")
		f.Add("POST", s, s)
	}
	policies := []*Policy{deploPolicy(f, DefaultDeny), deploPolicy(f, DefaultAuthenticated)}
	principals := []*grant.Principal{
		{Kind: grant.KindAPIKey, Workspace: "ws_acme", Project: "weekly-report", Scopes: grant.ScopeAdmin},
		{Kind: grant.KindAPIKey, Workspace: "ws_acme", Scopes: grant.ScopeAdmin},
	}
	f.Fuzz(func(t *testing.T, method, path, raw string) {
		if ValidatePath(path, raw) != nil {
			return
		}
		for _, p := range policies {
			m := p.Match(method, path)
			if m.Public() {
				continue
			}
			for _, who := range principals {
				if d := m.Authorize(who); d.Allow {
					checkAllowed(t, &m, who, method, path)
				}
			}
		}
	})
}

// checkAllowed fails unless an allowed request of who (of ws_acme) is in its
// own workspace and, when the route binds one, its project.
func checkAllowed(t *testing.T, m *Match, who *grant.Principal, method, path string) {
	if m.Route.Access == AccessAuthenticated {
		return // any valid credential, by definition
	}
	if !m.BindsWorkspace || m.Workspace != who.Workspace || !strings.Contains(path, "/"+who.Workspace+"/") {
		t.Fatalf("%s %q allowed outside the workspace (route %s)", method, path, m.Route.Pattern())
	}
	if who.Project != "" && m.BindsProject && m.Project != who.Project {
		t.Fatalf("%s %q allowed for project %q", method, path, m.Project)
	}
}

// validatePathReference is ValidatePath as first written (a switch per
// byte); FuzzValidatePath holds the table-driven version to it.
func validatePathReference(path, escaped string) error {
	if len(path) == 0 || path[0] != '/' {
		return fmt.Errorf("%w: must start with /", ErrPath)
	}
	segStart := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			switch {
			case c < 0x20 || c == 0x7f:
				return fmt.Errorf("%w: control character", ErrPath)
			case c == '\\':
				return fmt.Errorf("%w: backslash", ErrPath)
			case c == ';':
				return fmt.Errorf("%w: semicolon", ErrPath)
			case c == '%' && i+2 < len(path) && slices.Contains([]string{"2F", "2f", "5C", "5c", "2E", "2e", "25"}, path[i+1:i+3]):
				return fmt.Errorf("%w: double-encoded character", ErrPath)
			case c != '/':
				continue
			}
		}
		// path[segStart:i] is a complete segment; a trailing empty one
		// ("/a/") is the subtree form and allowed.
		switch seg := path[segStart:i]; {
		case seg == "" && i < len(path):
			return fmt.Errorf("%w: empty segment", ErrPath)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: dot segment", ErrPath)
		}
		segStart = i + 1
	}
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		switch escaped[i+1 : i+3] {
		case "2F", "2f", "5C", "5c":
			return fmt.Errorf("%w: encoded slash", ErrPath)
		}
	}
	return nil
}

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{
		"/", "//", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "/v1/..", "/v1/./a",
		"/v1/a\\b", "/v1/a;b", "/v1/a\x00", "/v1/a\x7f", "/v1/...", "/v1/.well-known", "v1", "",
	} {
		f.Add(s, "")
		f.Add(s, strings.ReplaceAll(s, "/", "%2F"))
	}
	f.Fuzz(func(t *testing.T, path, escaped string) {
		got, want := ValidatePath(path, escaped), validatePathReference(path, escaped)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("ValidatePath(%q, %q) = %v, the reference says %v", path, escaped, got, want)
		}
	})
}

func BenchmarkValidatePath(b *testing.B) {
	const path = "/v1/workspaces/ws_acme/projects/weekly-report/deployments"
	b.ReportAllocs()
	for b.Loop() {
		if ValidatePath(path, "") != nil {
			b.Fatal("refused")
		}
	}
}

// BenchmarkPolicyMatch measures Policy.Match on the deplo table: listed
// routes, the "*" route, HEAD served by GET, and unlisted requests under
// both defaults (the path that consults the spellings of listed routes).
func BenchmarkPolicyMatch(b *testing.B) {
	for _, bc := range []struct {
		name, method, path string
		def                Default
	}{
		{"listed", "GET", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", DefaultDeny},
		{"star_route", "POST", "/v1/workspaces/ws_acme/tokens/tok_1", DefaultDeny},
		{"head_via_get", "HEAD", "/v1/workspaces/ws_acme/projects", DefaultDeny},
		{"rest_wildcard", "GET", "/v1/workspaces/ws_acme/projects/weekly-report/files/a/b/c.txt", DefaultDeny},
		{"unlisted_deny", "GET", "/v1/unlisted/path", DefaultDeny},
		{"unlisted_authenticated", "GET", "/v1/unlisted/path", DefaultAuthenticated},
		{"unlisted_authenticated_mixed_case", "GET", "/v1/Unlisted/Path/Deeper", DefaultAuthenticated},
		{"unlisted_method_authenticated", "PUT", "/v1/workspaces/ws_acme/projects", DefaultAuthenticated},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := deploPolicy(b, bc.def)
			b.ReportAllocs()
			for b.Loop() {
				if m := p.Match(bc.method, bc.path); m.Route == nil && bc.def == DefaultAuthenticated {
					b.Fatal("no route under default authenticated")
				}
			}
		})
	}
}
