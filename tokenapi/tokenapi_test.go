package tokenapi

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
)

var base = func() *Base {
	b, err := ParseBase("/v1/workspaces/{workspace}/tokens")
	if err != nil {
		panic(err)
	}
	return b
}()

// seeded is the number of tokens newFixture stores.
const seeded = 8

// fixture is a Service over a real key file holding tokens of two
// workspaces and one project.
type fixture struct {
	svc  *Service
	path string
	now  time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileTokenManager{Path: path}
	p := "weekly-report"
	for _, e := range []keystore.TokenEntry{
		{ID: "tok_ws", Name: "workspace token", Workspace: "ws_acme", Scopes: []string{"read"}},
		{ID: "tok_proj", Name: "project token", Workspace: "ws_acme", Project: &p, Scopes: []string{"deploy"}},
		{ID: "tok_other", Name: "other workspace", Workspace: "ws_other", Scopes: []string{"admin"}},
		// The API token callers below: a create re-checks its creator.
		{ID: "tok_r", Name: "reader", Workspace: "ws_acme", Scopes: []string{"read"}},
		{ID: "tok_d", Name: "deployer", Workspace: "ws_acme", Scopes: []string{"deploy", "read"}},
		{ID: "tok_p", Name: "project agent", Workspace: "ws_acme", Project: &p, Scopes: []string{"deploy", "read"}},
		{ID: "tok_pa", Name: "project admin", Workspace: "ws_acme", Project: &p, Scopes: []string{"admin"}},
		{ID: "tok_o", Name: "other admin", Workspace: "ws_other", Scopes: []string{"admin"}},
	} {
		raw, _ := apikey.Generate()
		e.Hash = apikey.Sum(raw).String()
		e.CreatedAt = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		if err := admin.CreateToken(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	return &fixture{svc: &Service{Store: admin, Now: func() time.Time { return now }}, path: path, now: now}
}

var (
	admin      = &grant.Principal{Kind: grant.KindJWT, Subject: "user_42", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	reader     = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_r", Workspace: "ws_acme", Scopes: grant.ScopeRead}
	deployer   = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_d", Workspace: "ws_acme", Scopes: grant.ScopeDeploy | grant.ScopeRead}
	projAgent  = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_p", Workspace: "ws_acme", Project: "weekly-report", Scopes: grant.ScopeDeploy | grant.ScopeRead}
	projAdmin  = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_pa", Workspace: "ws_acme", Project: "weekly-report", Scopes: grant.ScopeAdmin}
	otherAdmin = &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_o", Workspace: "ws_other", Scopes: grant.ScopeAdmin}
)

func (f *fixture) do(t testing.TB, who *grant.Principal, method, path, body string) Answer {
	t.Helper()
	target, ok := base.Match(path)
	if !ok {
		t.Fatalf("%s is not under the base", path)
	}
	req := &Request{Method: method, Target: target, Caller: who, ContentType: "application/json", Body: strings.NewReader(body)}
	return f.svc.Serve(context.Background(), req)
}

func (f *fixture) tokens(t testing.TB) []keystore.TokenEntry {
	t.Helper()
	kf, err := keystore.ReadKeyFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	return kf.Tokens
}

func errorOf(t testing.TB, a Answer) (code, description string) {
	t.Helper()
	var doc struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(a.Body, &doc); err != nil {
		t.Fatalf("body %q is not a JSON error", a.Body)
	}
	return doc.Error, doc.Description
}

func TestCreateInputRules(t *testing.T) {
	const ws = "/v1/workspaces/ws_acme/tokens"
	long := strings.Repeat("n", 101)
	tests := []struct {
		name, body, field string
	}{
		{"empty body", ``, "body:"},
		{"not an object", `["read"]`, "body:"},
		{"no name", `{"scopes":["read"]}`, "name:"},
		{"no scopes", `{"name":"x"}`, "scopes:"},
		{"empty name", `{"name":"","scopes":["read"]}`, "name:"},
		{"name too long", `{"name":"` + long + `","scopes":["read"]}`, "name:"},
		{"name with a control character", `{"name":"a\u0007b","scopes":["read"]}`, "name:"},
		{"name with a newline", `{"name":"a\nb","scopes":["read"]}`, "name:"},
		{"name with a format character", `{"name":"a\u202eb","scopes":["read"]}`, "name:"},
		{"name not a string", `{"name":42,"scopes":["read"]}`, "name:"},
		{"name null", `{"name":null,"scopes":["read"]}`, "name:"},
		{"scopes empty", `{"name":"x","scopes":[]}`, "scopes:"},
		{"scopes not an array", `{"name":"x","scopes":"read"}`, "scopes:"},
		{"scopes null", `{"name":"x","scopes":null}`, "scopes:"},
		{"unknown scope", `{"name":"x","scopes":["read","write"]}`, `scopes: unknown scope "write" (want read, deploy, delete or admin)`},
		{"a token as a scope", `{"name":"x","scopes":["sk_live_yhSX5M7demkl9gRluxZepnI4pl0zgQx2"]}`, `scopes: unknown scope (not shown)`},
		{"scope in upper case", `{"name":"x","scopes":["READ"]}`, "scopes:"},
		{"null scope", `{"name":"x","scopes":[null]}`, "scopes:"},
		{"scope twice", `{"name":"x","scopes":["read","read"]}`, "scopes:"},
		{"project not a slug", `{"name":"x","scopes":["read"],"project":"Weekly Report"}`, "project:"},
		{"project with a slash", `{"name":"x","scopes":["read"],"project":"a/b"}`, "project:"},
		{"project empty", `{"name":"x","scopes":["read"],"project":""}`, "project:"},
		{"project leading hyphen", `{"name":"x","scopes":["read"],"project":"-a"}`, "project:"},
		{"expires_at not RFC 3339", `{"name":"x","scopes":["read"],"expires_at":"tomorrow"}`, "expires_at:"},
		{"expires_at a number", `{"name":"x","scopes":["read"],"expires_at":1893456000}`, "expires_at:"},
		{"expires_at in the past", `{"name":"x","scopes":["read"],"expires_at":"2026-11-30T11:59:59Z"}`, "expires_at:"},
		{"expires_at now", `{"name":"x","scopes":["read"],"expires_at":"2026-11-30T12:00:00Z"}`, "expires_at:"},
		{"unknown field", `{"name":"x","scopes":["read"],"workspace":"ws_other"}`, "unknown field \"workspace\""},
		{"field in another case", `{"Name":"x","scopes":["read"]}`, "unknown field \"Name\""},
		{"duplicate key", `{"name":"x","scopes":["read"],"scopes":["admin"]}`, "scopes: appears more than once"},
		{"trailing data", `{"name":"x","scopes":["read"]} {"name":"y"}`, "body: data after"},
		{"trailing garbage", `{"name":"x","scopes":["read"]}x`, "body: data after"},
		{"truncated", `{"name":"x","scopes":["read"]`, "body:"},
		{"invalid UTF-8", "{\"name\":\"a\xffb\",\"scopes\":[\"read\"]}", "body: not valid UTF-8"},
		{"over 16 KiB", `{"name":"x","scopes":["read"]}` + strings.Repeat(" ", MaxBodyBytes), "body: larger than"},
		{"a token as a field name", `{"sk_live_yhSX5M7demkl9gRluxZepnI4pl0zgQx2":1}`, "(not shown)"},
		{"allowed_ips empty", `{"name":"x","scopes":["read"],"allowed_ips":[]}`, "allowed_ips:"},
		{"allowed_ips a string", `{"name":"x","scopes":["read"],"allowed_ips":"10.0.0.0/8"}`, "allowed_ips:"},
		{"allowed_ips null entry", `{"name":"x","scopes":["read"],"allowed_ips":[null]}`, "allowed_ips:"},
		{"allowed_ips a number", `{"name":"x","scopes":["read"],"allowed_ips":[10]}`, "allowed_ips:"},
		{"allowed_ips bad prefix", `{"name":"x","scopes":["read"],"allowed_ips":["10.0.0.0/33"]}`, "allowed_ips: entry 0"},
		{"allowed_ips a host name", `{"name":"x","scopes":["read"],"allowed_ips":["10.0.0.0/8","ci.example.com"]}`, "allowed_ips: entry 1"},
		{"allowed_ips a zone", `{"name":"x","scopes":["read"],"allowed_ips":["fe80::1%eth0"]}`, "allowed_ips: entry 0"},
		{"allowed_ips 33 prefixes", `{"name":"x","scopes":["read"],"allowed_ips":["10.0.0.0/8"` + strings.Repeat(`,"10.0.0.0/8"`, 32) + `]}`, "allowed_ips: at most 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.do(t, admin, "POST", ws, tt.body)
			if a.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", a.Status, a.Body)
			}
			code, desc := errorOf(t, a)
			if code != "invalid_request" || !strings.Contains(desc, tt.field) {
				t.Errorf("error %q %q, want invalid_request naming %q", code, desc, tt.field)
			}
			if strings.Contains(desc, "sk_live_") {
				t.Error("the description echoes a token")
			}
			if a.Op == nil || a.Op.Name != "create" || a.Op.Result != ResultInvalid {
				t.Errorf("operation %+v, want a refused create", a.Op)
			}
			if n := len(f.tokens(t)); n != seeded {
				t.Fatalf("the key file holds %d tokens, want the 3 it had", n)
			}
		})
	}
}

// allowed_ips at create: normalised, stored, shown by the 201, list and
// get; a token without them shows [].
func TestCreateAllowedIPs(t *testing.T) {
	f := newFixture(t)
	const ws = "/v1/workspaces/ws_acme/tokens"
	a := f.do(t, admin, "POST", ws, `{"name":"ci","scopes":["deploy"],"allowed_ips":["203.0.113.77/24","2001:db8::/32","198.51.100.7","203.0.113.0/24"]}`)
	if a.Status != 201 {
		t.Fatalf("create: %d %s", a.Status, a.Body)
	}
	want := []string{"203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"}
	var made struct {
		ID         string
		AllowedIPs []string `json:"allowed_ips"`
	}
	if err := json.Unmarshal(a.Body, &made); err != nil || !slices.Equal(made.AllowedIPs, want) {
		t.Fatalf("201 shows allowed_ips %q (%v), want %q", made.AllowedIPs, err, want)
	}
	for _, e := range f.tokens(t) {
		if e.ID == made.ID && !slices.Equal(e.AllowedIPs, want) {
			t.Errorf("stored %q", e.AllowedIPs)
		}
	}
	g := f.do(t, admin, "GET", ws+"/"+made.ID, "")
	if !strings.Contains(string(g.Body), `"allowed_ips":["203.0.113.0/24","2001:db8::/32","198.51.100.7/32"]`) {
		t.Errorf("get: %s", g.Body)
	}
	l := f.do(t, admin, "GET", ws, "")
	var list struct {
		Tokens []map[string]json.RawMessage
	}
	if err := json.Unmarshal(l.Body, &list); err != nil {
		t.Fatal(err)
	}
	for _, tok := range list.Tokens {
		want := `[]`
		if string(tok["id"]) == `"`+made.ID+`"` {
			want = `["203.0.113.0/24","2001:db8::/32","198.51.100.7/32"]`
		}
		if string(tok["allowed_ips"]) != want {
			t.Errorf("list: %s shows allowed_ips %s, want %s", tok["id"], tok["allowed_ips"], want)
		}
	}
}

func TestCreate(t *testing.T) {
	f := newFixture(t)
	a := f.do(t, admin, "POST", "/v1/workspaces/ws_acme/tokens",
		`{"name":"My Agent ✓","scopes":["read","deploy"],"project":"weekly-report","expires_at":"2027-01-31T00:00:00+01:00"}`)
	if a.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
	var got struct {
		ID, Token, Name, Workspace string
		Project                    *string
		Scopes                     []string
		CreatedAt                  time.Time  `json:"created_at"`
		ExpiresAt                  *time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(a.Body, &got); err != nil {
		t.Fatal(err)
	}
	if err := apikey.Check(got.Token, true); err != nil {
		t.Fatalf("token %q: %v", got.Token, err)
	}
	if a.Header.Get("Location") != "/v1/workspaces/ws_acme/tokens/"+got.ID || a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", a.Header)
	}
	if !strings.HasPrefix(got.ID, "tok_") || len(got.ID) != 14 || got.Name != "My Agent ✓" || got.Workspace != "ws_acme" ||
		got.Project == nil || *got.Project != "weekly-report" || strings.Join(got.Scopes, " ") != "deploy read" ||
		!got.CreatedAt.Equal(f.now) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(time.Date(2027, 1, 30, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("answer %s", a.Body)
	}
	if a.Op.Result != ResultOK || a.Op.TokenID != got.ID || a.Op.Scopes != grant.ScopeDeploy|grant.ScopeRead {
		t.Errorf("operation %+v", a.Op)
	}
	// Stored as its hash only.
	data, _ := os.ReadFile(f.path)
	if strings.Contains(string(data), got.Token) || !strings.Contains(string(data), apikey.Sum(got.Token).String()) {
		t.Fatal("the key file does not hold the token's hash only")
	}

	// Shown once: neither the list nor the item shows it or its hash.
	for _, path := range []string{"/v1/workspaces/ws_acme/tokens", "/v1/workspaces/ws_acme/tokens/" + got.ID} {
		a := f.do(t, admin, "GET", path, "")
		if a.Status != 200 || strings.Contains(string(a.Body), got.Token) || strings.Contains(string(a.Body), "sha256:") ||
			strings.Contains(string(a.Body), `"hash"`) || !strings.Contains(string(a.Body), got.ID) {
			t.Errorf("GET %s: %d %s", path, a.Status, a.Body)
		}
	}
}

// TestNoEscalation: each refusal must leave the key file as it was.
func TestNoEscalation(t *testing.T) {
	const ws = "/v1/workspaces/ws_acme/tokens"
	tests := []struct {
		name   string
		who    *grant.Principal
		body   string
		status int
	}{
		{"read token creating a read token", reader, `{"name":"x","scopes":["read"]}`, 201},
		{"read token granting deploy", reader, `{"name":"x","scopes":["deploy"]}`, 403},
		{"deploy token granting admin", deployer, `{"name":"x","scopes":["admin"]}`, 403},
		{"deploy token granting delete beside its own", deployer, `{"name":"x","scopes":["deploy","delete"]}`, 403},
		{"deploy token granting what it holds", deployer, `{"name":"x","scopes":["deploy","read"]}`, 201},
		{"admin granting admin", admin, `{"name":"x","scopes":["admin"]}`, 201},
		{"project token creating a workspace token", projAgent, `{"name":"x","scopes":["read"]}`, 403},
		{"project token creating a workspace token, project null", projAgent, `{"name":"x","scopes":["read"],"project":null}`, 403},
		{"project token creating another project's token", projAgent, `{"name":"x","scopes":["read"],"project":"billing"}`, 403},
		{"project token creating its project's token", projAgent, `{"name":"x","scopes":["read"],"project":"weekly-report"}`, 201},
		{"project admin creating a workspace token", projAdmin, `{"name":"x","scopes":["read"]}`, 403},
		{"another workspace's admin", otherAdmin, `{"name":"x","scopes":["read"]}`, 403},
		{"no workspace", &grant.Principal{Kind: grant.KindJWT, Subject: "u", Scopes: grant.ScopeAdmin}, `{"name":"x","scopes":["read"]}`, 403},
		{"no principal", nil, `{"name":"x","scopes":["read"]}`, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.do(t, tt.who, "POST", ws, tt.body)
			if a.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tt.status, a.Body)
			}
			want := seeded
			if tt.status == 201 {
				want = seeded + 1
			} else if a.Op.Result != ResultForbidden {
				t.Errorf("operation %+v", a.Op)
			}
			if n := len(f.tokens(t)); n != want {
				t.Fatalf("the key file holds %d tokens, want %d", n, want)
			}
		})
	}
}

