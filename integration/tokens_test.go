package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

// tokensCaddyfile serves the token API on both stores' terms: under /v1 with
// docs/tokens.md's routes (read lists and reads, admin creates and revokes), and
// under /v2 with routes any workspace credential passes, so that the
// handler's own rules (no escalation, project confinement, 404 across
// workspaces) are what refuses there. /v3 mounts the API behind a public
// route: no verified caller, so 500. /b is a second deplo_auth on storeB
// (another store instance and cache; "" leaves it out).
func tokensCaddyfile(store, storeB, upstream, logDir string) string {
	second := ""
	if storeB != "" {
		second = fmt.Sprintf(`handle /b/* {
		deplo_auth {
			%s
			route GET /b/v1/workspaces/{workspace}/projects read {
				project_tokens
			}
		}
		reverse_proxy %s
	}
	`, storeB, upstream)
	}
	return globalOptions(logDir) + fmt.Sprintf(`
http://localhost:%d {
	log {
		output file %s/access.log
		format json
	}
	%s
	handle {
		deplo_auth {
			%s
			throttle 1000 1m
			jwt {
				issuer https://dashboard.deplo.sh
				alg HS256
				secret {env.DEPLO_AUTH_IT_JWT_SECRET}
				max_lifetime 15m
			}
			route GET /v1/workspaces/{workspace}/projects read {
				project_tokens
			}
			route GET /v1/workspaces/{workspace}/tokens read {
				project_tokens
			}
			route POST /v1/workspaces/{workspace}/tokens admin {
				project_tokens
			}
			route GET /v1/workspaces/{workspace}/tokens/{id} read {
				project_tokens
			}
			route DELETE /v1/workspaces/{workspace}/tokens/{id} admin {
				project_tokens
			}
			route DELETE /v1/workspaces/{workspace}/tokens admin {
				project_tokens
			}
			route POST /v1/workspaces/{workspace}/tokens/{id}/rotate admin {
				project_tokens
			}
			route POST /v1/workspaces/{workspace}/tokens/self/rotate authenticated {
				project_tokens
			}
			route * /v4/workspaces/{workspace}/tokens authenticated
			route * /v2/workspaces/{workspace}/tokens authenticated {
				project_tokens
			}
			route * /v2/workspaces/{workspace}/tokens/{id...} authenticated {
				project_tokens
			}
			route * /v3/{rest...} public
			route POST /v1/token-leaks/github public
		}
		deplo_auth_tokens {
			base /v1/workspaces/{workspace}/tokens
			create_rate 1000/1m # the suites create many; /v4 tests the rate
			leaks /v1/token-leaks/github {
				keys_file %s/gh-keys.json
			}
		}
		deplo_auth_tokens {
			base /v2/workspaces/{workspace}/tokens
		}
		deplo_auth_tokens {
			base /v3/workspaces/{workspace}/tokens
		}
		deplo_auth_tokens {
			base /v4/workspaces/{workspace}/tokens
			create_rate 3/1m
			max_tokens 3
			max_lifetime 1h
		}
		reverse_proxy %s
	}
	handle_errors 400 401 403 429 503 {
		header Content-Type application/json
		respond `+"`"+`{"error":"{http.auth.error}","error_description":"{http.auth.error_description}"}`+"`"+`
	}
}
`, httpPort, logDir, second, store, logDir, upstream)
}

// tokenSuite is a running Caddy with the token API on one store.
type tokenSuite struct {
	*env
	admin    keystore.TokenManager // the same store, read directly to check effects
	seeded   map[string]token
	created  []string // every token the API showed, for the log sweep
	createMu sync.Mutex
}

