package identity

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

var (
	testKey1 = Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef-key-one")}
	testKey2 = Key{ID: "k2", Secret: []byte("0123456789abcdef0123456789abcdef-key-two")}
	testNow  = time.Unix(1767225600, 0)

	idWorkspace = Identity{Method: MethodAPIKey, Subject: "tok_1", Workspace: "ws_1", Scopes: ScopeDeploy | ScopeRead}
	idProject   = Identity{Method: MethodAPIKey, Subject: "tok_2", Workspace: "ws_1", Project: "web", Scopes: ScopeDeploy}
	idJWT       = Identity{Method: MethodJWT, Subject: "user_42", Scopes: ScopeAdmin}
)

func mustSigner(t testing.TB, prefix string, keys ...Key) *Signer {
	t.Helper()
	s, err := NewSigner(prefix, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t testing.TB, prefix string, keys ...Key) *Verifier {
	t.Helper()
	v, err := NewVerifier(prefix, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signedRequest returns a server-side request for target carrying id and a
// signature made by s at now, as the upstream would receive it.
func signedRequest(t testing.TB, s *Signer, id Identity, method, target string, now time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if err := (Parser{Prefix: s.Prefix}).SetHeaders(r.Header, id); err != nil {
		t.Fatal(err)
	}
	if err := s.SignRequest(r, now); err != nil {
		t.Fatal(err)
	}
	return r
}

// headerRequest returns a request with the given headers (name -> values).
func headerRequest(h map[string][]string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for n, vs := range h {
		r.Header[n] = vs
	}
	return r
}