func TestVisibility(t *testing.T) {
	const ws = "/v1/workspaces/ws_acme/tokens"
	tests := []struct {
		name           string
		who            *grant.Principal
		method, path   string
		status         int
		revokedAfter   string // the token revoked afterwards, if any
		notRevokedLeft string
	}{
		{"admin reads a workspace token", admin, "GET", ws + "/tok_ws", 200, "", ""},
		{"admin reads another workspace's token", admin, "GET", ws + "/tok_other", 404, "", ""},
		{"unknown id", admin, "GET", ws + "/tok_nope", 404, "", ""},
		{"project caller reads its project's token", projAgent, "GET", ws + "/tok_proj", 200, "", ""},
		{"project caller reads a workspace token", projAgent, "GET", ws + "/tok_ws", 404, "", ""},
		{"admin revokes", admin, "DELETE", ws + "/tok_ws", 204, "tok_ws", ""},
		{"admin revokes across workspaces", admin, "DELETE", ws + "/tok_other", 404, "", "tok_other"},
		{"other workspace's admin revokes through its own path", otherAdmin, "DELETE", "/v1/workspaces/ws_other/tokens/tok_ws", 404, "", "tok_ws"},
		{"other workspace's admin revokes through this path", otherAdmin, "DELETE", ws + "/tok_ws", 403, "", "tok_ws"},
		{"project caller revokes a workspace token", projAdmin, "DELETE", ws + "/tok_ws", 404, "", "tok_ws"},
		{"project caller revokes its project's token", projAdmin, "DELETE", ws + "/tok_proj", 204, "tok_proj", ""},
		{"unknown id revoked", admin, "DELETE", ws + "/tok_nope", 404, "", ""},
		{"reader revokes a read token", reader, "DELETE", ws + "/tok_ws", 204, "tok_ws", ""},
		{"reader revokes a deploy token", reader, "DELETE", ws + "/tok_proj", 403, "", "tok_proj"},
		{"project agent revokes its project's deploy token", projAgent, "DELETE", ws + "/tok_proj", 204, "tok_proj", ""},
		{"id with dots", admin, "DELETE", ws + "/..", 404, "", ""},
		{"id with a slash", admin, "DELETE", ws + "/tok_ws/..", 404, "", "tok_ws"},
		{"id with an encoded slash", admin, "DELETE", ws + "/%2e%2e%2ftok_other", 404, "", "tok_other"},
		{"trailing slash", admin, "DELETE", ws + "/", 404, "", ""},
		{"a token as the id", admin, "GET", ws + "/sk_live_yhSX5M7demkl9gRluxZepnI4pl0zgQx2", 404, "", ""},
		{"POST on an item", admin, "POST", ws + "/tok_ws", 405, "", "tok_ws"},
		{"DELETE on the collection without created_by", admin, "DELETE", ws, 400, "", "tok_ws"},
		{"PUT on an item", admin, "PUT", ws + "/tok_ws", 405, "", "tok_ws"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.do(t, tt.who, tt.method, tt.path, "")
			if a.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tt.status, a.Body)
			}
			if a.Status == 404 && strings.Contains(string(a.Body), "tok_") {
				t.Errorf("404 body names a token: %s", a.Body)
			}
			for _, e := range f.tokens(t) {
				revoked := e.RevokedAt != nil
				if e.ID == tt.revokedAfter && !revoked {
					t.Errorf("%s not revoked", e.ID)
				}
				if e.ID != tt.revokedAfter && revoked {
					t.Errorf("%s revoked", e.ID)
				}
			}
		})
	}
}

