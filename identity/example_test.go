package identity_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/deplo-sh/deplo-auth/identity"
)

var keys = []identity.Key{{ID: "gw-2026-01", Secret: []byte("deplo-identity-test-secret-0001-do-not-use")}}

// The gateway signs the request it forwards, after setting the identity
// headers.
func ExampleSigner_SignRequest() {
	signer, err := identity.NewSigner("", keys...)
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("GET", "/v1/workspaces/ws_7Hq2/deployments", nil)
	r.Header.Set("X-Deplo-Auth", "api_key")
	r.Header.Set("X-Deplo-Subject", "tok_01JGZ5X8K2M4")
	r.Header.Set("X-Deplo-Workspace", "ws_7Hq2")
	r.Header.Set("X-Deplo-Scopes", "deploy read")
	if err := signer.SignRequest(r, time.Unix(1767225600, 0)); err != nil {
		panic(err) // do not forward
	}
	fmt.Println(r.Header.Get("X-Deplo-Signature"))
	// Output: v1 kid=gw-2026-01 ts=1767225600 sig=emsoyPAjTsYSh9z_p_C-VCjLln2NROgEbRdpf6H9WVw
}

// An upstream verifies every request and reads the identity from the
// context.
func ExampleMiddleware() {
	v := &identity.Verifier{Keys: keys}
	h := identity.Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identity.FromContext(r.Context())
		fmt.Fprintf(w, "%s %s in %s, may deploy: %v", id.Method, id.Subject, id.Workspace, id.HasScope("deploy"))
	}))

	signer, _ := identity.NewSigner("", keys...)
	r := httptest.NewRequest("POST", "/v1/deploys", nil)
	identity.Parser{}.SetHeaders(r.Header, identity.Identity{
		Method: identity.MethodAPIKey, Subject: "tok_1", Workspace: "ws_1", Scopes: identity.ScopeDeploy | identity.ScopeRead,
	})
	signer.SignRequest(r, time.Now())

	for _, req := range []*http.Request{r, httptest.NewRequest("POST", "/v1/deploys", nil)} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		body, _ := io.ReadAll(w.Body)
		fmt.Printf("%d %s\n", w.Code, body)
	}
	// Output:
	// 200 api_key tok_1 in ws_1, may deploy: true
	// 401 {"error":"unauthenticated"}
}
