package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// githubKey signs leak reports as GitHub does; writeGitHubKeys lists its
// public half, as key k1, in the keys_file the token suites' Caddyfile names.
var githubKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

func writeGitHubKeys(t *testing.T, dir string) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&githubKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "k1",
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true}}})
	if err := os.WriteFile(filepath.Join(dir, "gh-keys.json"), doc, 0o600); err != nil {
		t.Fatal(err)
	}
}

// leakReport sends body to the leaks endpoint, signed when sign is set.
func (s *tokenSuite) leakReport(body string, sign bool) (*http.Response, string) {
	s.t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/token-leaks/github", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sign {
		d := sha256.Sum256([]byte(body))
		sig, err := ecdsa.SignASN1(rand.Reader, githubKey(), d[:])
		if err != nil {
			s.t.Fatal(err)
		}
		req.Header.Set("Github-Public-Key-Identifier", "k1")
		req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	}
	return s.send(req)
}

// runConditionsSuite checks allowed_ips, the leak response and the small
// rules through Caddy; prefixes are the deplo_auth instances to check a
// refusal on ("" and, on PostgreSQL, "/b": another pool, listener and cache).
func runConditionsSuite(t *testing.T, s *tokenSuite, prefixes []string) {
	ws := "/v1/workspaces/ws_acme/tokens"
	session := "Bearer " + mustMint(t, jwtSecret)

	t.Run("allowed_ips: refused from elsewhere on every instance, before any scope check", func(t *testing.T) {
		away := s.create(ws, session, `{"name":"pinned away","scopes":["read"],"allowed_ips":["203.0.113.0/24","2001:db8::/32"]}`)
		here := s.create(ws, session, `{"name":"pinned here","scopes":["read"],"allowed_ips":["127.0.0.0/8","::1"]}`)
		for _, p := range prefixes {
			resp, body := s.call("GET", p+"/v1/workspaces/ws_acme/projects", "Bearer "+away.Token, "")
			s.up.take()
			if resp.StatusCode != 403 || !strings.Contains(body, `"error":"forbidden"`) ||
				!strings.Contains(body, "the API token is not allowed from this address") || resp.Header.Get("WWW-Authenticate") != "" {
				t.Fatalf("%s: pinned elsewhere: %d %s %v", p, resp.StatusCode, body, resp.Header)
			}
			if st := s.works(p, here.Token); st != 200 {
				t.Fatalf("%s: pinned here: %d", p, st)
			}
		}
		// Before the policy: a route it lacks the scope for says nothing more.
		resp, body := s.call("POST", ws, "Bearer "+away.Token, `{"name":"x","scopes":["read"]}`)
		if resp.StatusCode != 403 || !strings.Contains(body, "not allowed from this address") {
			t.Fatalf("pinned elsewhere, admin route: %d %s", resp.StatusCode, body)
		}
		resp, body = s.call("GET", ws+"/"+away.ID, session, "")
		if resp.StatusCode != 200 || !strings.Contains(body, `"allowed_ips":["203.0.113.0/24","2001:db8::/32"]`) {
			t.Fatalf("get shows %d %s", resp.StatusCode, body)
		}
		before := s.count()
		resp, body = s.call("POST", ws, session, `{"name":"x","scopes":["read"],"allowed_ips":["10.0.0.0/33"]}`)
		if resp.StatusCode != 400 || !strings.Contains(body, "allowed_ips: entry 0") || s.count() != before {
			t.Fatalf("bad allowed_ips: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("small rules: 415 without a JSON Content-Type, a preflight answered 204", func(t *testing.T) {
		before := s.count()
		req, _ := http.NewRequest("POST", base+ws, strings.NewReader(`{"name":"x","scopes":["read"]}`))
		req.Header.Set("Authorization", session)
		if resp, _ := s.send(req); resp.StatusCode != 415 || s.count() != before {
			t.Fatalf("no Content-Type: %d, %d tokens created", resp.StatusCode, s.count()-before)
		}
		// /v3 is behind a public route: the preflight reaches the handler
		// undecided, as under preflight public.
		req, _ = http.NewRequest("OPTIONS", base+"/v3/workspaces/ws_acme/tokens", nil)
		req.Header.Set("Origin", "https://dashboard.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, _ := s.send(req)
		if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") || s.up.take() != nil {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("leaks: a signed GitHub report revokes at once on every instance; unsigned revokes nothing", func(t *testing.T) {
		leaked := s.create(ws, session, `{"name":"committed to GitHub","scopes":["read"]}`)
		for _, p := range prefixes {
			if st := s.works(p, leaked.Token); st != 200 { // cached on each instance
				t.Fatalf("%s: before: %d", p, st)
			}
		}
		body := `[{"token":"` + leaked.Token + `","type":"deplo_api_token","url":"https://github.com/acme/ci/blob/main/.env","source":"content"},` +
			`{"token":"sk_live_notoneofours","type":"deplo_api_token","url":"https://github.com/x/y","source":"content"}]`
		for name, resp := range map[string]func() (*http.Response, string){
			"unsigned": func() (*http.Response, string) { return s.leakReport(body, false) },
			"altered":  func() (*http.Response, string) { r, b := s.leakReport(body+" ", false); return r, b },
			"GET":      func() (*http.Response, string) { return s.call("GET", "/v1/token-leaks/github", "", "") },
		} {
			r, text := resp()
			if r.StatusCode < 400 || s.revoked(leaked.ID) {
				t.Fatalf("%s: %d %s; revoked %v", name, r.StatusCode, text, s.revoked(leaked.ID))
			}
		}
		start := time.Now()
		resp, text := s.leakReport(body, true)
		var labels []struct{ TokenRaw, TokenType, Label string }
		if resp.StatusCode != 200 || json.Unmarshal([]byte(text), &labels) != nil || len(labels) != 2 ||
			labels[0].Label != "true_positive" || labels[1].Label != "false_positive" {
			t.Fatalf("signed report: %d %s", resp.StatusCode, text)
		}
		for _, p := range prefixes {
			for s.works(p, leaked.Token) != 401 {
				if time.Since(start) > time.Second {
					t.Fatalf("%s still accepts the leaked token 1s after the report", p)
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%q refused the leaked token %v after the report was sent", p, time.Since(start).Round(time.Millisecond))
		}
		_, got := s.call("GET", ws+"/"+leaked.ID, session, "")
		if !strings.Contains(got, `"revoked_reason":"leaked"`) {
			t.Errorf("get: %s", got)
		}
	})
}