func TestListConfined(t *testing.T) {
	f := newFixture(t)
	ids := func(who *grant.Principal, path string) string {
		a := f.do(t, who, "GET", path, "")
		if a.Status != 200 {
			t.Fatalf("status %d: %s", a.Status, a.Body)
		}
		var doc struct{ Tokens []struct{ ID string } }
		if err := json.Unmarshal(a.Body, &doc); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tk := range doc.Tokens {
			out = append(out, tk.ID)
		}
		return strings.Join(out, " ")
	}
	if got := ids(reader, "/v1/workspaces/ws_acme/tokens"); got != "tok_ws tok_proj tok_r tok_d tok_p tok_pa" {
		t.Errorf("workspace reader sees %q", got)
	}
	if got := ids(projAgent, "/v1/workspaces/ws_acme/tokens"); got != "tok_proj tok_p tok_pa" {
		t.Errorf("project reader sees %q", got)
	}
	if a := f.do(t, otherAdmin, "GET", "/v1/workspaces/ws_acme/tokens", ""); a.Status != 403 {
		t.Errorf("another workspace's admin lists: %d %s", a.Status, a.Body)
	}
}

func TestRevokeIdempotent(t *testing.T) {
	f := newFixture(t)
	first := f.do(t, admin, "DELETE", "/v1/workspaces/ws_acme/tokens/tok_ws", "")
	at := f.tokens(t)[0].RevokedAt
	f.now = f.now.Add(time.Hour)
	f.svc.Now = func() time.Time { return f.now }
	again := f.do(t, admin, "DELETE", "/v1/workspaces/ws_acme/tokens/tok_ws", "")
	if first.Status != 204 || again.Status != 204 || len(again.Body) != 0 {
		t.Fatalf("statuses %d %d", first.Status, again.Status)
	}
	if after := f.tokens(t)[0].RevokedAt; at == nil || after == nil || !after.Equal(*at) {
		t.Errorf("revoked_at %v, then %v: the first revocation must stand", at, after)
	}
	if again.Op.Result != ResultOK || again.Op.TokenID != "tok_ws" || again.Op.Scopes != grant.ScopeRead {
		t.Errorf("operation %+v", again.Op)
	}
	a := f.do(t, admin, "GET", "/v1/workspaces/ws_acme/tokens/tok_ws", "")
	if !strings.Contains(string(a.Body), `"revoked_at":"2026-11-30T12:00:00Z"`) {
		t.Errorf("GET after revoke: %s", a.Body)
	}
}

