package integration

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// mintSession mints a dashboard admin session of ws_acme with the given sid.
func mintSession(t *testing.T, sid string) string {
	now := time.Now()
	tok, err := jwtauth.Mint("HS256", []byte(jwtSecret), "", map[string]any{"iss": "https://dashboard.deplo.sh",
		"sub": "user_42", "sid": sid, "workspace": "ws_acme", "scope": "admin", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// lineageJSON is what the API shows of a token's lineage.
type lineageJSON struct {
	ID          string            `json:"id"`
	Token       string            `json:"token"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	RevokedAt   *time.Time        `json:"revoked_at"`
	CreatedBy   *keystore.Creator `json:"created_by"`
	RotatedFrom *string           `json:"rotated_from"`
}

// post sends a JSON POST and decodes a 201; any other status fails.
func (s *tokenSuite) post(path, auth, body string) lineageJSON {
	s.t.Helper()
	resp, text := s.call("POST", path, auth, body)
	if resp.StatusCode != 201 {
		s.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, text)
	}
	var l lineageJSON
	if err := json.Unmarshal([]byte(text), &l); err != nil {
		s.t.Fatal(err)
	}
	s.createMu.Lock()
	s.created = append(s.created, l.Token)
	s.createMu.Unlock()
	return l
}

func (s *tokenSuite) get(id string) lineageJSON {
	s.t.Helper()
	resp, text := s.call("GET", "/v1/workspaces/ws_acme/tokens/"+id, s.bearer("tok_admin"), "")
	var l lineageJSON
	if resp.StatusCode != 200 || json.Unmarshal([]byte(text), &l) != nil {
		s.t.Fatalf("GET %s: %d %s", id, resp.StatusCode, text)
	}
	return l
}

// refusedEverywhere waits (at most 1s) until every raw token is refused
// (401) through each prefix ("" this instance, "/b" the second one).
func (s *tokenSuite) refusedEverywhere(t *testing.T, prefixes []string, raws ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for _, p := range prefixes {
		for _, raw := range raws {
			for s.works(p, raw) != 401 {
				if time.Since(start) > time.Second {
					t.Fatalf("a revoked token still works through %q 1s later", p)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return time.Since(start)
}

// runLineageSuite checks lineage, rotation and the limits through Caddy;
// prefixes are the instances to check a revocation on.
func runLineageSuite(t *testing.T, s *tokenSuite, prefixes []string) {
	ws := "/v1/workspaces/ws_acme/tokens"
	session := mintSession(t, "sid_lineage")

	t.Run("a child is capped at its parent and dies with it", func(t *testing.T) {
		end := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second)
		parent := s.post(ws, session, `{"name":"parent","scopes":["admin"],"expires_at":"`+end.Format(time.RFC3339)+`"}`)
		if parent.CreatedBy == nil || *parent.CreatedBy != (keystore.Creator{Kind: "jwt", Subject: "user_42", Session: "sid_lineage"}) {
			t.Fatalf("a session's token: created_by %+v", parent.CreatedBy)
		}
		child := s.post(ws, "Bearer "+parent.Token, `{"name":"child","scopes":["admin"],"expires_at":"2030-01-01T00:00:00Z"}`)
		if child.ExpiresAt == nil || !child.ExpiresAt.Equal(end) {
			t.Fatalf("the child asked 2030 and got expires_at %v, want the parent's %v", child.ExpiresAt, end)
		}
		grandchild := s.post(ws, "Bearer "+child.Token, `{"name":"grandchild","scopes":["read"]}`)
		if g := s.get(grandchild.ID); g.CreatedBy == nil || *g.CreatedBy != (keystore.Creator{Kind: "api_key", ID: child.ID}) ||
			g.ExpiresAt == nil || !g.ExpiresAt.Equal(end) {
			t.Fatalf("GET grandchild: %+v", g)
		}
		for _, raw := range []string{child.Token, grandchild.Token} {
			for _, p := range prefixes {
				if st := s.works(p, raw); st != 200 {
					t.Fatalf("before the revocation: %d through %q", st, p)
				}
			}
		}
		if resp, _ := s.call("DELETE", ws+"/"+parent.ID, session, ""); resp.StatusCode != 204 {
			t.Fatal(resp.StatusCode)
		}
		took := s.refusedEverywhere(t, prefixes, child.Token, grandchild.Token)
		t.Logf("the subtree refused on %d instance(s) after %v", len(prefixes), took.Round(time.Millisecond))
		if resp, text := s.call("POST", ws, "Bearer "+child.Token, `{"name":"late","scopes":["read"]}`); resp.StatusCode != 401 {
			t.Fatalf("a revoked child created a token: %d %s", resp.StatusCode, text)
		}
	})

	t.Run("revoke everything a credential created", func(t *testing.T) {
		stolen := mintSession(t, "sid_stolen")
		s1 := s.post(ws, stolen, `{"name":"minted by a stolen session","scopes":["admin"]}`)
		k1 := s.post(ws, s.bearer("tok_admin"), `{"name":"k1","scopes":["read"]}`)
		k2 := s.post(ws, s.bearer("tok_admin"), `{"name":"k2","scopes":["read"]}`)
		// Refused: not admin; a malformed filter. Nothing is revoked.
		for _, c := range []struct{ auth, query string }{
			{s.bearer("tok_deploy"), "?created_by=tok_admin"},
			{session, "?created_by=sk_live_x"},
			{session, ""},
		} {
			if resp, _ := s.call("DELETE", ws+c.query, c.auth, ""); resp.StatusCode/100 != 4 {
				t.Errorf("DELETE %s: %d", c.query, resp.StatusCode)
			}
		}
		for _, raw := range []string{s1.Token, k1.Token, k2.Token} {
			if st := s.works("", raw); st != 200 {
				t.Fatalf("a refused revoke-by-creator revoked a token (%d)", st)
			}
		}
		resp, text := s.call("DELETE", ws+"?created_by=session:sid_stolen", session, "")
		var doc struct{ Revoked []string }
		if resp.StatusCode != 200 || json.Unmarshal([]byte(text), &doc) != nil || !slices.Equal(doc.Revoked, []string{s1.ID}) {
			t.Fatalf("by session: %d %s", resp.StatusCode, text)
		}
		resp, text = s.call("DELETE", ws+"?created_by=tok_admin", session, "")
		if err := json.Unmarshal([]byte(text), &doc); resp.StatusCode != 200 || err != nil || len(doc.Revoked) < 2 ||
			!slices.Contains(doc.Revoked, k1.ID) || !slices.Contains(doc.Revoked, k2.ID) {
			t.Fatalf("by token: %d %s", resp.StatusCode, text)
		}
		s.refusedEverywhere(t, prefixes, s1.Token, k1.Token, k2.Token)
		if st := s.works("", s.seeded["tok_admin"].Raw); st != 200 {
			t.Fatalf("the creator itself was revoked: %d", st)
		}
	})

	t.Run("rotation with an overlap, self-rotation, reuse", func(t *testing.T) {
		ci := s.post(ws, session, `{"name":"CI","scopes":["read"]}`)
		// Refused rotations change nothing.
		for _, c := range []struct {
			path, auth, body string
			status           int
		}{
			{ws + "/" + ci.ID + "/rotate", s.bearer("tok_read"), ``, 403},
			{ws + "/" + ci.ID + "/rotate", session, `{"grace":"8d"}`, 400},
			{ws + "/" + ci.ID + "/rotate", session, `{"grace":"1h","extra":1}`, 400},
			{ws + "/self/rotate", session, ``, 403},
			{"/v1/workspaces/ws_other/tokens/" + ci.ID + "/rotate", s.bearer("tok_other"), ``, 404},
		} {
			if resp, text := s.call("POST", c.path, c.auth, c.body); resp.StatusCode != c.status {
				t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, resp.StatusCode, text, c.status)
			}
		}
		if g := s.get(ci.ID); g.ExpiresAt != nil || g.RevokedAt != nil {
			t.Fatalf("a refused rotation changed the token: %+v", g)
		}
		nw := s.post(ws+"/"+ci.ID+"/rotate", session, `{"grace":"1h"}`)
		if nw.RotatedFrom == nil || *nw.RotatedFrom != ci.ID {
			t.Fatalf("rotated: %+v", nw)
		}
		old := s.get(ci.ID)
		if old.ExpiresAt == nil || old.ExpiresAt.Sub(time.Now()) < 59*time.Minute || old.ExpiresAt.Sub(time.Now()) > time.Hour {
			t.Fatalf("the old token after a 1h grace: expires %v", old.ExpiresAt)
		}
		for _, raw := range []string{ci.Token, nw.Token} {
			if st := s.works("", raw); st != 200 {
				t.Fatalf("during the overlap: %d", st)
			}
		}
		// The new token rotates itself with no overlap: it stops at once.
		n2 := s.post(ws+"/self/rotate", "Bearer "+nw.Token, ``)
		s.refusedEverywhere(t, prefixes, nw.Token)
		if st := s.works("", n2.Token); st != 200 {
			t.Fatalf("the self-rotated token: %d", st)
		}
		// The old token, still in its overlap, rotated again: reuse.
		resp, text := s.call("POST", ws+"/self/rotate", "Bearer "+ci.Token, "")
		if resp.StatusCode != 409 || !strings.Contains(text, `"token_reused"`) {
			t.Fatalf("reuse: %d %s", resp.StatusCode, text)
		}
		took := s.refusedEverywhere(t, prefixes, ci.Token, n2.Token)
		t.Logf("the rotated family refused after %v", took.Round(time.Millisecond))
		// The CLI through the API: rotate --self with $DEPLO_KEY prints the
		// new token once; the old one stops at once.
		cli := s.post(ws, session, `{"name":"rotated by the CLI","scopes":["read"]}`)
		t.Setenv("DEPLO_KEY", cli.Token)
		out, err := runCommand(t, "", "token", "rotate", "--api", base, "--workspace", "ws_acme", "--self")
		fresh := strings.TrimSpace(out)
		if err != nil || !strings.HasPrefix(fresh, "sk_live_") || strings.Contains(fresh, "\n") {
			t.Fatalf("token rotate --self --api: %v %q", err, out)
		}
		s.created = append(s.created, fresh)
		s.refusedEverywhere(t, prefixes, cli.Token)
		if st := s.works("", fresh); st != 200 {
			t.Fatalf("the token the CLI rotated into: %d", st)
		}
		caddyLog, _ := readFile(filepath.Join(s.logDir, "caddy.log"))
		if !strings.Contains(caddyLog, `"level":"warn"`) || !strings.Contains(caddyLog, "token reuse") {
			t.Error("no WARN line for the reuse")
		}
	})

	t.Run("limits: max_lifetime, max_tokens, create_rate", func(t *testing.T) {
		v4 := "/v4/workspaces/ws_other/tokens"
		auth := s.bearer("tok_other") // ws_other holds this one live token
		a := s.post(v4, auth, `{"name":"a","scopes":["read"],"expires_at":"2030-01-01T00:00:00Z"}`)
		if a.ExpiresAt == nil || time.Until(*a.ExpiresAt) > time.Hour || time.Until(*a.ExpiresAt) < 59*time.Minute {
			t.Fatalf("max_lifetime 1h: expires %v", a.ExpiresAt)
		}
		s.post(v4, auth, `{"name":"b","scopes":["read"]}`)
		before := s.count()
		resp, text := s.call("POST", v4, auth, `{"name":"c","scopes":["read"]}`)
		if resp.StatusCode != 409 || !strings.Contains(text, `"limit_reached"`) || s.count() != before {
			t.Fatalf("past max_tokens 3: %d %s (%d tokens, had %d)", resp.StatusCode, text, s.count(), before)
		}
		resp, text = s.call("POST", v4, auth, `{"name":"d","scopes":["read"]}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || s.count() != before {
			t.Fatalf("past create_rate 3/1m: %d %v %s", resp.StatusCode, resp.Header, text)
		}
	})
}