func startTokens(t *testing.T, store, storeB string, admin keystore.TokenManager) *tokenSuite {
	t.Helper()
	s := &tokenSuite{env: &env{t: t, up: newRecorder(t), logDir: t.TempDir()}, admin: admin, seeded: map[string]token{}}
	for _, tk := range []token{
		newToken(t, "tok_read", "ws_acme", "", "read"),
		newToken(t, "tok_deploy", "ws_acme", "", "deploy", "read"),
		newToken(t, "tok_admin", "ws_acme", "", "admin"),
		newToken(t, "tok_agent", "ws_acme", "weekly-report", "deploy", "read"),
		newToken(t, "tok_projadmin", "ws_acme", "weekly-report", "admin"),
		newToken(t, "tok_other", "ws_other", "", "admin"),
	} {
		e := keystore.TokenEntry{ID: tk.ID, Name: tk.ID, Hash: apikey.Sum(tk.Raw).String(), Workspace: tk.Workspace,
			Scopes: tk.Scopes, CreatedAt: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}
		if tk.Project != "" {
			p := tk.Project
			e.Project = &p
		}
		if err := admin.CreateToken(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		s.seeded[tk.ID] = tk
	}
	t.Setenv("DEPLO_AUTH_IT_JWT_SECRET", jwtSecret)
	s.tester = caddytest.NewTester(t)
	writeGitHubKeys(t, s.logDir)
	load(t, s.tester, tokensCaddyfile(store, storeB, s.up.addr(), s.logDir))
	return s
}

func (s *tokenSuite) bearer(id string) string { return "Bearer " + s.seeded[id].Raw }

// call sends method path with a JSON body ("" for none) as auth.
func (s *tokenSuite) call(method, path, auth, body string) (*http.Response, string) {
	s.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return s.send(req)
}

type createdJSON struct {
	ID, Token, Name, Workspace string
	Project                    *string
	Scopes                     []string
	CreatedAt                  time.Time  `json:"created_at"`
	ExpiresAt                  *time.Time `json:"expires_at"`
}

// create creates a token through the API and fails the test unless it is
// created.
func (s *tokenSuite) create(path, auth, body string) createdJSON {
	s.t.Helper()
	resp, text := s.call("POST", path, auth, body)
	if resp.StatusCode != 201 {
		s.t.Fatalf("create: status %d: %s", resp.StatusCode, text)
	}
	var c createdJSON
	if err := json.Unmarshal([]byte(text), &c); err != nil {
		s.t.Fatal(err)
	}
	s.createMu.Lock()
	s.created = append(s.created, c.Token)
	s.createMu.Unlock()
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Location") != path+"/"+c.ID {
		s.t.Errorf("create: headers %v", resp.Header)
	}
	return c
}

// works reports the status of a read with raw on a route that proxies.
func (s *tokenSuite) works(prefix, raw string) int {
	s.t.Helper()
	resp, _ := s.call("GET", prefix+"/v1/workspaces/ws_acme/projects", "Bearer "+raw, "")
	s.up.take()
	return resp.StatusCode
}

// count returns the number of tokens the store holds.
func (s *tokenSuite) count() int {
	s.t.Helper()
	recs, err := s.admin.ListTokens(context.Background(), "")
	if err != nil {
		s.t.Fatal(err)
	}
	return len(recs)
}

