package identity

import (
	"net/http"
	"time"
)

var unauthenticatedBody = []byte(`{"error":"unauthenticated"}` + "\n")

// Middleware verifies every request with v. A request that fails is
// answered 401 with the body {"error":"unauthenticated"} and nothing else
// about the reason (v.OnRefuse, when set, gets the reason). A request that
// passes reaches next with its Identity in the context: see FromContext.
//
// Middleware panics if v is misconfigured; call v.Validate first to handle
// the error.
func Middleware(v *Verifier, next http.Handler) http.Handler {
	if err := v.Validate(); err != nil {
		panic("identity.Middleware: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r, time.Now())
		if err != nil {
			if v.OnRefuse != nil {
				v.OnRefuse(r, err)
			}
			writeUnauthenticated(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

func writeUnauthenticated(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("WWW-Authenticate", `Deplo-Identity realm="deplo"`)
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(unauthenticatedBody)
}
