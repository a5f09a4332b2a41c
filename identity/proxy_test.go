package identity

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestThroughProxy sends requests through a real reverse proxy that plays
// the gateway (strip the prefix, set the identity, sign) to a real upstream
// behind Middleware: the escaped path and the header values the upstream
// receives must be the ones signed.
func TestThroughProxy(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	var refused error
	v := &Verifier{Keys: []Key{testKey1}, OnRefuse: func(_ *http.Request, err error) { refused = err }}

	upstream := httptest.NewServer(Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := FromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]any{"id": id, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery})
	})))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	var forward Identity
	proxy := &httputil.ReverseProxy{
		// Director, not Rewrite: like Caddy, hop-by-hop headers are removed
		// after the gateway has set and signed the identity.
		Director: func(out *http.Request) {
			out.URL.Scheme, out.URL.Host = target.Scheme, target.Host
			for name := range out.Header {
				if strings.HasPrefix(strings.ToLower(name), "x-deplo-") {
					delete(out.Header, name)
				}
			}
			if err := (Parser{}).SetHeaders(out.Header, forward); err != nil {
				t.Error(err)
			}
			if err := s.SignRequest(out, time.Now()); err != nil {
				t.Error(err)
			}
		},
	}
	gateway := httptest.NewServer(proxy)
	defer gateway.Close()

	do := func(method, target string, hdr map[string]string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, gateway.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for n, x := range hdr {
			req.Header.Set(n, x)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]any
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body
	}

	ids := []Identity{idWorkspace, idProject, idJWT, {Method: MethodJWT, Subject: "josé@example.com"}}
	paths := []string{"/", "/v1/x", "/v1/files/a%2Fb/caf%C3%A9", "/caf%c3%a9", "/%7Euser", "/a;b,c=d@e:f!$&'()*+", "/a//b/./c/../d", "/v1/x?q=1&r=%20&s"}
	for _, id := range ids {
		for _, p := range paths {
			forward = id
			status, body := do("POST", p, map[string]string{"X-Deplo-Scopes": "admin", "x-deplo-project": "forged"})
			if status != 200 {
				t.Fatalf("%s as %+v: status %d", p, id, status)
			}
			wantPath, _, _ := strings.Cut(p, "?")
			if body["path"] != wantPath {
				t.Fatalf("upstream saw path %v, want %s", body["path"], wantPath)
			}
			b, _ := json.Marshal(body["id"])
			var got Identity
			if err := json.Unmarshal(b, &got); err != nil || got != id {
				t.Fatalf("upstream saw %s (%v), want %+v", b, err, id)
			}
		}
	}

	// A client naming an identity header in Connection makes the proxy drop
	// it after signing (Caddy's reverse_proxy does the same): without the
	// signature, a project-scoped key would reach the upstream as
	// workspace-wide. The signature no longer matches.
	forward = idProject
	if status, _ := do("GET", "/v1/x", map[string]string{"Connection": "X-Deplo-Project"}); status != http.StatusUnauthorized || !errors.Is(refused, ErrBadSignature) {
		t.Fatalf("identity header dropped on the way: status %d (%v), want 401 for a bad signature", status, refused)
	}
	if status, _ := do("GET", "/v1/x", map[string]string{"Connection": "keep-alive"}); status != 200 {
		t.Fatalf("control: status %d", status)
	}

	// Straight to the upstream, forged headers are refused.
	req, _ := http.NewRequest("GET", upstream.URL+"/v1/x", nil)
	(Parser{}).SetHeaders(req.Header, idJWT)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged identity: status %d", res.StatusCode)
	}
}