func (s *tokenSuite) revoked(id string) bool {
	s.t.Helper()
	rec, err := s.admin.Token(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return rec.RevokedAt != nil
}

// runTokenSuite checks every row and rule of docs/tokens.md's token table
// through Caddy; it is run on the key file and on PostgreSQL.
func runTokenSuite(t *testing.T, s *tokenSuite) {
	ws := "/v1/workspaces/ws_acme/tokens"
	ws2 := "/v2/workspaces/ws_acme/tokens"
	session := "Bearer " + mustMint(t, jwtSecret) // dashboard admin of ws_acme

	var made createdJSON
	t.Run("POST creates, shows the token once, and it works at once", func(t *testing.T) {
		made = s.create(ws, session, `{"name":"My Agent","scopes":["deploy"],"project":"weekly-report"}`)
		if err := apikey.Check(made.Token, true); err != nil || made.Workspace != "ws_acme" || made.Name != "My Agent" ||
			made.Project == nil || *made.Project != "weekly-report" || strings.Join(made.Scopes, ",") != "deploy" || made.ExpiresAt != nil {
			t.Fatalf("created %+v (%v)", made, err)
		}
		use, _ := s.call("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer "+made.Token, "")
		if use.StatusCode == 401 {
			t.Fatal("the new token is not accepted at once")
		}
		ro := s.create(ws, session, `{"name":"reader","scopes":["read"]}`)
		if st := s.works("", ro.Token); st != 200 {
			t.Fatalf("new read token: %d right after creation", st)
		}
	})
	t.Run("GET lists without token or hash", func(t *testing.T) {
		resp, body := s.call("GET", ws, s.bearer("tok_read"), "")
		if resp.StatusCode != 200 || !strings.Contains(body, `"id":"`+made.ID+`"`) || !strings.Contains(body, `"last_used_at"`) ||
			strings.Contains(body, made.Token) || strings.Contains(body, "sha256:") || strings.Contains(body, `"hash"`) ||
			strings.Contains(body, "tok_other") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// A project-scoped caller sees its project's tokens only.
		resp, body = s.call("GET", ws, s.bearer("tok_agent"), "")
		if resp.StatusCode != 200 || !strings.Contains(body, made.ID) || strings.Contains(body, `"tok_read"`) {
			t.Fatalf("project caller: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("GET one; unknown or another workspace's is 404", func(t *testing.T) {
		if resp, body := s.call("GET", ws+"/"+made.ID, s.bearer("tok_read"), ""); resp.StatusCode != 200 ||
			strings.Contains(body, made.Token) || !strings.Contains(body, `"revoked_at":null`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		for _, id := range []string{"tok_nope", "tok_other"} {
			if resp, body := s.call("GET", ws+"/"+id, s.bearer("tok_admin"), ""); resp.StatusCode != 404 || strings.Contains(body, "ws_other") {
				t.Fatalf("%s: %d %s", id, resp.StatusCode, body)
			}
		}
		if resp, _ := s.call("GET", ws+"/tok_read", s.bearer("tok_agent"), ""); resp.StatusCode != 404 {
			t.Fatalf("project caller reads a workspace token: %d", resp.StatusCode)
		}
	})
	t.Run("DELETE revokes at once, again 204, unknown and other workspace 404", func(t *testing.T) {
		victim := s.create(ws, session, `{"name":"to revoke","scopes":["read"]}`)
		if st := s.works("", victim.Token); st != 200 { // now cached
			t.Fatalf("before revocation: %d", st)
		}
		if resp, body := s.call("DELETE", ws+"/"+victim.ID, s.bearer("tok_admin"), ""); resp.StatusCode != 204 || body != "" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if st := s.works("", victim.Token); st != 401 {
			t.Fatalf("revoked token answered %d right after DELETE", st)
		}
		if resp, _ := s.call("DELETE", ws+"/"+victim.ID, s.bearer("tok_admin"), ""); resp.StatusCode != 204 {
			t.Fatalf("second DELETE: %d", resp.StatusCode)
		}
		if resp, body := s.call("GET", ws+"/"+victim.ID, s.bearer("tok_read"), ""); !strings.Contains(body, `"revoked_at":"`) {
			t.Fatalf("GET after DELETE: %d %s", resp.StatusCode, body)
		}
		for _, id := range []string{"tok_nope", "tok_other"} {
			if resp, _ := s.call("DELETE", ws+"/"+id, s.bearer("tok_admin"), ""); resp.StatusCode != 404 {
				t.Fatalf("%s: %d", id, resp.StatusCode)
			}
		}
		if s.revoked("tok_other") {
			t.Fatal("another workspace's token was revoked")
		}
	})

	// Attacks: each must change nothing in the store.
	attacks := []struct {
		name, method, path, auth, body string
		status                         int
	}{
		{"read token creates (route)", "POST", ws, s.bearer("tok_read"), `{"name":"x","scopes":["read"]}`, 403},
		{"read token creates a deploy token (handler)", "POST", ws2, s.bearer("tok_read"), `{"name":"x","scopes":["deploy"]}`, 403},
		{"deploy token grants admin (route)", "POST", ws, s.bearer("tok_deploy"), `{"name":"x","scopes":["admin"]}`, 403},
		{"deploy token grants admin (handler)", "POST", ws2, s.bearer("tok_deploy"), `{"name":"x","scopes":["admin"]}`, 403},
		{"deploy token grants delete (handler)", "POST", ws2, s.bearer("tok_deploy"), `{"name":"x","scopes":["deploy","delete"]}`, 403},
		{"project admin creates a workspace token", "POST", ws, s.bearer("tok_projadmin"), `{"name":"x","scopes":["read"]}`, 403},
		{"project token creates a workspace token (handler)", "POST", ws2, s.bearer("tok_agent"), `{"name":"x","scopes":["read"]}`, 403},
		{"project token creates another project's token", "POST", ws2, s.bearer("tok_agent"), `{"name":"x","scopes":["read"],"project":"billing"}`, 403},
		{"another workspace creates here", "POST", ws, s.bearer("tok_other"), `{"name":"x","scopes":["read"]}`, 403},
		{"workspace in the body", "POST", ws, s.bearer("tok_admin"), `{"name":"x","scopes":["read"],"workspace":"ws_other"}`, 400},
		{"revoke across workspaces, own path", "DELETE", "/v1/workspaces/ws_other/tokens/tok_read", s.bearer("tok_other"), "", 404},
		{"revoke across workspaces, their path", "DELETE", ws + "/tok_read", s.bearer("tok_other"), "", 403},
		{"revoke another workspace's id", "DELETE", ws + "/tok_other", s.bearer("tok_admin"), "", 404},
		{"project admin revokes a workspace token", "DELETE", ws + "/tok_read", s.bearer("tok_projadmin"), "", 404},
		{"read token revokes (route)", "DELETE", ws + "/tok_deploy", s.bearer("tok_read"), "", 403},
		{"deploy token revokes the admin token (handler)", "DELETE", ws2 + "/tok_admin", s.bearer("tok_deploy"), "", 403},
		{"PUT on an item", "PUT", ws2 + "/tok_read", s.bearer("tok_admin"), "", 405},
		{"POST on an item", "POST", ws2 + "/tok_read", s.bearer("tok_admin"), `{"name":"x","scopes":["read"]}`, 405},
		{"id with a further segment", "DELETE", ws2 + "/tok_read/x", s.bearer("tok_admin"), "", 404},
		{"empty id", "DELETE", ws2 + "/", s.bearer("tok_admin"), "", 404},
		{"no credential", "POST", ws, "", `{"name":"x","scopes":["read"]}`, 401},
		{"no verified caller (public route)", "POST", "/v3/workspaces/ws_acme/tokens", "", `{"name":"x","scopes":["admin"]}`, 500},
		{"no verified caller, revoke", "DELETE", "/v3/workspaces/ws_acme/tokens/tok_read", "", "", 500},
	}
	for _, tt := range attacks {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			before := s.count()
			resp, body := s.call(tt.method, tt.path, tt.auth, tt.body)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if strings.Contains(body, `"token":"sk_live_`) || s.count() != before {
				t.Fatalf("the request got through: %s", body)
			}
			for _, id := range []string{"tok_read", "tok_deploy", "tok_admin", "tok_other"} {
				if s.revoked(id) {
					t.Fatalf("%s was revoked", id)
				}
			}
			if got := s.up.take(); len(got) != 0 {
				t.Fatalf("reached the upstream: %+v", got)
			}
		})
	}
	// Path tricks that net/http's client would clean: sent raw. None may
	// revoke tok_read or tok_other, whatever it answers.
	for _, p := range []string{
		ws + "/..%2Ftok_other", ws + "/%2e%2e/tok_read", ws + "/tok_read/..", ws + "/./tok_read", ws + "/tok_read%2F",
		ws + "/tok_read%00", ws + "/%74ok_read/", "/v1/workspaces/ws_other/../ws_acme/tokens/tok_other",
		"/v1/workspaces/ws_acme%2Ftokens%2F..%2F..%2Fws_other/tokens/tok_other", ws + "//tok_read", ws + "/tok_read;x",
	} {
		t.Run("refused/path "+p, func(t *testing.T) {
			status, resp := raw(t, "DELETE "+p+" HTTP/1.1\r\nHost: localhost\r\nAuthorization: "+s.bearer("tok_admin")+"\r\nConnection: close\r\n\r\n")
			if status == 204 || status < 400 {
				t.Errorf("status %d: %s", status, resp)
			}
			if s.revoked("tok_read") || s.revoked("tok_other") {
				t.Fatalf("a path trick revoked a token (%d)", status)
			}
			s.up.take()
		})
	}

	t.Run("input rules answer 400 naming the field", func(t *testing.T) {
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		for body, field := range map[string]string{
			`{"scopes":["read"]}`:                                                                        "name:",
			`{"name":"","scopes":["read"]}`:                                                              "name:",
			`{"name":"` + strings.Repeat("x", 101) + `","scopes":["read"]}`:                              "name:",
			`{"name":"a\u0000b","scopes":["read"]}`:                                                      "name:",
			`{"name":"x","scopes":[]}`:                                                                   "scopes:",
			`{"name":"x","scopes":["write"]}`:                                                            "scopes:",
			`{"name":"x","scopes":["read"],"project":"Not A Slug"}`:                                      "project:",
			`{"name":"x","scopes":["read"],"expires_at":"2020-01-01T00:00:00Z"}`:                         "expires_at:",
			`{"name":"x","scopes":["read"],"expires_at":"next week"}`:                                    "expires_at:",
			`{"name":"x","scopes":["read"],"Scopes":["admin"]}`:                                          "unknown field",
			`{"name":"x","scopes":["read"],"name":"y"}`:                                                  "name: appears more than once",
			`{"name":"x","scopes":["read"]}{}`:                                                           "data after",
			`{"name":"x","scopes":["read"],"expires_at":"` + future + `"}` + strings.Repeat(" ", 16<<10): "larger than",
		} {
			before := s.count()
			resp, text := s.call("POST", ws, session, body)
			var doc struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			_ = json.Unmarshal([]byte(text), &doc)
			if resp.StatusCode != 400 || doc.Error != "invalid_request" || !strings.Contains(doc.Description, field) {
				t.Errorf("%.60s: %d %s, want 400 naming %q", body, resp.StatusCode, text, field)
			}
			if s.count() != before {
				t.Fatalf("%.60s: a token was created", body)
			}
		}
		req, _ := http.NewRequest("POST", base+ws, strings.NewReader(`{"name":"x","scopes":["read"]}`))
		req.Header.Set("Authorization", session)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, _ := s.send(req); resp.StatusCode != 415 {
			t.Errorf("form body: %d, want 415", resp.StatusCode)
		}
	})

	t.Run("expires_at takes effect", func(t *testing.T) {
		at := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
		c := s.create(ws, session, `{"name":"short","scopes":["read"],"expires_at":"`+at.Format(time.RFC3339)+`"}`)
		if c.ExpiresAt == nil || !c.ExpiresAt.Equal(at) {
			t.Fatalf("expires_at %v, want %v", c.ExpiresAt, at)
		}
		if st := s.works("", c.Token); st != 200 {
			t.Fatalf("before expiry: %d", st)
		}
		time.Sleep(time.Until(at) + 50*time.Millisecond)
		if st := s.works("", c.Token); st != 401 {
			t.Fatalf("after expiry: %d", st)
		}
	})

	t.Run("CLI --api: create, list, revoke; one-line errors", func(t *testing.T) {
		t.Setenv("DEPLO_AUTH_KEYS_FILE", "")
		t.Setenv("DEPLO_AUTH_POSTGRES", "")
		t.Setenv("DEPLO_API_URL", "")
		t.Setenv("DEPLO_KEY", s.seeded["tok_admin"].Raw)
		out, err := runCommand(t, "", "token", "create", "--api", base, "--workspace", "ws_acme", "--name", "from the CLI", "--scopes", "deploy,read", "--project", "weekly-report")
		raw := strings.TrimSuffix(out, "\n")
		if err != nil || apikey.Check(raw, true) != nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("create: %q %v", out, err)
		}
		s.created = append(s.created, raw)
		if st := s.works("", raw); st != 200 {
			t.Fatalf("CLI-created token answers %d", st)
		}
		// $DEPLO_API_URL stands in for --api when no key store is named.
		t.Setenv("DEPLO_API_URL", base)
		out, err = runCommand(t, "", "token", "list", "--workspace", "ws_acme", "--json")
		if err != nil || !strings.Contains(out, `"name": "from the CLI"`) || strings.Contains(out, raw) || strings.Contains(out, "tok_other") {
			t.Fatalf("list: %v\n%s", err, out)
		}
		var listed []struct{ ID, Name string }
		if err := json.Unmarshal([]byte(out), &listed); err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, l := range listed {
			if l.Name == "from the CLI" {
				id = l.ID
			}
		}
		out, err = runCommand(t, "", "token", "revoke", "--workspace", "ws_acme", id)
		if err != nil || !strings.HasPrefix(out, "revoked "+id+" at ") {
			t.Fatalf("revoke %s: %q %v", id, out, err)
		}
		if st := s.works("", raw); st != 401 {
			t.Fatalf("revoked through the CLI, the token answers %d", st)
		}
		for _, tt := range []struct {
			name, key string
			args      []string
			want      string
		}{
			{"missing DEPLO_KEY", "", []string{"token", "list", "--workspace", "ws_acme"}, "$DEPLO_KEY is not set"},
			{"refused", s.seeded["tok_read"].Raw, []string{"token", "create", "--workspace", "ws_acme", "--name", "x", "--scopes", "admin"}, "403 insufficient_scope"},
			{"refused across workspaces", s.seeded["tok_other"].Raw, []string{"token", "revoke", "--workspace", "ws_other", "tok_read"}, "404 not_found"},
			{"unreachable", s.seeded["tok_admin"].Raw, []string{"token", "list", "--api", "http://127.0.0.1:1", "--workspace", "ws_acme"}, "cannot reach the deplo API at http://127.0.0.1:1"},
			{"--at with the API", s.seeded["tok_admin"].Raw, []string{"token", "revoke", "--workspace", "ws_acme", "--at", "2030-01-01T00:00:00Z", "tok_read"}, "--at is not supported"},
		} {
			t.Setenv("DEPLO_KEY", tt.key)
			before := s.count()
			out, err := runCommand(t, "", tt.args...) // out: cobra's usage, in-process only
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || strings.Contains(out, "sk_live_") {
				t.Errorf("%s: stdout %q, error %v; want one line containing %q", tt.name, out, err, tt.want)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("%s: the error shows $DEPLO_KEY", tt.name)
			}
			if s.count() != before || s.revoked("tok_read") {
				t.Fatalf("%s: the request got through", tt.name)
			}
		}
	})

	t.Run("log lines and metric of every create and revoke", func(t *testing.T) {
		caddyLog, _ := readFile(filepath.Join(s.logDir, "caddy.log"))
		if !strings.Contains(caddyLog, `"msg":"token created"`) || !strings.Contains(caddyLog, `"token_id":"`+made.ID+`"`) ||
			!strings.Contains(caddyLog, `"msg":"token revoked"`) || !strings.Contains(caddyLog, `"msg":"token create refused"`) ||
			!strings.Contains(caddyLog, `"caller":"user_42"`) || !strings.Contains(caddyLog, `"scopes":"deploy"`) ||
			!strings.Contains(caddyLog, "deplo_auth must come before deplo_auth_tokens") {
			t.Error("create, revoke, refusal or misconfiguration not logged as expected")
		}
		resp, err := http.Get("http://localhost:2999/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, series := range []string{
			`deplo_auth_token_operations_total{operation="create",result="ok"}`,
			`deplo_auth_token_operations_total{operation="create",result="forbidden"}`,
			`deplo_auth_token_operations_total{operation="create",result="invalid_request"}`,
			`deplo_auth_token_operations_total{operation="revoke",result="ok"}`,
			`deplo_auth_token_operations_total{operation="revoke",result="not_found"}`,
		} {
			if !strings.Contains(string(b), series) {
				t.Errorf("metrics lack %s", series)
			}
		}
	})
}

// sweepLogs fails if any log line holds one of the tokens or its hash.
func sweepLogs(t *testing.T, logDir string, raws []string) {
	t.Helper()
	caddyLog, _ := readFile(filepath.Join(logDir, "caddy.log"))
	accessLog, _ := readFile(filepath.Join(logDir, "access.log"))
	if caddyLog == "" || accessLog == "" {
		t.Fatal("no logs to sweep")
	}
	for _, text := range []string{caddyLog, accessLog} {
		for _, raw := range raws {
			if strings.Contains(text, raw) || strings.Contains(text, raw[8:34]) || strings.Contains(text, apikeyHashHex(raw)) {
				t.Fatal("a log line holds a token created through the API, or its hash")
			}
		}
	}
}

func TestTokenAPIFile(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	s := startTokens(t, "keys file "+keys, "", &keystore.FileTokenManager{Path: keys})
	runTokenSuite(t, s)
	runLineageSuite(t, s, []string{""})
	runConditionsSuite(t, s, []string{""})

	t.Run("50 concurrent creates: 50 tokens in the file, all working", func(t *testing.T) {
		before := s.count()
		session := "Bearer " + mustMint(t, jwtSecret)
		var wg sync.WaitGroup
		made := make([]createdJSON, 50)
		errs := make(chan string, 50)
		for i := range made {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", base+"/v1/workspaces/ws_acme/tokens",
					strings.NewReader(fmt.Sprintf(`{"name":"parallel %d","scopes":["read"]}`, i)))
				req.Header.Set("Authorization", session)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Sprintf("status %d", resp.StatusCode)
					return
				}
				if err := json.NewDecoder(resp.Body).Decode(&made[i]); err != nil {
					errs <- err.Error()
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if t.Failed() {
			t.FailNow()
		}
		kf, err := keystore.ReadKeyFile(keys)
		if err != nil {
			t.Fatal(err)
		}
		if len(kf.Tokens) != before+50 {
			t.Fatalf("the key file holds %d tokens, want %d", len(kf.Tokens), before+50)
		}
		for _, c := range made {
			if kf.Find(c.ID) == nil {
				t.Fatalf("%s lost", c.ID)
			}
			s.created = append(s.created, c.Token)
			if st := s.works("", c.Token); st != 200 {
				t.Fatalf("%s answers %d", c.ID, st)
			}
		}
	})
	t.Run("logs carry no created token", func(t *testing.T) { sweepLogs(t, s.logDir, s.created) })
}

func TestTokenAPIPostgres(t *testing.T) {
	pg := newPG(t)
	store, err := pgstore.Open(context.Background(), pgstore.Options{DSN: pg.dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	t.Setenv("DEPLO_AUTH_IT_PG_DSN", pg.dsn)
	t.Setenv("DEPLO_AUTH_IT_PG_DSN_B", pg.slowDSN) // another application_name: another pool, listener and cache
	s := startTokens(t, "keys postgres {env.DEPLO_AUTH_IT_PG_DSN}", "keys postgres {env.DEPLO_AUTH_IT_PG_DSN_B}", store)
	runTokenSuite(t, s)
	runLineageSuite(t, s, []string{"", "/b"})
	runConditionsSuite(t, s, []string{"", "/b"})

	t.Run("created through A works on B at once; revoked through A, refused on B within 1s", func(t *testing.T) {
		session := "Bearer " + mustMint(t, jwtSecret)
		c := s.create("/v1/workspaces/ws_acme/tokens", session, `{"name":"multi","scopes":["read"]}`)
		if st := s.works("/b", c.Token); st != 200 {
			t.Fatalf("on B right after creation on A: %d", st)
		}
		if st := s.works("/b", c.Token); st != 200 { // cached on B now
			t.Fatalf("on B again: %d", st)
		}
		if resp, _ := s.call("DELETE", "/v1/workspaces/ws_acme/tokens/"+c.ID, session, ""); resp.StatusCode != 204 {
			t.Fatalf("DELETE: %d", resp.StatusCode)
		}
		start := time.Now()
		for s.works("/b", c.Token) != 401 {
			if time.Since(start) > time.Second {
				t.Fatal("B still accepts the token 1s after its revocation through A")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("B refused the revoked token after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("logs carry no created token", func(t *testing.T) { sweepLogs(t, s.logDir, s.created) })
}