func TestContentTypeAndStoreFailure(t *testing.T) {
	f := newFixture(t)
	target, _ := base.Match("/v1/workspaces/ws_acme/tokens")
	for ct, want := range map[string]int{
		"application/json; charset=utf-8":   201,
		"":                                  415,
		"application/json-seq":              415,
		"application/jsonx; charset=utf-8":  415,
		"application/x-www-form-urlencoded": 415,
		"text/plain":                        415,
	} {
		before := len(f.tokens(t))
		a := f.svc.Serve(context.Background(), &Request{Method: "POST", Target: target, Caller: admin, ContentType: ct,
			Body: strings.NewReader(`{"name":"x","scopes":["read"]}`)})
		if a.Status != want {
			t.Errorf("Content-Type %q: %d, want %d", ct, a.Status, want)
		}
		if created := len(f.tokens(t)) - before; (want == 201) != (created == 1) {
			t.Errorf("Content-Type %q: %d tokens created", ct, created)
		}
	}
	// A store that fails: 503 with Retry-After, the error for the log only.
	broken := &Service{Store: &keystore.FileTokenManager{Path: t.TempDir()}}
	for _, m := range []string{"GET", "POST"} {
		a := broken.Serve(context.Background(), &Request{Method: m, Target: target, Caller: admin, ContentType: "application/json",
			Body: strings.NewReader(`{"name":"x","scopes":["read"]}`)})
		if a.Status != 503 || a.Header.Get("Retry-After") == "" || strings.Contains(string(a.Body), t.TempDir()) {
			t.Errorf("%s on a broken store: %d %v %s", m, a.Status, a.Header, a.Body)
		}
	}
}

