// Package upstreamapp is the handler of the example upstream behind
// deplo-auth: it verifies the signed identity of every request and answers
// with it as JSON. It is a package of its own so that tests can run it
// in-process (httptest) behind a gateway.
package upstreamapp

import (
	"encoding/json"
	"net/http"

	"github.com/deplo-sh/deplo-auth/identity"
)

// Response is the JSON body of every authenticated request.
type Response struct {
	// Identity the gateway vouched for.
	Identity identity.Identity `json:"identity"`
	// ProjectScoped is Identity.ProjectScoped().
	ProjectScoped bool `json:"project_scoped"`
	// Verified is false only for InsecureHandler, which checks no signature.
	Verified bool `json:"verified"`
	// Method and Path (escaped, without the query) of the request, as the
	// upstream received and verified them.
	Method string `json:"method"`
	Path   string `json:"path"`
}

// HealthPath answers 200 to GET and HEAD without authentication.
const HealthPath = "/healthz"

// Handler returns the example upstream: GET /healthz is open; every other
// request must carry an identity signed with one of v's keys (else 401
// {"error":"unauthenticated"}) and is answered with a Response. It panics if
// v is nil or misconfigured (see identity.Middleware).
func Handler(v *identity.Verifier) http.Handler {
	if v == nil {
		panic("upstreamapp.Handler: nil Verifier (use InsecureHandler to run without signatures)")
	}
	return withHealth(identity.Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identity.FromContext(r.Context())
		echo(w, r, id, true)
	})))
}

// InsecureHandler is Handler without signatures: it trusts the identity
// headers under p's prefix as they come (identity.Parser), so it is only fit
// for a service that nothing but the gateway can reach.
func InsecureHandler(p identity.Parser) http.Handler {
	return withHealth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := p.FromRequest(r)
		if err != nil {
			unauthenticated(w)
			return
		}
		echo(w, r, id, false)
	}))
}

// withHealth serves HealthPath itself and passes everything else to next.
// (No ServeMux: it would clean and redirect paths before they are verified.)
func withHealth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func echo(w http.ResponseWriter, r *http.Request, id identity.Identity, verified bool) {
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	writeJSON(w, http.StatusOK, Response{
		Identity:      id,
		ProjectScoped: id.ProjectScoped(),
		Verified:      verified,
		Method:        r.Method,
		Path:          path,
	})
}

func unauthenticated(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
