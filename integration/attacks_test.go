package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestAttacks pushes on the front door the way an attacker would. Every
// case states the expected refusal and checks what reached the upstream.
func TestAttacks(t *testing.T) {
	read := newToken(t, "tok_a_read", "ws_acme", "", "read")
	admin := newToken(t, "tok_a_admin", "ws_acme", "", "admin")
	agent := newToken(t, "tok_a_agent", "ws_acme", "weekly-report", "deploy", "read")
	e := start(t, read, admin, agent)
	host := fmt.Sprintf("Host: localhost:%d\r\n", httpPort)

	identitySeen := func(t *testing.T, got []seen, spoofed ...string) {
		t.Helper()
		for _, s := range got {
			for _, h := range []http.Header{s.Header, s.Trailer} {
				for name, values := range h {
					if !readsAsIdentityHeader(name) {
						continue
					}
					for _, v := range values {
						for _, sp := range spoofed {
							if v == sp {
								t.Errorf("spoofed %s: %s reached the upstream", name, v)
							}
						}
					}
				}
			}
		}
	}

	t.Run("identity in a chunked request's trailer", func(t *testing.T) {
		status, resp := raw(t, "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\n"+host+
			"Authorization: Bearer "+agent.Raw+"\r\n"+
			"Transfer-Encoding: chunked\r\nTrailer: X-Deplo-Workspace, X-Deplo-Scopes\r\nConnection: close\r\n\r\n"+
			"5\r\nhello\r\n0\r\nX-Deplo-Workspace: ws_evil\r\nX-Deplo-Scopes: admin\r\nX-Deplo-Subject: tok_a_admin\r\n\r\n")
		if status != 200 {
			t.Fatalf("status %d: %s", status, resp)
		}
		got := e.up.take()
		if len(got) != 1 || got[0].Body != "hello" {
			t.Fatalf("upstream saw %+v", got)
		}
		identitySeen(t, got, "ws_evil", "admin", "tok_a_admin")
	})

	t.Run("two hundred spoofed identity headers", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&b, "X-Deplo-Spoof-%d: admin\r\nX-DEPLO-WORKSPACE: ws_evil\r\n", i)
		}
		status, resp := raw(t, "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n"+host+
			"Authorization: Bearer "+read.Raw+"\r\n"+b.String()+"Connection: close\r\n\r\n")
		if status != 200 {
			t.Fatalf("status %d: %s", status, resp[:min(len(resp), 300)])
		}
		got := e.up.take()
		identitySeen(t, got, "ws_evil", "admin")
		if len(got) == 1 && len(got[0].Header) > 40 {
			t.Errorf("upstream got %d headers", len(got[0].Header))
		}
	})

	// A proxy drops the headers named in Connection, after deplo_auth set
	// them: naming X-Deplo-Project there would make a project token look
	// workspace-wide upstream.
	t.Run("identity header named in Connection", func(t *testing.T) {
		for _, conn := range []string{"X-Deplo-Project", "keep-alive, x-deplo-project, X_Deplo_Scopes", "X-Deplo-Project,close"} {
			status, resp := raw(t, "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\n"+host+
				"Authorization: Bearer "+agent.Raw+"\r\nContent-Length: 0\r\nConnection: "+conn+"\r\n\r\n")
			if status != 200 {
				t.Fatalf("%q: status %d: %s", conn, status, resp)
			}
			got := e.up.take()
			if len(got) != 1 || got[0].Header.Get("X-Deplo-Project") != "weekly-report" || got[0].Header.Get("X-Deplo-Scopes") != "deploy read" {
				t.Fatalf("Connection: %s — upstream saw %+v", conn, got)
			}
		}
	})

	t.Run("obs-fold continuation of an identity header", func(t *testing.T) {
		status, _ := raw(t, "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n"+host+
			"Authorization: Bearer "+read.Raw+"\r\nX-Request-Id: 1\r\n X-Deplo-Workspace: ws_evil\r\nConnection: close\r\n\r\n")
		if status != 400 {
			identitySeen(t, e.up.take(), "ws_evil")
		}
		e.up.take()
	})

	for _, tt := range []struct{ name, request string }{
		{"Content-Length and Transfer-Encoding together", "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + agent.Raw + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /v1/workspaces/ws_acme/tokens/ HTTP/1.1\r\n" + host + "\r\n"},
		{"two Content-Length values", "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + agent.Raw + "\r\nContent-Length: 0\r\nContent-Length: 40\r\nConnection: close\r\n\r\n"},
		{"absolute-form target naming another path", "GET http://localhost:9480/v1/workspaces/ws_other/projects HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + read.Raw + "\r\nConnection: close\r\n\r\n"},
		{"NUL in the token", "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + read.Raw[:20] + "\x00" + read.Raw[21:] + "\r\nConnection: close\r\n\r\n"},
		{"Cyrillic look-alike in the prefix", "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n" + host +
			"Authorization: Bearer sk_liv\u0435_" + read.Raw[8:] + "\r\nConnection: close\r\n\r\n"},
		{"two Authorization headers, one valid", "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + read.Raw + "\r\nAuthorization: Bearer " + admin.Raw + "\r\nConnection: close\r\n\r\n"},
		{"Authorization folded into one line with a comma", "GET /v1/workspaces/ws_acme/projects HTTP/1.1\r\n" + host +
			"Authorization: Bearer " + read.Raw + ", Bearer " + admin.Raw + "\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, resp := raw(t, tt.request)
			got := e.up.take()
			switch {
			case status == 200 && tt.name == "absolute-form target naming another path":
				t.Fatalf("absolute-form target let a ws_acme token into ws_other")
			case status >= 200 && status < 300 && len(got) > 0 && tt.name != "Content-Length and Transfer-Encoding together":
				t.Fatalf("status %d and the upstream saw %d requests: %s", status, len(got), resp[:min(len(resp), 200)])
			}
			for _, s := range got {
				if strings.HasPrefix(s.Path, "/v1/workspaces/ws_acme/tokens") {
					t.Fatalf("a smuggled request reached %s", s.Path)
				}
			}
			if status < 400 && tt.name != "Content-Length and Transfer-Encoding together" {
				t.Fatalf("status %d, want a refusal", status)
			}
		})
	}

	t.Run("token in header and query: the header decides", func(t *testing.T) {
		resp, _ := e.do("DELETE", "/v1/workspaces/ws_acme/projects/p1?access_token="+admin.Raw, "Bearer "+read.Raw)
		if resp.StatusCode != 403 {
			t.Fatalf("status %d: the query token was used", resp.StatusCode)
		}
		if got := e.up.take(); len(got) != 0 {
			t.Fatal("reached the upstream")
		}
	})

	t.Run("token as a form field", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/v1/workspaces/ws_acme/projects/p1/deployments", strings.NewReader("access_token="+admin.Raw))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := e.send(req)
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := e.up.take(); len(got) != 0 {
			t.Fatal("reached the upstream")
		}
	})

	// Rails, Laravel/Symfony and Express middleware act on these: a POST
	// decided as POST would run as DELETE, or be routed to another URL.
	t.Run("method and URL override headers", func(t *testing.T) {
		status, resp := raw(t, "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\n"+host+
			"Authorization: Bearer "+agent.Raw+"\r\nContent-Length: 0\r\nX-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\n"+
			"X-Method-Override: DELETE\r\nX-Original-URL: /v1/workspaces/ws_other/projects/p\r\nX-Rewrite-URL: /v1/workspaces/ws_other/projects/p\r\n"+
			"X_HTTP_Method_Override: DELETE\r\nConnection: close\r\n\r\n")
		if status != 200 {
			t.Fatalf("status %d: %s", status, resp)
		}
		got := e.up.take()
		if len(got) != 1 {
			t.Fatalf("upstream saw %d requests", len(got))
		}
		for name := range got[0].Header {
			switch strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name)) {
			case "x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url":
				t.Errorf("%s reached the upstream", name)
			}
		}
	})

	// An upstream that decodes twice would route %252F as "/".
	t.Run("double-encoded separators", func(t *testing.T) {
		for _, path := range []string{
			"/v1/workspaces/ws_acme/projects/x%252F..%252F..%252F..%252Fws_other%252Fprojects%252Fp",
			"/v1/workspaces/ws_acme/projects/x%255c..%255cws_other", "/v1/workspaces/ws_acme/projects/%252E%252E",
		} {
			status, resp := raw(t, "GET "+path+" HTTP/1.1\r\n"+host+"Authorization: Bearer "+read.Raw+"\r\nConnection: close\r\n\r\n")
			if status != 400 {
				t.Errorf("%s: status %d, want 400: %s", path, status, resp[:min(len(resp), 200)])
			}
		}
		if got := e.up.take(); len(got) != 0 {
			t.Fatalf("reached the upstream: %+v", got)
		}
	})

	t.Run("workspace id case and encoding tricks", func(t *testing.T) {
		for _, path := range []string{
			"/v1/workspaces/WS_ACME/projects", "/v1/workspaces/ws_acme%00/projects", "/v1/workspaces/ws%5Facme2/projects",
			"/V1/workspaces/ws_acme/projects", "/v1/workspaces/ws_acme/projects/", "/v1/workspaces/ws_acme/projects/..",
		} {
			status, resp := raw(t, "DELETE "+path+" HTTP/1.1\r\n"+host+"Authorization: Bearer "+agent.Raw+"\r\nConnection: close\r\n\r\n")
			if status < 400 {
				t.Errorf("%s: status %d: %s", path, status, resp[:min(len(resp), 200)])
			}
		}
		if got := e.up.take(); len(got) != 0 {
			t.Fatalf("reached the upstream: %+v", got)
		}
	})
}

func readsAsIdentityHeader(name string) bool {
	return strings.HasPrefix(strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name)), "x-deplo-")
}