func TestBase(t *testing.T) {
	for _, bad := range []string{"", "v1/{workspace}", "/v1/tokens", "/v1/{workspace}/{workspace}", "/v1/{ws}/tokens",
		"/v1/{workspace}/tokens/", "/v1//{workspace}", "/v1/../{workspace}", "/v1/{workspace...}"} {
		if _, err := ParseBase(bad); err == nil {
			t.Errorf("ParseBase(%q) accepted", bad)
		}
	}
	tests := []struct {
		path string
		ok   bool
		want Target
	}{
		{"/v1/workspaces/ws_acme/tokens", true, Target{Workspace: "ws_acme", Collection: "/v1/workspaces/ws_acme/tokens"}},
		{"/v1/workspaces/ws_acme/tokens/tok_1", true, Target{Workspace: "ws_acme", Collection: "/v1/workspaces/ws_acme/tokens", Item: true, ID: "tok_1"}},
		{"/v1/workspaces/ws_acme/tokens/", true, Target{Workspace: "ws_acme", Collection: "/v1/workspaces/ws_acme/tokens", Item: true}},
		{"/v1/workspaces/ws_acme/tokens/a/b", true, Target{Workspace: "ws_acme", Collection: "/v1/workspaces/ws_acme/tokens", Item: true, ID: "a/b"}},
		{"/v1/workspaces/ws_acme/tokensx", false, Target{}},
		{"/v1/workspaces//tokens", false, Target{}},
		{"/v1/workspaces/ws_acme", false, Target{}},
		{"/v1/workspaces/ws_acme/projects", false, Target{}},
		{"v1/workspaces/ws_acme/tokens", false, Target{}},
		{"/", false, Target{}},
	}
	for _, tt := range tests {
		got, ok := base.Match(tt.path)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Match(%q) = %+v %v, want %+v %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}
