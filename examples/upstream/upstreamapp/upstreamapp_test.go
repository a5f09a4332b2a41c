package upstreamapp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/examples/upstream/upstreamapp"
	"github.com/deplo-sh/deplo-auth/identity"
)

var key = identity.Key{ID: "gw-1", Secret: []byte("example-upstream-test-secret-0123456789")}

func get(t *testing.T, srv *httptest.Server, method, path string, id *identity.Identity, signer *identity.Signer) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != nil {
		if err := (identity.Parser{}).SetHeaders(req.Header, *id); err != nil {
			t.Fatal(err)
		}
		if signer != nil {
			if err := signer.SignRequest(req, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); method != "HEAD" && ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body json.RawMessage
	json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body
}

func TestHandler(t *testing.T) {
	v := &identity.Verifier{Keys: []identity.Key{key}}
	srv := httptest.NewServer(upstreamapp.Handler(v))
	defer srv.Close()
	signer, err := identity.NewSigner("", key)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := identity.NewSigner("", identity.Key{ID: "gw-1", Secret: []byte("another-secret-under-the-same-kid-00000")})
	id := identity.Identity{Method: identity.MethodAPIKey, Subject: "tok_1", Workspace: "ws_1", Project: "web", Scopes: identity.ScopeDeploy}

	status, body := get(t, srv, "POST", "/v1/deploys/a%2Fb?x=1", &id, signer)
	if status != 200 {
		t.Fatalf("signed request: %d %s", status, body)
	}
	var res upstreamapp.Response
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	want := upstreamapp.Response{Identity: id, ProjectScoped: true, Verified: true, Method: "POST", Path: "/v1/deploys/a%2Fb"}
	if res != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}

	for _, tt := range []struct {
		name   string
		id     *identity.Identity
		signer *identity.Signer
	}{
		{"anonymous", nil, nil},
		{"unsigned", &id, nil},
		{"signed with another secret", &id, other},
	} {
		status, body := get(t, srv, "GET", "/v1/x", tt.id, tt.signer)
		if status != 401 || string(body) != `{"error":"unauthenticated"}` {
			t.Errorf("%s: %d %s", tt.name, status, body)
		}
	}

	if status, body := get(t, srv, "GET", "/healthz", nil, nil); status != 200 || string(body) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", status, body)
	}
	if status, _ := get(t, srv, "HEAD", "/healthz", nil, nil); status != 200 {
		t.Fatalf("HEAD healthz: %d", status)
	}
	if status, _ := get(t, srv, "POST", "/healthz", nil, nil); status != 401 {
		t.Fatalf("POST healthz is not the health check: %d", status)
	}
	if status, _ := get(t, srv, "GET", "/healthz/x", nil, nil); status != 401 {
		t.Fatalf("/healthz/x: %d", status)
	}
}

func TestInsecureHandler(t *testing.T) {
	srv := httptest.NewServer(upstreamapp.InsecureHandler(identity.Parser{}))
	defer srv.Close()
	id := identity.Identity{Method: identity.MethodJWT, Subject: "user_42", Scopes: identity.ScopeAdmin}
	status, body := get(t, srv, "GET", "/v1/me", &id, nil)
	var res upstreamapp.Response
	if err := json.Unmarshal(body, &res); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if want := (upstreamapp.Response{Identity: id, Verified: false, Method: "GET", Path: "/v1/me"}); res != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}
	if status, _ := get(t, srv, "GET", "/v1/me", nil, nil); status != 401 {
		t.Fatalf("anonymous: %d", status)
	}
}

func TestHandlerNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	upstreamapp.Handler(nil)
}
