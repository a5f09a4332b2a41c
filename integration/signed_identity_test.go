package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/deplo-sh/deplo-auth/examples/upstream/upstreamapp"
	"github.com/deplo-sh/deplo-auth/identity"
)

const identityKey = "integration-identity-key-0123456789abcdef"

// TestSignedIdentity: client → Caddy → the example upstream, which verifies
// the signed identity; a request that bypasses Caddy with forged headers is
// refused by the upstream.
func TestSignedIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy; skipped with -short")
	}
	agent := newToken(t, "tok_s_agent", "ws_acme", "weekly-report", "deploy", "read")
	e := &env{t: t, up: newRecorder(t), keysFile: t.TempDir() + "/keys.json"}
	writeKeys(t, e.keysFile, agent)

	verifier, err := identity.NewVerifier("X-Deplo-", identity.Key{ID: "k2", Secret: []byte(identityKey)})
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(upstreamapp.Handler(verifier))
	t.Cleanup(upstream.Close)

	t.Setenv("DEPLO_AUTH_IT_IDENTITY_KEY", identityKey)
	config := globalBlock("") + fmt.Sprintf(`
http://localhost:%d {
	deplo_auth {
		keys file %s
		signed_identity {
			key k2 {env.DEPLO_AUTH_IT_IDENTITY_KEY}
		}
		route POST /v1/workspaces/{workspace}/projects/{project}/deployments deploy
	}
	reverse_proxy %s
}
`, httpPort, e.keysFile, upstream.Listener.Addr())
	e.tester = caddytest.NewTester(t)
	load(t, e.tester, config)

	resp, body := e.do("POST", "/v1/workspaces/ws_acme/projects/weekly-report/deployments", "Bearer "+agent.Raw)
	if resp.StatusCode != 200 {
		t.Fatalf("through Caddy: %d %s", resp.StatusCode, body)
	}
	var got upstreamapp.Response
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Verified || got.Identity.Subject != "tok_s_agent" || got.Identity.Workspace != "ws_acme" ||
		got.Identity.Project != "weekly-report" || !got.Identity.HasScope("deploy") || got.Identity.HasScope("delete") {
		t.Errorf("upstream verified %+v", got)
	}

	// Straight to the upstream with forged identity headers.
	for name, hdr := range map[string]http.Header{
		"no signature": {"X-Deplo-Auth": {"api_key"}, "X-Deplo-Subject": {"tok_admin"}, "X-Deplo-Workspace": {"ws_acme"}, "X-Deplo-Scopes": {"admin"}},
		"made-up signature": {"X-Deplo-Auth": {"api_key"}, "X-Deplo-Subject": {"tok_admin"}, "X-Deplo-Workspace": {"ws_acme"}, "X-Deplo-Scopes": {"admin"},
			"X-Deplo-Signature": {"v1 kid=k2 ts=1795750000 sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
	} {
		req, _ := http.NewRequest("DELETE", upstream.URL+"/v1/workspaces/ws_acme/projects/weekly-report", nil)
		req.Header = hdr
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s: the upstream answered %d to a request that bypassed Caddy", name, resp.StatusCode)
		}
	}
}
