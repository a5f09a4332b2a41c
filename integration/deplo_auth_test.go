package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/jwtauth"
)

// TestEndToEnd runs in one Caddy config: caddytest shares one Caddy process,
// so every case is a subtest of one loaded configuration.
func TestEndToEnd(t *testing.T) {
	past := time.Now().Add(-time.Minute)
	read := newToken(t, "tok_read", "ws_acme", "", "read")
	deploy := newToken(t, "tok_deploy", "ws_acme", "", "deploy")
	admin := newToken(t, "tok_admin", "ws_acme", "", "admin")
	agent := newToken(t, "tok_agent", "ws_acme", "weekly-report", "deploy", "read")
	other := newToken(t, "tok_other", "ws_other", "", "admin")
	revoked := newToken(t, "tok_revoked", "ws_acme", "", "admin")
	revoked.RevokedAt = &past
	unknown := newToken(t, "tok_unknown", "ws_acme", "", "admin") // never written
	inURL := newToken(t, "tok_in_url", "ws_acme", "", "admin")
	e := start(t, read, deploy, admin, agent, other, revoked, inURL)

	bearer := func(tk token) string { return "Bearer " + tk.Raw }
	ws := "/v1/workspaces/ws_acme"

	// Every row of docs/reference.md's refusal table; each also checks that nothing
	// reached the upstream.
	refusals := []struct {
		name, method, path string
		auth               []string
		status             int
		challenge, code    string
	}{
		{"no credential", "GET", ws + "/projects", nil, 401, `Bearer realm="deplo"`, "unauthorized"},
		{"no credential, unlisted route", "GET", "/v1/unlisted", nil, 401, `Bearer realm="deplo"`, "unauthorized"},
		{"other scheme", "GET", ws + "/projects", []string{"Basic dXNlcjpwYXNz"}, 401, `Bearer realm="deplo"`, "unauthorized"},
		{"two Authorization headers", "GET", ws + "/projects", []string{bearer(read), bearer(read)}, 400, `Bearer realm="deplo", error="invalid_request"`, "invalid_request"},
		{"Bearer without token", "GET", ws + "/projects", []string{"Bearer"}, 400, `Bearer realm="deplo", error="invalid_request"`, "invalid_request"},
		{"two tokens", "GET", ws + "/projects", []string{bearer(read) + " " + read.Raw}, 400, `Bearer realm="deplo", error="invalid_request"`, "invalid_request"},
		{"oversized", "GET", ws + "/projects", []string{"Bearer " + strings.Repeat("A", 8200)}, 400, `Bearer realm="deplo", error="invalid_request"`, "invalid_request"},
		{"bad checksum", "GET", ws + "/projects", []string{"Bearer " + read.Raw[:34] + "000000"}, 401, `Bearer realm="deplo", error="invalid_token"`, "invalid_token"},
		{"wrong length", "GET", ws + "/projects", []string{"Bearer " + read.Raw + "A"}, 401, `Bearer realm="deplo", error="invalid_token"`, "invalid_token"},
		{"unknown token", "GET", ws + "/projects", []string{bearer(unknown)}, 401, `Bearer realm="deplo", error="invalid_token"`, "invalid_token"},
		{"revoked token", "GET", ws + "/projects", []string{bearer(revoked)}, 401, `Bearer realm="deplo", error="invalid_token"`, "invalid_token"},
		{"missing scope", "POST", ws + "/projects/p1/deployments", []string{bearer(read)}, 403, `Bearer realm="deplo", error="insufficient_scope", scope="deploy"`, "insufficient_scope"},
		{"missing one of two scopes", "POST", ws + "/projects/p1/promote", []string{bearer(deploy)}, 403, `Bearer realm="deplo", error="insufficient_scope", scope="delete deploy"`, "insufficient_scope"},
		{"another workspace", "GET", ws + "/projects", []string{bearer(other)}, 403, `Bearer realm="deplo", error="insufficient_scope"`, "insufficient_scope"},
		{"project token, another project", "POST", ws + "/projects/billing/deployments", []string{bearer(agent)}, 403, `Bearer realm="deplo", error="insufficient_scope"`, "insufficient_scope"},
		{"project token, look-alike project", "POST", ws + "/projects/weekly-report-backup/deployments", []string{bearer(agent)}, 403, `Bearer realm="deplo", error="insufficient_scope"`, "insufficient_scope"},
		{"project token, workspace route", "DELETE", ws + "/tokens/tok_read", []string{bearer(agent)}, 403, `Bearer realm="deplo", error="insufficient_scope"`, "insufficient_scope"},
		{"no route for this request", "PUT", ws + "/projects", []string{bearer(admin)}, 403, `Bearer realm="deplo", error="insufficient_scope"`, "insufficient_scope"},
		// The client leaks this token into the URL itself, so Caddy's request
		// logs show it; it is a token of its own, left out of the log sweep.
		{"token in query only", "GET", ws + "/projects?access_token=" + inURL.Raw, nil, 401, `Bearer realm="deplo"`, "unauthorized"},
	}
	for _, tt := range refusals {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, tt.auth...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			var doc struct{ Error, ErrorDescription string }
			if err := json.Unmarshal([]byte(body), &struct {
				Error            *string `json:"error"`
				ErrorDescription *string `json:"error_description"`
			}{&doc.Error, &doc.ErrorDescription}); err != nil {
				t.Fatalf("body is not JSON: %q", body)
			}
			if doc.Error != tt.code || doc.ErrorDescription == "" {
				t.Errorf("body %s, want error %q with a description", body, tt.code)
			}
			for _, tk := range []token{read, deploy, admin, agent, other, revoked, unknown} {
				if strings.Contains(body, tk.Raw) {
					t.Fatal("body echoes a token")
				}
			}
			if got := e.up.take(); len(got) != 0 {
				t.Fatalf("refused request reached the upstream: %+v", got)
			}
		})
	}

	allowed := []struct {
		name, method, path string
		tk                 token
		project            string
		scopes             string
	}{
		{"read", "GET", ws + "/projects", read, "", "read"},
		{"head served by GET route", "HEAD", ws + "/projects", read, "", "read"},
		{"deploy", "POST", ws + "/projects/p1/deployments", deploy, "", "deploy"},
		{"admin satisfies any scope", "POST", ws + "/projects/p1/promote", admin, "", "admin"},
		{"project token, own project", "POST", ws + "/projects/weekly-report/deployments", agent, "weekly-report", "deploy read"},
		{"project token, project_tokens route", "GET", ws + "/projects", agent, "weekly-report", "deploy read"},
	}
	for _, tt := range allowed {
		t.Run("allowed/"+tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			req.Header.Set("Authorization", "Bearer "+tt.tk.Raw)
			// Spoofed identity in every spelling net/http's client can send.
			req.Header.Set("X-Deplo-Workspace", "ws_other")
			req.Header.Set("X-Deplo-Scopes", "admin")
			req.Header["x-deplo-subject"] = []string{"tok_admin"}
			req.Header["X-DEPLO-PROJECT"] = []string{"billing"}
			req.Header.Set("X-Deplo-Extra", "1")
			resp, body := e.send(req)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := e.up.take()
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			h := got[0].Header
			want := http.Header{
				"X-Deplo-Auth":      {"api_key"},
				"X-Deplo-Subject":   {tt.tk.ID},
				"X-Deplo-Workspace": {"ws_acme"},
				"X-Deplo-Scopes":    {tt.scopes},
			}
			if tt.project != "" {
				want["X-Deplo-Project"] = []string{tt.project}
			}
			for name, values := range h {
				if strings.HasPrefix(strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name)), "x-deplo-") {
					if w, ok := want[name]; !ok || len(values) != 1 || values[0] != w[0] {
						t.Errorf("upstream got %s: %q, want %q", name, values, w)
					}
				}
			}
			for name := range want {
				if h.Get(name) == "" {
					t.Errorf("upstream is missing %s", name)
				}
			}
			if h.Get("Authorization") != "" {
				t.Error("Authorization reached the upstream")
			}
		})
	}

	t.Run("public route strips spoofed identity", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Header.Set("X-Deplo-Workspace", "ws_acme")
		req.Header.Set("X-Deplo-Auth", "api_key")
		resp, _ := e.send(req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := e.up.take()
		if len(got) != 1 || len(got[0].Header.Values("X-Deplo-Workspace")) != 0 || len(got[0].Header.Values("X-Deplo-Auth")) != 0 {
			t.Fatalf("public route forwarded spoofed identity: %+v", got)
		}
	})

	// Header spellings that net/http's client would canonicalise are sent raw.
	t.Run("raw spoofed spellings never reach the upstream", func(t *testing.T) {
		status, resp := raw(t, "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n"+
			"Host: localhost:9480\r\n"+
			"Authorization: Bearer "+read.Raw+"\r\n"+
			"X_Deplo_Workspace: ws_other\r\n"+
			"x.deplo.scopes: admin\r\n"+
			"X-DEPLO-SUBJECT: tok_admin\r\n"+
			"X-Deplo-Project: billing\r\n"+
			"X-Deplo-Project: other\r\n"+
			"Connection: close\r\n\r\n")
		if status != 200 {
			t.Fatalf("status %d: %s", status, resp)
		}
		got := e.up.take()
		if len(got) != 1 {
			t.Fatalf("upstream saw %d requests", len(got))
		}
		for name, values := range got[0].Header {
			folded := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
			if !strings.HasPrefix(folded, "x-deplo-") {
				continue
			}
			for _, v := range values {
				if v == "ws_other" || v == "admin" || v == "tok_admin" || v == "billing" || v == "other" {
					t.Errorf("spoofed %s: %s reached the upstream", name, v)
				}
			}
		}
		if got[0].Header.Get("X-Deplo-Project") != "" {
			t.Error("a workspace token produced X-Deplo-Project")
		}
	})

	// Path tricks against project binding, sent raw so that nothing cleans them.
	for _, path := range []string{
		"/v1/workspaces/ws_acme/projects/weekly-report/../billing/deployments",
		"/v1/workspaces/ws_acme/projects/weekly-report/%2e%2e/billing/deployments",
		"/v1/workspaces/ws_acme/projects/weekly-report%2F..%2Fbilling/deployments",
		"/v1/workspaces/ws_acme/projects/billing%2fdeployments",
		"/v1/workspaces/ws_acme//projects/billing/deployments",
		"/v1/workspaces/ws_acme/projects/./billing/deployments",
		"/v1/workspaces/ws_acme/projects/weekly-report;/../billing/deployments",
		"/v1/workspaces/ws_acme/projects/weekly-report%5C..%5Cbilling/deployments",
	} {
		t.Run("path trick "+path, func(t *testing.T) {
			status, resp := raw(t, "POST "+path+" HTTP/1.1\r\nHost: localhost:9480\r\n"+
				"Authorization: Bearer "+agent.Raw+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			if status != 400 && status != 403 {
				t.Fatalf("status %d, want a refusal: %s", status, resp)
			}
			if got := e.up.take(); len(got) != 0 {
				t.Fatalf("path trick reached the upstream: %+v", got)
			}
		})
	}

	t.Run("case of the project", func(t *testing.T) {
		resp, _ := e.do("POST", ws+"/projects/Weekly-Report/deployments", bearer(agent))
		if resp.StatusCode != 403 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := e.up.take(); len(got) != 0 {
			t.Fatal("reached the upstream")
		}
	})

	// Revocation written to the key file while the token is cached.
	t.Run("revocation through the key file while cached", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if resp, _ := e.do("GET", ws+"/projects", bearer(read)); resp.StatusCode != 200 {
				t.Fatalf("warm-up: %d", resp.StatusCode)
			}
		}
		e.up.take()
		now := time.Now().Add(-time.Second)
		read.RevokedAt = &now
		writeKeys(t, e.keysFile, read, deploy, admin, agent, other, revoked)
		start := time.Now()
		for {
			resp, _ := e.do("GET", ws+"/projects", bearer(read))
			if resp.StatusCode == 401 {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatal("revoked token still accepted 2s after the key file changed")
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Logf("revocation took effect after %v", time.Since(start).Round(time.Millisecond))
		e.up.take()
	})

	// create → use → revoke through `caddy deplo-auth token`.
	t.Run("command create use revoke", func(t *testing.T) {
		out, err := runCommand(t, "", "token", "create", "--keys-file", e.keysFile,
			"--name", "CI", "--workspace", "ws_acme", "--project", "weekly-report", "--scopes", "deploy")
		if err != nil {
			t.Fatal(err)
		}
		raw := strings.TrimSpace(out)
		if !strings.HasPrefix(raw, "sk_live_") || len(raw) != 40 {
			t.Fatalf("create printed %q", out)
		}
		content, _ := readFile(e.keysFile)
		if strings.Contains(content, raw) {
			t.Fatal("the key file stores the raw token")
		}
		hash, err := runCommand(t, raw+"\n", "hash")
		if err != nil || !strings.Contains(content, strings.TrimSpace(hash)) {
			t.Fatalf("hash %q (%v) not in the key file", hash, err)
		}
		waitStatus(t, e, "POST", ws+"/projects/weekly-report/deployments", "Bearer "+raw, 200)
		list, err := runCommand(t, "", "token", "list", "--keys-file", e.keysFile, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct{ ID, Name string }
		if err := json.Unmarshal([]byte(list), &entries); err != nil {
			t.Fatal(err)
		}
		var id string
		for _, en := range entries {
			if en.Name == "CI" {
				id = en.ID
			}
		}
		if id == "" {
			t.Fatalf("created token not listed: %s", list)
		}
		if _, err := runCommand(t, "", "token", "revoke", "--keys-file", e.keysFile, id); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, "POST", ws+"/projects/weekly-report/deployments", "Bearer "+raw, 401)
		e.up.take()
	})

	t.Run("admin status and purge", func(t *testing.T) {
		resp, err := http.Get("http://localhost:2999/deplo-auth/status")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var st struct {
			Stores []struct {
				Kind, Path string
				Tokens     int
				Healthy    bool
				Watched    bool
			}
			Handlers []struct {
				CacheHits    uint64 `json:"cache_hits"`
				CacheEntries int64  `json:"cache_entries"`
				JWT          *struct {
					Keys []struct{ Kid, Algorithms, Source string }
				}
			}
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &st) != nil {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if len(st.Stores) != 1 || st.Stores[0].Path != e.keysFile || !st.Stores[0].Healthy || st.Stores[0].Tokens < 6 ||
			!st.Stores[0].Watched {
			t.Errorf("stores: %+v", st.Stores)
		}
		if len(st.Handlers) != 1 || st.Handlers[0].CacheHits == 0 || st.Handlers[0].CacheEntries == 0 {
			t.Errorf("handlers: %+v", st.Handlers)
		}
		if j := st.Handlers[0].JWT; j == nil || len(j.Keys) != 1 || j.Keys[0].Source != "secret" || j.Keys[0].Algorithms != "HS256" {
			t.Errorf("jwt keys in status: %s", b)
		}
		if strings.Contains(string(b), jwtSecret) {
			t.Fatal("status shows the JWT secret")
		}
		for _, tk := range []token{read, deploy, admin, agent, other, revoked} {
			if strings.Contains(string(b), tk.Raw) || strings.Contains(string(b), apikeyHashHex(tk.Raw)) {
				t.Fatal("status shows a token or hash")
			}
		}
		for body, want := range map[string]int{
			`{"all":true}`:                             200,
			`{"id":"tok_deploy"}`:                      200,
			`{"hash":"` + apikeyHash(admin.Raw) + `"}`: 200,
			`{"id":"tok_nobody"}`:                      404,
			`{"hash":"sha256:xyz"}`:                    400,
			`{"id":"tok_deploy","all":true}`:           400,
			`{"token":"x"}`:                            400,
			`not json`:                                 400,
		} {
			resp, err := http.Post("http://localhost:2999/deplo-auth/purge", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("purge %s: %d, want %d", body, resp.StatusCode, want)
			}
		}
		// Purged tokens still work: they are looked up again.
		if resp, _ := e.do("POST", ws+"/projects/p1/deployments", bearer(deploy)); resp.StatusCode != 200 {
			t.Errorf("after purge: %d", resp.StatusCode)
		}
		e.up.take()
	})

	// Dashboard session JWTs through Caddy.
	session := func(typ string, claims map[string]any) string {
		now := time.Now()
		c := map[string]any{"iss": "https://dashboard.deplo.sh", "sub": "user_42", "workspace": "ws_acme",
			"scope": "admin", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "sid": "sess_1"}
		for k, v := range claims {
			c[k] = v
		}
		tok, err := jwtauth.MintWithType("HS256", []byte(jwtSecret), "", typ, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("dashboard session allowed with identity", func(t *testing.T) {
		resp, body := e.do("GET", ws+"/members", "Bearer "+session("at+jwt", nil))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		got := e.up.take()
		if len(got) != 1 {
			t.Fatalf("upstream saw %d requests", len(got))
		}
		h := got[0].Header
		if h.Get("X-Deplo-Auth") != "jwt" || h.Get("X-Deplo-Subject") != "user_42" || h.Get("X-Deplo-Workspace") != "ws_acme" ||
			h.Get("X-Deplo-Scopes") != "admin" || h.Get("Authorization") != "" {
			t.Errorf("upstream headers %v", h)
		}
	})
	for _, tt := range []struct {
		name, method, path, token, description string
	}{
		{"session on an API-token-only route", "POST", ws + "/projects/p1/deploy-hooks", session("at+jwt", nil), "does not accept dashboard session tokens"},
		{"API token on a dashboard-only route", "GET", ws + "/members", bearer(admin)[len("Bearer "):], "does not accept API tokens"},
		{"refresh token as Bearer", "GET", ws + "/members", session("refresh+jwt", nil), "refresh token"},
		{"session signed with another secret", "GET", ws + "/members", mustMint(t, "another-secret-of-at-least-32-bytes!!"), "invalid session token"},
		{"alg none, empty signature", "GET", ws + "/members", "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + strings.Split(session("at+jwt", nil), ".")[1] + ".", "neither a deplo API token nor"},
		{"alg none, any signature", "GET", ws + "/members", "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + strings.Split(session("at+jwt", nil), ".")[1] + ".AAAA", "invalid session token"},
		{"session over 15 minutes", "GET", ws + "/members", session("at+jwt", map[string]any{"exp": time.Now().Add(2 * time.Hour).Unix()}), "lives longer"},
	} {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, "Bearer "+tt.token)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="deplo", error="invalid_token"` {
				t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			if !strings.Contains(body, tt.description) {
				t.Errorf("body %s, want %q", body, tt.description)
			}
			if got := e.up.take(); len(got) != 0 {
				t.Fatal("reached the upstream")
			}
		})
	}

	// A dashboard session revoked through the key file (logout, or a
	// compromised laptop) is refused before its 15 minutes are up, even
	// while its verification is cached.
	t.Run("revoked dashboard session", func(t *testing.T) {
		live := session("at+jwt", map[string]any{"sid": "sess_logout"})
		other := session("at+jwt", map[string]any{"sid": "sess_other"})
		for i := 0; i < 2; i++ {
			if resp, body := e.do("GET", ws+"/members", "Bearer "+live); resp.StatusCode != 200 {
				t.Fatalf("before revocation: %d %s", resp.StatusCode, body)
			}
		}
		if _, err := runCommand(t, "", "session", "revoke", "--keys-file", e.keysFile, "sess_logout"); err != nil {
			t.Fatal(err)
		}
		if _, err := runCommand(t, "", "session", "revoke", "--keys-file", e.keysFile, "sess_logout"); err != nil {
			t.Fatalf("revoking twice: %v", err)
		}
		start := time.Now()
		for {
			resp, body := e.do("GET", ws+"/members", "Bearer "+live)
			if resp.StatusCode == 401 {
				if !strings.Contains(body, "session has been revoked") {
					t.Errorf("body %s", body)
				}
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatal("revoked session still accepted 2s after the key file changed")
			}
			time.Sleep(25 * time.Millisecond)
		}
		if resp, _ := e.do("GET", ws+"/members", "Bearer "+other); resp.StatusCode != 200 {
			t.Errorf("another session refused: %d", resp.StatusCode)
		}
		e.up.take()
	})

	// A token created through the token API (deplo_auth_tokens) and used:
	// swept below like the others.
	var created token
	t.Run("token created through the API", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+ws+"/tokens", strings.NewReader(`{"name":"swept","scopes":["read"]}`))
		req.Header.Set("Authorization", bearer(admin))
		req.Header.Set("Content-Type", "application/json")
		resp, body := e.send(req)
		if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &struct {
			ID    *string `json:"id"`
			Token *string `json:"token"`
		}{&created.ID, &created.Raw}) != nil {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if resp, _ := e.do("GET", ws+"/projects", "Bearer "+created.Raw); resp.StatusCode != 200 {
			t.Fatalf("the created token answers %d", resp.StatusCode)
		}
		e.up.take()
	})

	// Every log line of the run above, at DEBUG, and the access log: no
	// token, no hash; refusals are logged with their reason and client IP;
	// the access log keeps Authorization redacted.
	t.Run("logs carry no secret", func(t *testing.T) {
		caddyLog, _ := readFile(filepath.Join(e.logDir, "caddy.log"))
		accessLog, _ := readFile(filepath.Join(e.logDir, "access.log"))
		if !strings.Contains(caddyLog, `"msg":"request refused"`) || !strings.Contains(caddyLog, `"reason":"unknown_token"`) ||
			!strings.Contains(caddyLog, `"client_ip":"127.0.0.1"`) {
			t.Errorf("refusals not logged with reason and client_ip")
		}
		if !strings.Contains(accessLog, `"Authorization":["REDACTED"]`) {
			t.Errorf("access log does not show Authorization redacted")
		}
		lines := 0
		for _, logText := range []string{caddyLog, accessLog} {
			lines += strings.Count(logText, "\n")
			for _, tk := range []token{read, deploy, admin, agent, other, revoked, unknown, created} {
				if created.Raw == "" {
					t.Fatal("no token was created through the API to sweep for")
				}
				if strings.Contains(logText, tk.Raw) || strings.Contains(logText, apikeyHashHex(tk.Raw)) ||
					strings.Contains(logText, tk.Raw[8:34]) {
					t.Fatalf("a log line contains token %s or its hash", tk.ID)
				}
			}
		}
		for _, logText := range []string{caddyLog, accessLog} {
			if strings.Contains(logText, jwtSecret) {
				t.Fatal("a log line contains the JWT secret")
			}
		}
		t.Logf("%d log lines checked", lines)
	})

	// After the mix above, Caddy's admin /metrics shows the decisions with
	// bounded labels only.
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://localhost:2999/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body := string(b)
		for _, want := range []string{
			`deplo_auth_requests_total{method="api_key",outcome="allowed",reason="allowed"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="insufficient_scope"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="workspace_mismatch"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="project_mismatch"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="unknown_token"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="revoked_token"}`,
			`deplo_auth_requests_total{method="api_key",outcome="denied",reason="malformed_token"}`,
			`deplo_auth_requests_total{method="none",outcome="denied",reason="no_credential"}`,
			`deplo_auth_requests_total{method="none",outcome="denied",reason="malformed_request"}`,
			`deplo_auth_requests_total{method="none",outcome="denied",reason="bad_path"}`,
			`deplo_auth_requests_total{method="none",outcome="allowed",reason="public"}`,
			`deplo_auth_cache_lookups_total{result="hit"}`,
			`deplo_auth_cache_lookups_total{result="miss"}`,
			`deplo_auth_store_requests_total{result="found",store="file"}`,
			`deplo_auth_store_requests_total{result="not_found",store="file"}`,
			`deplo_auth_decision_duration_seconds_bucket{method="api_key",le="+Inf"}`,
			`deplo_auth_store_duration_seconds_count{store="file"}`,
			`deplo_auth_keyfile_last_reload_success{`,
			// The key file was rewritten by revocations above; the caches hold
			// the tokens and sessions used since the admin purge.
			// this test's key file (other tests' stores share the registry)
			`deplo_auth_keyfile_reloads_total{path="` + e.keysFile + `"`,
			`deplo_auth_cache_entries{cache="api_key"}`,
			`deplo_auth_cache_entries{cache="jwt"}`,
		} {
			line := metricLine(body, want)
			if strings.HasPrefix(want, "deplo_auth_keyfile_reloads_total") {
				line = metricLine(body, want, `result="success"`)
			}
			if line == "" {
				t.Errorf("metrics lack %s", want)
				continue
			}
			if strings.HasSuffix(line, " 0") {
				t.Errorf("%s is zero after requests that should count", line)
			}
		}
		for _, tk := range []token{read, deploy, admin, agent, other, revoked, unknown} {
			if strings.Contains(body, tk.Raw) || strings.Contains(body, tk.ID) {
				t.Errorf("metrics mention token %s", tk.ID)
			}
		}
	})
}

// metricLine returns the first line of body that starts with prefix and
// contains every one of also.
func metricLine(body, prefix string, also ...string) string {
lines:
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, a := range also {
			if !strings.Contains(line, a) {
				continue lines
			}
		}
		return line
	}
	return ""
}

func waitStatus(t *testing.T, e *env, method, path, auth string, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, body := e.do(method, path, auth)
		if resp.StatusCode == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: status %d after 2s, want %d: %s", method, path, resp.StatusCode, want, body)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func apikeyHash(raw string) string    { return apikey.Sum(raw).String() }
func apikeyHashHex(raw string) string { return strings.TrimPrefix(apikeyHash(raw), "sha256:") }

func mustMint(t *testing.T, secret string) string {
	now := time.Now()
	tok, err := jwtauth.Mint("HS256", []byte(secret), "", map[string]any{"iss": "https://dashboard.deplo.sh",
		"sub": "user_42", "workspace": "ws_acme", "scope": "admin", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
